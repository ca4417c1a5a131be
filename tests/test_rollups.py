"""Catalog roll-ups: Backstage Domain and System, Component.system, the Group tree (import, service,
GraphQL, migration 0007), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from finops_gql.catalog.backstage import CatalogError, import_catalog, stable_id
from finops_gql.config import Settings
from finops_gql.db.models import Component, Domain, System, Team
from finops_gql.db.setup import (
    close_db,
    connection,
    init_db,
    migrate,
    placeholders,
    tortoise_config,
)
from finops_gql.errors import Conflict
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_team, token

EXAMPLE = (Path(__file__).parent.parent / "examples" / "catalog-info.yaml").read_text()
UID = "0b7e0c4e-7d8a-4a55-9d8f-3c9a4f3b2a11"


def group(name: str, spec: str = "{}") -> str:
    return f"kind: Group\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def system(name: str, spec: str = "{owner: g}", metadata: str = "") -> str:
    return f"kind: System\nmetadata: {{name: {name}{metadata}}}\nspec: {spec}\n"


def domain(name: str, spec: str = "{owner: g}", metadata: str = "") -> str:
    return f"kind: Domain\nmetadata: {{name: {name}{metadata}}}\nspec: {spec}\n"


def component(name: str, spec: str) -> str:
    return f"kind: Component\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def docs(*documents: str) -> str:
    return "---\n".join(documents)


async def counts() -> tuple[int, int, int, int]:
    return (
        await Team.all().count(),
        await Component.all().count(),
        await System.all().count(),
        await Domain.all().count(),
    )


async def parents() -> dict[str, str | None]:
    teams = await Team.all()
    slugs = {str(t.id): t.slug for t in teams}
    return {t.slug: slugs[str(t.parent_id)] if t.parent_id is not None else None for t in teams}


# -- import -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("services")
async def test_example_imports_domain_systems_and_sub_team_with_stable_ids() -> None:
    result = await import_catalog(EXAMPLE, "example")
    assert (result.teams, result.components, result.systems, result.domains) == (3, 5, 2, 1)
    assert result.skipped == ["example document 8: kind API"]
    commerce = await Domain.get(slug="commerce")
    assert commerce.id == stable_id("domain:default/commerce")
    assert commerce.name == "Commerce"
    assert str(commerce.owner_id) == str(stable_id("group:default/payments"))
    storefront = await System.get(slug="storefront")
    assert storefront.id == stable_id("system:default/storefront")
    assert str(storefront.domain_id) == str(commerce.id)
    engine = await System.get(slug="discovery-engine")
    assert str(engine.owner_id) == str(stable_id("group:default/discovery"))
    assert str(engine.domain_id) == str(commerce.id)  # domain:default/commerce spelling
    systems = {c.name: str(c.system_id) for c in await Component.all()}
    assert systems == {
        "checkout": str(storefront.id),
        "payments-api": str(storefront.id),
        "ledger": str(storefront.id),
        "search": str(engine.id),
        "recommendations": str(engine.id),
    }
    # fraud names payments in spec.parent, payments lists fraud in spec.children: they agree
    assert await parents() == {"payments": None, "discovery": None, "fraud": "payments"}


@pytest.mark.usefixtures("services")
async def test_reimport_is_idempotent_and_follows_the_file() -> None:
    await import_catalog(EXAMPLE)
    before = {s.slug: s.id for s in await System.all()}
    await import_catalog(EXAMPLE)
    assert await counts() == (3, 5, 2, 1)
    assert {s.slug: s.id for s in await System.all()} == before
    # the file is the truth for what it holds: a moved component, a renamed system, no parent
    moved = (
        EXAMPLE.replace("  system: discovery-engine\n", "  system: storefront\n", 1)
        .replace("title: Storefront", "title: Shop front")
        .replace("  parent: payments\n", "")
        .replace("children: [fraud]", "children: []")
    )
    await import_catalog(moved)
    assert await counts() == (3, 5, 2, 1)
    storefront = await System.get(slug="storefront")
    assert storefront.name == "Shop front"
    assert str((await Component.get(name="search")).system_id) == str(storefront.id)
    assert (await parents())["fraud"] is None
    # a component without spec.system leaves its system
    await import_catalog(EXAMPLE.replace("  system: storefront\n", "", 1))
    assert (await Component.get(name="checkout")).system_id is None


@pytest.mark.usefixtures("services")
async def test_references_to_earlier_imports_by_stable_id_or_uid_slug() -> None:
    await import_catalog(docs(group("g"), domain("d", metadata=f", uid: {UID}")))
    assert (await Domain.get(slug="d")).id == uuid.UUID(UID)
    await import_catalog(system("s", "{owner: g, domain: d}"))
    assert str((await System.get(slug="s")).domain_id) == UID
    await import_catalog(component("c", "{owner: g, system: system:default/s}"))
    assert str((await Component.get(name="c")).system_id) == str(stable_id("system:default/s"))
    # a child named only in a later file's spec.children, imported earlier
    await import_catalog(group("child"))
    await import_catalog(group("g", "{children: [group:child]}"))
    assert (await parents())["child"] == "g"


@pytest.mark.usefixtures("services")
async def test_children_spelling_alone_sets_the_parent() -> None:
    await import_catalog(docs(group("a", "{children: [b, c]}"), group("b"), group("c")))
    assert await parents() == {"a": None, "b": "a", "c": "a"}


BAD_REFERENCES = [
    (
        "system's unknown domain",
        docs(group("g"), system("s", "{owner: g, domain: nowhere}")),
        "document 2 (System s): field spec.domain domain:default/nowhere is not a Domain in "
        "this file or an already imported domain",
    ),
    (
        "system's unknown owner",
        docs(group("g"), system("s", "{owner: nobody}")),
        "document 2 (System s): field spec.owner group:default/nobody is not a Group",
    ),
    (
        "domain's unknown owner",
        docs(group("g"), domain("d", "{owner: nobody}")),
        "document 2 (Domain d): field spec.owner group:default/nobody is not a Group",
    ),
    (
        "domain without owner",
        docs(group("g"), domain("d", "{}")),
        "document 2 (Domain d): field spec.owner is missing",
    ),
    (
        "component's unknown system",
        docs(group("g"), component("c", "{owner: g, system: nowhere}")),
        "document 2 (Component c): field spec.system system:default/nowhere is not a System",
    ),
    (
        "component's system of another kind",
        docs(group("g"), component("c", "{owner: g, system: 'component:default/x'}")),
        "document 2 (Component c): field spec.system 'component:default/x' names a component, "
        "expected a System",
    ),
    (
        "system's domain not a string",
        docs(group("g"), system("s", "{owner: g, domain: [d]}")),
        "document 2 (System s): field spec.domain must be a string, got a list",
    ),
    (
        "unknown parent",
        docs(group("g", "{parent: nobody}")),
        "document 1 (Group g): field spec.parent group:default/nobody is not a Group",
    ),
    (
        "unknown child",
        docs(group("g", "{children: [g2, nobody]}"), group("g2")),
        "document 1 (Group g): field spec.children[1] group:default/nobody is not a Group",
    ),
    (
        "children not a list",
        docs(group("g", "{children: g2}")),
        "document 1 (Group g): field spec.children must be a list, got 'g2'",
    ),
    (
        "child listed twice",
        docs(group("g", "{children: [g2, 'group:g2']}"), group("g2")),
        "document 1 (Group g): field spec.children lists group:default/g2 twice",
    ),
    (
        "spellings disagree",
        docs(group("a"), group("b", "{children: [c]}"), group("c", "{parent: a}")),
        "document 2 (Group b): field spec.children[0] makes group:default/c a child of "
        "group:default/b, but document 3 (Group c): field spec.parent names another parent",
    ),
    (
        "two groups claim one child",
        docs(group("a", "{children: [c]}"), group("b", "{children: [c]}"), group("c")),
        "document 2 (Group b): field spec.children[0] makes group:default/c a child of "
        "group:default/b, but document 1 (Group a): field spec.children[0] names another",
    ),
    (
        "cycle",
        docs(group("a", "{parent: c}"), group("b", "{parent: a}"), group("c", "{parent: b}")),
        "the group tree would have a cycle: a -> c -> b -> a",
    ),
    (
        "own parent",
        docs(group("a", "{parent: a}")),
        "document 1 (Group a): field spec.parent: the group tree would have a cycle: a -> a",
    ),
    (
        "two systems, one slug",
        docs(group("g"), system("a.b"), system("a_b")),
        "document 3 (System a_b): same system slug as document 2 (System a.b)",
    ),
    (
        "one domain twice",
        docs(group("g"), domain("d"), domain("d")),
        "document 3 (Domain d): same entity ref as document 2 (Domain d)",
    ),
]


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in BAD_REFERENCES], ids=[c[0] for c in BAD_REFERENCES]
)
async def test_bad_references_name_document_and_field_and_write_nothing(
    text: str, message: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        await import_catalog(docs(EXAMPLE, text), "bad.yaml")
    got = str(caught.value)
    assert got.startswith("bad.yaml")
    got = got.replace("bad.yaml ", "")
    # the example's documents come first: renumber the expected message
    shift = EXAMPLE.count("\n---\n")
    for n in range(9, 0, -1):
        message = message.replace(f"document {n} ", f"document {n + shift + 1} ")
    assert message in got, got
    assert await counts() == (0, 0, 0, 0)


@pytest.mark.usefixtures("services")
async def test_cycle_through_stored_teams_is_refused_and_rolled_back() -> None:
    await import_catalog(docs(group("a"), group("b", "{parent: a}")))
    with pytest.raises(CatalogError) as caught:
        await import_catalog(docs(group("a", "{parent: b}"), system("s", "{owner: a}")), "x.yaml")
    assert str(caught.value) == (
        "x.yaml document 1 (Group a): field spec.parent: the group tree would have a cycle: "
        "a -> b -> a (a team cannot be its own ancestor)"
    )
    assert await parents() == {"a": None, "b": "a"}
    assert await System.all().count() == 0


@pytest.mark.usefixtures("services")
async def test_slug_of_another_system_is_refused() -> None:
    await System.create(id=uuid.uuid4(), name="S", slug="s")
    with pytest.raises(CatalogError) as caught:
        await import_catalog(docs(group("g"), system("s")), "x.yaml")
    assert str(caught.value).startswith(
        "x.yaml document 2 (System s): metadata.name gives the slug 's', which belongs to "
        "another system"
    )
    assert await Team.all().count() == 0


# -- service ----------------------------------------------------------------------------------


async def test_team_subtrees_on_a_three_level_tree(
    services: Services, sql_counter: QueryCounter
) -> None:
    await import_catalog(
        docs(
            group("root", "{children: [mid, side]}"),
            group("mid"),
            group("side"),
            group("leaf", "{parent: mid}"),
            group("alone"),
        )
    )
    ids = {t.slug: t.id for t in await Team.all()}
    unknown = uuid.uuid4()
    sql_counter.statements.clear()
    trees = await services.catalog.team_subtrees(
        [ids["root"], ids["mid"], ids["leaf"], ids["alone"], unknown]
    )
    assert len(sql_counter.statements) == 1, sql_counter.statements
    slugs = {v: k for k, v in ids.items()}
    named = {slugs[k]: [slugs[t] for t in v] for k, v in trees.items() if k != unknown}
    assert named["root"][0] == "root"
    assert sorted(named["root"]) == ["leaf", "mid", "root", "side"]
    assert named["mid"][0] == "mid"
    assert sorted(named["mid"]) == ["leaf", "mid"]
    assert named["leaf"] == ["leaf"]
    assert named["alone"] == ["alone"]
    assert trees[unknown] == []
    assert await services.catalog.team_subtrees([]) == {}


async def test_set_team_parent_refuses_cycles(services: Services) -> None:
    a, b, c = [await make_team(s) for s in "abc"]
    catalog = services.catalog
    await catalog.set_team_parent(b.id, a.id)
    await catalog.set_team_parent(c.id, b.id)
    for team, parent in [(a, c), (a, a), (b, c)]:
        with pytest.raises(Conflict, match="the team tree cannot have a cycle"):
            await catalog.set_team_parent(team.id, parent.id)
    assert await parents() == {"a": None, "b": "a", "c": "b"}
    await catalog.set_team_parent(c.id, None)
    assert (await parents())["c"] is None


async def test_deleting_a_parent_team_makes_its_children_top_level(services: Services) -> None:
    await import_catalog(docs(group("a", "{children: [b]}"), group("b"), system("s", "{owner: a}")))
    await services.catalog.delete_team(stable_id("group:default/a"))
    assert await parents() == {"b": None}
    assert (await System.get(slug="s")).owner_id is None


# -- GraphQL ----------------------------------------------------------------------------------

SYSTEM_QUERY = """
query System($slug: String) {
  system(slug: $slug) {
    id name slug
    owner { slug }
    domain { slug name owner { slug } systems(first: 1) { nodes { slug } pageInfo { hasNextPage } } }
    components(first: 2) { nodes { name system { slug } } pageInfo { endCursor hasNextPage } }
  }
}
"""


async def test_graphql_reads_systems_domains_and_the_team_tree(client: httpx.AsyncClient) -> None:
    await import_catalog(EXAMPLE)
    body = await gql(client, SYSTEM_QUERY, {"slug": "storefront"})
    assert "errors" not in body, body
    found = body["data"]["system"]
    assert found["id"] == str(stable_id("system:default/storefront"))
    assert found["owner"] == {"slug": "payments"}
    assert found["domain"]["owner"] == {"slug": "payments"}
    assert found["domain"]["systems"] == {
        "nodes": [{"slug": "discovery-engine"}],
        "pageInfo": {"hasNextPage": True},
    }
    components = found["components"]
    assert [n["name"] for n in components["nodes"]] == ["checkout", "ledger"]
    assert components["nodes"][0]["system"] == {"slug": "storefront"}
    assert components["pageInfo"]["hasNextPage"] is True
    rest = await gql(
        client,
        "query($id: ID, $after: String) { system(id: $id) { components(after: $after) "
        "{ nodes { name } pageInfo { hasNextPage } } } }",
        {"id": found["id"], "after": components["pageInfo"]["endCursor"]},
    )
    assert rest["data"]["system"]["components"] == {
        "nodes": [{"name": "payments-api"}],
        "pageInfo": {"hasNextPage": False},
    }

    tree = await gql(
        client,
        '{ team(slug: "payments") { parent { slug } children(first: 5) { nodes { slug '
        "parent { slug } children { nodes { slug } } } } } }",
    )
    assert tree["data"]["team"] == {
        "parent": None,
        "children": {
            "nodes": [{"slug": "fraud", "parent": {"slug": "payments"}, "children": {"nodes": []}}]
        },
    }

    listed = await gql(
        client,
        "{ systems(first: 1) { nodes { slug } pageInfo { endCursor hasNextPage } } "
        "domains { nodes { slug name } pageInfo { hasNextPage } } "
        'domain(slug: "commerce") { systems { nodes { slug } } } }',
    )
    data = listed["data"]
    assert data["systems"]["nodes"] == [{"slug": "discovery-engine"}]
    assert data["systems"]["pageInfo"]["hasNextPage"] is True
    assert data["domains"]["nodes"] == [{"slug": "commerce", "name": "Commerce"}]
    assert [n["slug"] for n in data["domain"]["systems"]["nodes"]] == [
        "discovery-engine",
        "storefront",
    ]
    after = await gql(
        client,
        "query($after: String) { systems(first: 1, after: $after) { nodes { slug } } }",
        {"after": data["systems"]["pageInfo"]["endCursor"]},
    )
    assert after["data"]["systems"]["nodes"] == [{"slug": "storefront"}]
    missing = await gql(
        client, f'{{ system(slug: "nope") {{ id }} domain(id: "{uuid.uuid4()}") {{ id }} }}'
    )
    assert missing["data"] == {"system": None, "domain": None}


@pytest.mark.parametrize(
    "query",
    [
        f'{{ system(id: "{UID}", slug: "s") {{ id }} }}',
        "{ domain { id } }",
        '{ system(id: "not-a-uuid") { id } }',
        "{ systems(first: 0) { nodes { id } } }",
        "{ domains(first: 101) { nodes { id } } }",
        '{ systems(after: "garbage!") { nodes { id } } }',
        '{ team(slug: "payments") { children(first: 0) { nodes { id } } } }',
        '{ system(slug: "storefront") { components(first: 101) { nodes { id } } } }',
        f'{{ domain(slug: "{"x" * 101}") {{ id }} }}',
    ],
)
async def test_bad_arguments_are_bad_user_input(client: httpx.AsyncClient, query: str) -> None:
    await import_catalog(EXAMPLE)
    body = await gql(client, query)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


STATEMENTS_QUERY = """
{
  systems(first: 50) { nodes {
    slug owner { slug } domain { slug owner { slug } }
    components(first: 10) { nodes { name team { slug } system { slug } } }
  } }
  teams(first: 50) { nodes { slug parent { slug } children(first: 10) { nodes { slug } } } }
}
"""


async def test_statement_count_does_not_grow_with_the_catalog(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    async def measure() -> int:
        sql_counter.statements.clear()
        body = await gql(client, STATEMENTS_QUERY)
        assert "errors" not in body, body
        return len(sql_counter.statements)

    async def grow(start: int, n: int) -> None:
        # n domains, each with a system of 3 components owned by a team with a sub-team
        for i in range(start, start + n):
            parent, child = await make_team(f"t{i}"), await make_team(f"t{i}-sub")
            child.parent_id = str(parent.id)
            await child.save()
            dom = await Domain.create(id=uuid.uuid4(), name=f"D{i}", slug=f"d{i}", owner=parent)
            sys = await System.create(
                id=uuid.uuid4(), name=f"S{i}", slug=f"s{i}", domain=dom, owner=parent
            )
            for j in range(3):
                await make_component(child, f"c{i}-{j}", system=sys)

    # systems page, teams page, then one batch per loader and level: owners, domains, domain
    # owners, components, their teams and systems, parents, children. Loads of one loader at
    # different levels may share a batch or not (timing), so the bound is what is fixed.
    await grow(0, 2)
    assert await measure() <= 8, sql_counter.statements
    await grow(2, 10)
    assert await measure() <= 8, sql_counter.statements


async def test_nested_children_with_huge_pages_are_too_complex_not_an_error(
    client: httpx.AsyncClient,
) -> None:
    """Team.children nests: three pages of millions multiply past 64 bits; the answer still
    reports a cost (capped at 2**53 - 1), not an internal error (found by tests/test_fuzz.py)."""
    big = 2_642_244
    body = await gql(
        client,
        "query($n: Int!) { teams(first: $n) { nodes { children(first: $n) { nodes { "
        "children(first: $n) { nodes { slug } } } } } } }",
        {"n": big},
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", body
    assert body["extensions"]["cost"]["requested"] == 2**53 - 1, body


async def test_set_team_parent_mutation(client: httpx.AsyncClient, settings: Settings) -> None:
    a, b = await make_team("a"), await make_team("b")
    admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}
    mutation = (
        "mutation($t: ID!, $p: ID) { setTeamParent(teamId: $t, parentId: $p) "
        "{ slug parent { slug } } }"
    )
    body = await gql(client, mutation, {"t": str(b.id), "p": str(a.id)}, headers=admin)
    assert body["data"]["setTeamParent"] == {"slug": "b", "parent": {"slug": "a"}}
    body = await gql(client, mutation, {"t": str(a.id), "p": str(b.id)}, headers=admin)
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert "cannot have a cycle" in body["errors"][0]["message"]
    body = await gql(client, mutation, {"t": str(a.id), "p": str(uuid.uuid4())}, headers=admin)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await gql(client, mutation, {"t": str(b.id), "p": None})
    assert "admin" in body["errors"][0]["message"]
    body = await gql(client, mutation, {"t": str(b.id), "p": None}, headers=admin)
    assert body["data"]["setTeamParent"] == {"slug": "b", "parent": None}


# -- migration 0007 -----------------------------------------------------------------------------

MIGRATION_SCHEMA = "h9_rollups_migration"


async def _sql(url: str, sql: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
    await init_db(url)
    try:
        values = values or []
        return await connection().execute_query_dict(sql.format(*placeholders(len(values))), values)
    finally:
        await close_db()


async def test_migration_0007_keeps_existing_rows(database_url: str, tmp_path: Path) -> None:
    from tortoise.migrations.api.migrate import migrate as tortoise_migrate

    postgres = database_url.startswith("postgres")
    if postgres:
        url = f"{database_url}?schema={MIGRATION_SCHEMA}"
        await _sql(database_url, f"DROP SCHEMA IF EXISTS {MIGRATION_SCHEMA} CASCADE")
        await _sql(database_url, f"CREATE SCHEMA {MIGRATION_SCHEMA}")
    else:
        url = f"sqlite://{tmp_path / 'rollups.sqlite3'}"
    try:
        await tortoise_migrate(
            config=tortoise_config(url), target="models.0006_unique_opencost_selector"
        )
        await close_db()
        team, comp = uuid.uuid4(), uuid.uuid4()
        now = datetime(2026, 1, 1, tzinfo=UTC)

        def value(v: Any) -> Any:
            if postgres:
                return v
            return str(v) if isinstance(v, uuid.UUID) else v.isoformat() if v is now else v

        await _sql(
            url,
            "INSERT INTO team (id, name, slug, created_at, updated_at) VALUES ({}, {}, {}, {}, {})",
            [value(v) for v in (team, "Payments", "payments", now, now)],
        )
        await _sql(
            url,
            "INSERT INTO component (id, name, team_id, opencost_aggregate, budget_usd, cost_30d, "
            "created_at, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            [value(v) for v in (comp, "checkout", team, "label:app", 60.0, 12.5, now, now)],
        )
        assert (await migrate(url))[0] == "0007_catalog_rollups"  # and any later ones
        await close_db()
        teams = await _sql(url, "SELECT slug, name, parent_id FROM team")
        assert teams == [{"slug": "payments", "name": "Payments", "parent_id": None}]
        rows = await _sql(url, "SELECT name, budget_usd, cost_30d, system_id FROM component")
        assert rows == [
            {"name": "checkout", "budget_usd": 60.0, "cost_30d": 12.5, "system_id": None}
        ]
        # 0010: the 30-day budget became a budget row, mirrored by budget_usd.
        budgets = await _sql(url, "SELECT amount, currency, period, thresholds FROM budget")
        assert len(budgets) == 1
        assert budgets[0]["amount"] == 60.0
        assert (budgets[0]["currency"], budgets[0]["period"]) == ("USD", "ROLLING_30_DAYS")
        raw = budgets[0]["thresholds"]
        assert (json.loads(raw) if isinstance(raw, str) else raw) == [0.5, 0.8, 1.0]
        assert await _sql(url, "SELECT COUNT(*) AS n FROM system") == [{"n": 0}]
        assert await _sql(url, "SELECT COUNT(*) AS n FROM domain") == [{"n": 0}]
        if postgres:
            index_sql = (
                "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()"
            )
        else:
            index_sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
        names = {r["name"] for r in await _sql(url, index_sql)}
        assert {
            "component_system_name_idx",
            "team_parent_slug_idx",
            "system_domain_slug_idx",
            "component_selector_uniq",  # 0006's expression index survives the new columns
            "component_cost_desc_idx",  # 0008 replaced 0003's component_top_idx
        } <= names, names
    finally:
        await close_db()
        if postgres:
            await _sql(database_url, f"DROP SCHEMA IF EXISTS {MIGRATION_SCHEMA} CASCADE")
