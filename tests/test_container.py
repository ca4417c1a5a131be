"""The Dockerfile's static contract. The image itself is built and smoke-tested by
scripts/container-check (CI runs it after these tests): this file catches the cheap mistakes
first, without buildah."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from tests.test_lock import pins

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_base_is_an_arg_defaulting_to_the_official_image() -> None:
    steps = instructions()
    first_from = next(i for i, (word, _) in enumerate(steps) if word == "FROM")
    assert ("ARG", "BASE=python:3.11-slim") in steps[:first_from]
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2
    assert all(rest.split()[0] == "${BASE}" for rest in froms), froms


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    assert "requirements/build.lock" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        for pattern in ignored:
            assert not fnmatch.fnmatch(source, pattern.removeprefix("**/")), (
                f"COPY {source} is excluded by .dockerignore's {pattern}"
            )


def test_build_lock_pins_dev_locks_setuptools_with_hashes() -> None:
    # pins() fails on a pin without a hash; the image builds with --require-hashes.
    build = pins("build.lock")
    assert build == {"setuptools": pins("dev.lock")["setuptools"]}, (
        "requirements/build.lock is stale: run scripts/lock"
    )
