"""`finops-gql serve --workers N`: uvicorn worker processes, each with its own app (database pool,
event relay, answer cache), started and stopped cleanly."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from finops_gql.auth import mint_token
from finops_gql.cli import default_workers
from finops_gql.config import Settings
from tests.conftest import TEST_SECRET
from tests.proc import serving


async def test_serve_with_two_workers_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'gateway.sqlite3'}",
        "OPENCOST_URL": "http://127.0.0.1:9",
        "JWT_SECRET": TEST_SECRET,
        "REDIS_URL": "redis://127.0.0.1:1",
        "LOG_LEVEL": "INFO",
    }
    token = mint_token(Settings(jwt_secret=TEST_SECRET), "ops", ["admin"], timedelta(minutes=5))
    async with serving(env, "--workers", "2", "--migrate") as served:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=5) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            count = {"query": "{ teams { totalCount } }"}
            for _ in range(6):  # both workers answer, and keep the answer (answer cache)
                body = await http.post("/graphql", json=count)
                assert body.json()["data"] == {"teams": {"totalCount": 0}}
            created = await http.post(
                "/graphql",
                json={"query": 'mutation { createTeam(input: {name: "P", slug: "p"}) { slug } }'},
            )
            assert created.json()["data"] == {"createTeam": {"slug": "p"}}
            # Whichever worker answers, the write one of them made retired its cached answer.
            for _ in range(6):
                body = await http.post("/graphql", json=count)
                assert body.json()["data"] == {"teams": {"totalCount": 1}}
    # serving() sent SIGTERM and checked the log holds no traceback.
    assert served.returncode == 0, served.stderr
    started = set(re.findall(r"Started server process \[(\d+)\]", served.stderr))
    assert len(started) == 2, served.stderr
    assert served.stderr.count("Application startup complete") == 2
    assert served.stderr.count("Application shutdown complete") == 2


def test_the_default_is_the_usable_cores() -> None:
    assert 1 <= default_workers() <= len(os.sched_getaffinity(0))


def test_a_server_process_settles_its_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker's app factory freezes what it built out of the collector's scans and raises
    the first generation's threshold; the later generations keep theirs."""
    import gc

    from finops_gql import asgi
    from finops_gql.httpserver import GC_FIRST_GENERATION

    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("DATABASE_URL", "sqlite://:memory:")
    before = gc.get_threshold()
    try:
        built = asgi.app()
        assert built.routes
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_FIRST_GENERATION, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
