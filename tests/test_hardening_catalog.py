"""Hardening of the Backstage import: hostile or broken catalog files are refused with a message
naming the document and the field (or line and column), never a traceback, and write nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from finops_gql.catalog.backstage import (
    MAX_ALIAS_NODES,
    MAX_ECHO,
    MAX_MESSAGE,
    CatalogError,
    import_catalog,
    load_documents,
    parse_catalog,
)
from finops_gql.db.models import Component, Team
from tests.proc import EXAMPLE, cli

EXAMPLE_TEXT = EXAMPLE.read_text()
UID = "7f9d3c52-2a4e-4a57-9a44-2e1c1a1b9b55"
GROUP = "kind: Group\nmetadata: {name: g}\nspec: {type: team}\n"
# Documents after the example's: D1 is the first, D2 the second, ...
EXAMPLE_DOCUMENTS = len(load_documents(EXAMPLE_TEXT))
D1, D2, D3 = (EXAMPLE_DOCUMENTS + i for i in (1, 2, 3))
# First line of document D1 in `after_example(...)`, and of document D2 when D1 is GROUP.
LINE9 = EXAMPLE_TEXT.count("\n") + 2
LINE10 = LINE9 + 4


def after_example(*documents: str) -> str:
    """The example catalog (valid) followed by `documents` (D1, D2, ...)."""
    return "---\n".join([EXAMPLE_TEXT, *documents])


def component(metadata: str, spec: str = "{owner: g}") -> str:
    return f"kind: Component\nmetadata: {metadata}\nspec: {spec}\n"


def anchor_bomb(levels: int = 9) -> str:
    """ "Billion laughs": 9 ** levels strings from a few hundred bytes, in a Group's metadata."""
    lines = ["kind: Group", "metadata:", "  name: g", '  a: &a ["lol",' + '"lol",' * 7 + '"lol"]']
    previous = "a"
    for anchor in "bcdefghijk"[: levels - 1]:
        lines.append(f"  {anchor}: &{anchor} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = anchor
    lines += [f"  uid: *{previous}", "spec: {}"]
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return component("{name: x}", "{owner: g, x: " + "[" * depth + "]" * depth + "}")


# (case, file content, fragments the message must contain: the document, then the field or spot)
BAD: list[tuple[str, str | bytes, list[str]]] = [
    (
        "anchor bomb",
        after_example(anchor_bomb()),
        [
            f"document {D1}:",
            f"line {LINE9 + 6}, column 10",
            f"aliases expand to more than {MAX_ALIAS_NODES}",
        ],
    ),
    (
        "recursive alias",
        after_example("kind: Group\nmetadata: &m {name: g, x: *m}\nspec: {}\n"),
        [f"document {D1}:", f"line {LINE9 + 1}, column 27", "recursive aliases are not accepted"],
    ),
    (
        "undefined alias with a huge name",
        after_example("kind: Group\nmetadata: {name: g, x: *" + "z" * 100_000 + "}\nspec: {}\n"),
        [f"document {D1}:", f"line {LINE9 + 1}, column 24", "found undefined alias"],
    ),
    (
        "title of 300 characters",
        after_example(f"kind: Group\nmetadata: {{name: g, title: {'t' * 300}}}\nspec: {{}}\n"),
        [f"document {D1} (Group g)", "field metadata.title", "300 characters, more than 200"],
    ),
    (
        "displayName of 300 characters",
        after_example(
            f"kind: Group\nmetadata: {{name: g}}\nspec: {{profile: {{displayName: {'d' * 300}}}}}\n"
        ),
        [f"document {D1} (Group g)", "field spec.profile.displayName", "more than 200"],
    ),
    (
        "blank title",
        after_example("kind: Group\nmetadata: {name: g, title: '   '}\nspec: {}\n"),
        [f"document {D1} (Group g)", "field metadata.title is blank"],
    ),
    (
        "profile not a mapping",
        after_example("kind: Group\nmetadata: {name: g}\nspec: {profile: [a]}\n"),
        [f"document {D1} (Group g)", "field spec.profile must be a mapping"],
    ),
    (
        "slug over 100 characters",
        after_example(
            f"kind: Group\nmetadata: {{name: {'n' * 60}, namespace: {'s' * 50}}}\nspec: {{}}\n"
        ),
        [f"document {D1} (Group nnn", "fields metadata.namespace and metadata.name", "(111 char"],
    ),
    (
        "list nested 5,000 deep",
        after_example(GROUP, nested(5_000)),
        [f"document {D2}:", f"line {LINE10 + 2}, column 51", "nested more than 32 levels deep"],
    ),
    (
        "Latin-1 file",
        after_example("kind: Group\nmetadata: {name: g, title: Équipe}\nspec: {}\n").encode(
            "latin-1"
        ),
        [f"document {D1}:", f"line {LINE9 + 1}, column 28", "byte 0xc9 is not UTF-8"],
    ),
    (
        "raw NUL byte",
        after_example("kind: Group\nmetadata: {name: g, title: a\0b}\nspec: {}\n"),
        [
            f"document {D1}:",
            f"line {LINE9 + 1}, column 29",
            "character U+0000 is not allowed in YAML",
        ],
    ),
    (
        "NUL in title",
        after_example('kind: Group\nmetadata: {name: g, title: "a\\0b"}\nspec: {}\n'),
        [f"document {D1} (Group g)", "field metadata.title", "U+0000"],
    ),
    (
        "NUL in displayName",
        after_example('kind: Group\nmetadata: {name: g}\nspec: {profile: {displayName: "\\0"}}\n'),
        [f"document {D1} (Group g)", "field spec.profile.displayName", "U+0000"],
    ),
    (
        "NUL in owner",
        after_example(GROUP, component("{name: x}", '{owner: "g\\0"}')),
        [f"document {D2} (Component x)", "field spec.owner", "U+0000"],
    ),
    (
        "NUL in OpenCost key",
        after_example(GROUP, component('{name: x, annotations: {opencost.io/key: "a\\0"}}')),
        [f"document {D2} (Component x)", "opencost.io/key", "U+0000"],
    ),
    (
        "OpenCost aggregate of 300 characters",
        after_example(
            GROUP,
            component(f"{{name: x, annotations: {{opencost.io/aggregate: label:{'a' * 294}}}}}"),
        ),
        [
            f"document {D2} (Component x)",
            "field metadata.annotations[opencost.io/aggregate]",
            "300",
        ],
    ),
    (
        "OpenCost key of 300 characters",
        after_example(
            GROUP, component(f"{{name: x, annotations: {{opencost.io/key: {'k' * 300}}}}}")
        ),
        [f"document {D2} (Component x)", "annotation opencost.io/key", "1 to 253 characters"],
    ),
    (
        "lone surrogate in title",
        after_example('kind: Group\nmetadata: {name: g, title: "a\\ud800"}\nspec: {}\n'),
        [f"document {D1} (Group g)", "field metadata.title", "U+D800"],
    ),
    (
        "kind is a number",
        after_example("kind: 5\nmetadata: {name: g}\n"),
        [f"document {D1}:", "field kind must be a string, got a number"],
    ),
    (
        "name is a number",
        after_example("kind: Group\nmetadata: {name: 5}\nspec: {}\n"),
        [f"document {D1} (Group)", "field metadata.name", "got a number"],
    ),
    (
        "name of 100,000 characters",
        after_example(f"kind: Group\nmetadata: {{name: {'n' * 100_000}}}\nspec: {{}}\n"),
        [f"document {D1} (Group)", "field metadata.name", "(100000 characters)"],
    ),
    (
        "title is a list",
        after_example("kind: Group\nmetadata: {name: g, title: [1, 2]}\nspec: {}\n"),
        [f"document {D1} (Group g)", "field metadata.title must be a string, got a list"],
    ),
    (
        "owner is a number",
        after_example(GROUP, component("{name: x}", "{owner: 7}")),
        [f"document {D2} (Component x)", "field spec.owner must be a string, got a number"],
    ),
    (
        "uid is a list",
        after_example("kind: Group\nmetadata: {name: g, uid: [1]}\nspec: {}\n"),
        [f"document {D1} (Group g)", "field metadata.uid is not a UUID: a list"],
    ),
    (
        "budget is a list",
        after_example(GROUP, component("{name: x, annotations: {finops.io/budget-usd: [1]}}")),
        [f"document {D2} (Component x)", "annotation finops.io/budget-usd", "got a list"],
    ),
    (
        "budget beyond a float",
        after_example(GROUP, component("{name: x, annotations: {finops.io/budget-usd: 1e999}}")),
        [f"document {D2} (Component x)", "annotation finops.io/budget-usd"],
    ),
    (
        "budget an int too large for a float",
        after_example(
            GROUP, component("{name: x, annotations: {finops.io/budget-usd: " + "9" * 400 + "}}")
        ),
        [f"document {D2} (Component x)", "annotation finops.io/budget-usd", "got a number"],
    ),
    (
        "integer of 5,000 digits",
        after_example(GROUP, component("{name: x, annotations: {n: " + "9" * 5_000 + "}}")),
        [f"document {D2}:", f"line {LINE10 + 1}, column 38", "cannot read this int value"],
    ),
    (
        "impossible date",
        after_example("kind: Group\nmetadata: {name: g, title: 2024-13-01}\nspec: {}\n"),
        [f"document {D1}:", f"line {LINE9 + 1}, column 28", "cannot read this timestamp value"],
    ),
    (
        "top-level scalar document",
        after_example("42\n"),
        [f"document {D1}:", "expected a mapping with kind and metadata, got a number"],
    ),
    (
        "top-level list document",
        after_example("- a list\n"),
        [f"document {D1}:", "expected a mapping with kind and metadata, got a list"],
    ),
    ("empty file", b"", ["the file is empty"]),
    ("only comments", "# nothing here\n\n", ["the file is empty"]),
    (
        "file over CATALOG_MAX_BYTES",
        EXAMPLE_TEXT + "# " + "x" * 1_048_576 + "\n",
        ["more than CATALOG_MAX_BYTES=1048576"],
    ),
    (
        "tab indentation",
        after_example("kind: Group\nmetadata:\n\tname: g\nspec: {}\n"),
        [f"document {D1}:", f"line {LINE9 + 2}, column 1", "YAML does not allow tabs"],
    ),
    (
        "unclosed flow sequence",
        after_example("kind: Group\nmetadata: {name: [g}\nspec: {}\n"),
        [f"document {D1}:", f"line {LINE9 + 1}, column 20", "not valid YAML"],
    ),
    (
        "two components with one uid",
        after_example(
            GROUP,
            component(f"{{name: a, uid: {UID}}}"),
            component(f"{{name: b, uid: {UID}}}"),
        ),
        [f"document {D3} (Component b)", "same metadata.uid as", f"document {D2} (Component a)"],
    ),
    (
        "one component twice",
        after_example(GROUP, component("{name: a}"), component("{name: a}")),
        [f"document {D3} (Component a)", "same entity ref as", f"document {D2} (Component a)"],
    ),
    (
        "one component twice, refs differing in case",
        after_example(GROUP, component("{name: a}"), component("{name: A}")),
        [f"document {D3} (Component A)", "same entity ref as", f"document {D2} (Component a)"],
    ),
    (
        "one group twice",
        after_example(GROUP, GROUP),
        [f"document {D2} (Group g)", "same entity ref as", f"document {D1} (Group g)"],
    ),
    (
        "two groups with one slug",
        after_example(
            "kind: Group\nmetadata: {name: a.b}\nspec: {}\n",
            "kind: Group\nmetadata: {name: a_b}\nspec: {}\n",
        ),
        [f"document {D2} (Group a_b)", "same team slug as", f"document {D1} (Group a.b)"],
    ),
    (
        "a group of the example again, under another uid",
        after_example(f"kind: Group\nmetadata: {{name: payments, uid: {UID}}}\nspec: {{}}\n"),
        [f"document {D1} (Group payments)", "same entity ref as", "document 1 (Group payments)"],
    ),
]


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(("data", "fragments"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
async def test_bad_file_names_document_and_field_and_writes_nothing(
    data: str | bytes, fragments: list[str]
) -> None:
    with pytest.raises(CatalogError) as caught:
        await import_catalog(data, "bad.yaml")
    message = str(caught.value)
    assert message.startswith("bad.yaml")
    for fragment in fragments:
        assert fragment in message, message
    assert len(message) <= MAX_MESSAGE
    assert "\n" not in message
    assert await Team.all().count() == 0
    assert await Component.all().count() == 0


@pytest.mark.usefixtures("services")
async def test_errors_found_while_writing_name_the_document_and_roll_back() -> None:
    await Team.create(id=UID, name="Old", slug="g")
    with pytest.raises(CatalogError) as caught:
        await import_catalog(after_example(GROUP), "bad.yaml")
    assert str(caught.value).startswith(
        f"bad.yaml document {D1} (Group g): metadata.name gives the slug 'g', which belongs to another"
    )
    with pytest.raises(CatalogError) as caught:
        await import_catalog(after_example(component("{name: x}", "{owner: nobody}")), "bad.yaml")
    assert str(caught.value).startswith(
        f"bad.yaml document {D1} (Component x): field spec.owner group:default/nobody is not a Group"
    )
    assert [t.slug for t in await Team.all()] == ["g"]
    assert await Component.all().count() == 0


def test_every_message_is_capped_and_echoes_little() -> None:
    text = "kind: Group\nmetadata: {name: g, uid: '" + "u" * 1_000_000 + "'}\nspec: {}\n"
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "f.yaml")
    message = str(caught.value)
    assert "field metadata.uid is not a UUID" in message
    assert "u" * (MAX_ECHO + 1) not in message
    assert "(1000000 characters)" in message
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "f" * 10_000)
    assert len(str(caught.value)) == MAX_MESSAGE


def test_anchor_bomb_is_refused_before_expansion() -> None:
    # 9 ** 9 strings once expanded; the old import spent minutes and gigabytes on str() of it.
    with pytest.raises(CatalogError, match="aliases expand to more than"):
        parse_catalog(anchor_bomb(), "bomb.yaml")


def aliases(count: int) -> str:
    """A Group whose metadata repeats a 10-node list `count` times through aliases."""
    items = ", ".join(["*a"] * count)
    return (
        "kind: Group\nmetadata:\n  name: g\n  a: &a [" + ", ".join("x" * 9) + "]\n"
        f"  copies: [{items}]\nspec: {{}}\n"
    )


def test_aliases_within_the_bound_are_read() -> None:
    # Each alias adds the 10 nodes of the anchored list: 100 of them is the limit exactly.
    documents = load_documents(aliases(MAX_ALIAS_NODES // 10))
    assert len(documents[0][1]["metadata"]["copies"]) == 100
    with pytest.raises(CatalogError, match=f"more than {MAX_ALIAS_NODES} YAML nodes"):
        load_documents(aliases(MAX_ALIAS_NODES // 10 + 1))


def test_merge_keys_and_shared_anchors_still_work() -> None:
    text = (
        "kind: Group\nmetadata: {name: g}\nspec: {}\n---\n"
        "kind: Component\nmetadata:\n  name: a\n  annotations: &ann\n"
        "    finops.io/budget-usd: '5'\n    opencost.io/aggregate: namespace\n"
        "  labels: {<<: *ann, extra: x}\nspec: {owner: g}\n"
    )
    _, components, _ = parse_catalog(text)
    assert (components[0].budget_usd, components[0].aggregate) == (5.0, "namespace")


def test_nesting_up_to_the_bound_is_read() -> None:
    # The document's mapping and spec are 2 levels: 30 lists in spec.x make 32.
    load_documents(GROUP + "---\n" + nested(30))
    with pytest.raises(CatalogError, match="nested more than 32 levels"):
        load_documents(GROUP + "---\n" + nested(31))


def test_utf8_bytes_with_bom_and_non_ascii_titles_are_read() -> None:
    text = "kind: Group\nmetadata: {name: g, title: Équipe Paiements}\nspec: {}\n"
    teams, _, _ = parse_catalog(b"\xef\xbb\xbf" + text.encode())
    assert teams[0].name == "Équipe Paiements"


def test_namespaced_slug_uses_only_slug_characters() -> None:
    teams, _, _ = parse_catalog(
        "kind: Group\nmetadata: {name: Core_Team, namespace: my.ns}\nspec: {}\n"
    )
    assert teams[0].slug == "my-ns-core-team"


def test_max_bytes_is_a_parameter() -> None:
    with pytest.raises(CatalogError, match="more than CATALOG_MAX_BYTES=100;"):
        parse_catalog(EXAMPLE_TEXT, "f.yaml", max_bytes=100)
    assert len(parse_catalog(EXAMPLE_TEXT, "f.yaml", max_bytes=len(EXAMPLE_TEXT))[1]) == 5


# -- through the command line, as a user runs it ------------------------------------------------


def rows(database: Path) -> tuple[int, int]:
    with sqlite3.connect(database) as db:
        teams = db.execute("SELECT count(*) FROM team").fetchone()[0]
        components = db.execute("SELECT count(*) FROM component").fetchone()[0]
    return teams, components


CLI_BAD: list[tuple[str, str | bytes | None, dict[str, str], str]] = [
    ("anchor bomb", anchor_bomb(), {}, "bad.yaml document 1: line 7, column"),
    ("Latin-1", GROUP.replace("g}", "Équipe}").encode("latin-1"), {}, "is not UTF-8"),
    (
        "nested 5,000 deep",
        GROUP + "---\n" + nested(5_000),
        {},
        "bad.yaml document 2: line 7, column 51",
    ),
    ("over CATALOG_MAX_BYTES", GROUP, {"CATALOG_MAX_BYTES": "20"}, "CATALOG_MAX_BYTES=20"),
    ("empty", b"", {}, "the file is empty"),
    ("duplicate uid", after_example(GROUP, GROUP), {}, "same entity ref"),
    ("missing", None, {}, "cannot read"),
    ("a folder", "folder", {}, "cannot read"),
]


@pytest.mark.parametrize(
    ("data", "extra", "message"), [c[1:] for c in CLI_BAD], ids=[c[0] for c in CLI_BAD]
)
async def test_cli_refuses_bad_file_with_exit_2_and_no_traceback(
    tmp_path: Path, data: str | bytes | None, extra: dict[str, str], message: str
) -> None:
    database = tmp_path / "cli.sqlite3"
    env = {"DATABASE_URL": f"sqlite://{database}", "LOG_LEVEL": "WARNING", **extra}
    assert (await cli("migrate", env=env))[0] == 0
    bad = tmp_path / "bad.yaml"
    if data == "folder":
        bad.mkdir()
    elif isinstance(data, bytes):
        bad.write_bytes(data)
    elif data is not None:
        bad.write_text(data)
    # The good example first: files are all checked before any is written.
    code, out, err = await cli("catalog", "import", str(EXAMPLE), str(bad), env=env)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert len(err) < MAX_MESSAGE + 200
    assert out == ""
    assert rows(database) == (0, 0)


async def test_cli_imports_good_files_after_the_checks(tmp_path: Path) -> None:
    database = tmp_path / "cli.sqlite3"
    env = {"DATABASE_URL": f"sqlite://{database}", "LOG_LEVEL": "WARNING"}
    await cli("migrate", env=env)
    extra = tmp_path / "more.yaml"
    extra.write_text(f"kind: Group\nmetadata: {{name: core, uid: {UID}}}\nspec: {{}}\n")
    code, out, err = await cli("catalog", "import", str(EXAMPLE), str(extra), env=env)
    assert code == 0, err
    assert "1 teams, 0 components imported" in out
    assert rows(database) == (4, 5)  # the example has 3 teams (fraud is a sub-team)
