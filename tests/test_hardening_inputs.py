"""Client mistakes are 4xx / BAD_USER_INPUT / CONFLICT, never a 500 or INTERNAL_SERVER_ERROR.

Issue 13, "Client mistakes": every case runs on SQLite and PostgreSQL (asyncpg refuses a 101-character
string for a varchar(100) parameter, NUL bytes and unpaired surrogates; SQLite stores them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from finops_gql.catalog.backstage import CatalogError, import_catalog
from finops_gql.config import Settings
from finops_gql.db.models import Component, SyncProgress, Team
from finops_gql.db.setup import (
    close_db,
    connection,
    dialect,
    init_db,
    migrate,
    placeholders,
    tortoise_config,
)
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.errors import Conflict, MigrationRefused
from finops_gql.opencost.parse import parse_allocation_response
from finops_gql.services import Services
from tests.conftest import FIXTURES, make_component, make_team, today, token

NUL = "a\x00b"
SURROGATE = "a\ud800b"


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, 'admin')}"}


def cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode()


def raw_cursor(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """tests.conftest.gql, but the body is written by json.dumps: httpx cannot encode a lone
    surrogate, JSON can (as a \\ud800 escape), and that is how a client sends one."""
    payload = json.dumps({"query": query, "variables": variables or {}})
    response = await client.post(
        "/graphql",
        content=payload,
        headers={**(headers or {}), "content-type": "application/json"},
    )
    body: dict[str, Any] = response.json()
    if response.status_code == 400:
        # The body parser refuses JSON that cannot become Python text or a finite number (lone
        # surrogates, NaN, out-of-range numbers) before GraphQL sees it: refused all the same.
        assert code_of(body) == "BAD_REQUEST", body
        assert body["errors"][0]["message"].startswith("Unable to parse JSON"), body
        return body
    assert response.status_code == 200, response.text
    return body


# A bad value is refused either by the JSON body parser (HTTP 400) or at the service boundary.
REFUSED = {"BAD_USER_INPUT", "BAD_REQUEST"}


def code_of(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


# -- 1. REST limit: ASCII digits only, bounded length ---------------------------------------------


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    "raw_query",
    [
        "limit=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        "limit=%D9%A3",  # Arabic-Indic three: int() accepts it
        "limit=%EF%BC%95",  # fullwidth five
        "limit=" + "9" * 5000,  # int() of a long digit string raises past 4300 digits
        "limit=" + "0" * 5000 + "5",
        "limit=%205",  # leading space
        "limit=5%20",
        "limit=+5",
        "limit=0x10",
        "limit=%00",
        "limit=1_0",
    ],
)
async def test_rest_limit_refuses_anything_but_short_ascii_digits(
    client: httpx.AsyncClient, raw_query: str
) -> None:
    response = await client.get(f"/api/v1/cost/summary?{raw_query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "Bad Request"
    assert "limit" in body["message"]
    assert len(body["message"]) < 200  # the 5,000 digits are not echoed back


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(("raw", "count"), [("1", 1), ("007", 3), ("100", 3)])
async def test_rest_limit_accepts_ascii_digits(
    client: httpx.AsyncClient, raw: str, count: int
) -> None:
    team = await make_team()
    for n in range(3):
        await make_component(team, f"c{n}")
    response = await client.get(f"/api/v1/cost/summary?limit={raw}")
    assert response.status_code == 200, response.text
    assert len(response.json()) == count


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    "route", ["components/{}/actual", "components/{}/history", "teams/{}/summary"]
)
@pytest.mark.parametrize("ident", ["f" * 5000, "%00", "%ED%A0%80", "%C2%B2"])
async def test_rest_ids_that_are_no_uuid_are_400(
    client: httpx.AsyncClient, route: str, ident: str
) -> None:
    response = await client.get("/api/v1/cost/" + route.format(ident))
    assert response.status_code == 400, response.text
    assert len(response.json()["message"]) < 200


# -- 2. validation at the boundary: GraphQL reads and writes --------------------------------------

LONG_SLUG = "a" * 101
TOO_LONG_NAME = "n" * 201
TOO_LONG_KEY = "k" * 254
TOO_LONG_AGGREGATE = "label:" + "a" * 195  # a valid aggregate, longer than its column (200)

READS: list[tuple[str, str, dict[str, Any]]] = [
    ("team slug too long", "query($s: String!) { team(slug: $s) { id } }", {"s": LONG_SLUG}),
    ("team slug NUL", "query($s: String!) { team(slug: $s) { id } }", {"s": NUL}),
    ("team slug surrogate", "query($s: String!) { team(slug: $s) { id } }", {"s": SURROGATE}),
    ("component id NUL", "query($i: ID!) { component(id: $i) { id } }", {"i": NUL}),
    ("component id long", "query($i: ID!) { component(id: $i) { id } }", {"i": "f" * 5000}),
    (
        "components teamId surrogate",
        "query($t: ID!) { components(teamId: $t) { nodes { id } } }",
        {"t": SURROGATE},
    ),
]

TEAMS_PAGE = "query($a: String!) { teams(first: 1, after: $a) { nodes { id } } }"
COMPONENTS_PAGE = "query($a: String!) { components(first: 1, after: $a) { nodes { id } } }"
BAD_CURSORS: list[tuple[str, str, str]] = [
    ("teams: not base64", TEAMS_PAGE, "!!!"),
    ("teams: non-ASCII", TEAMS_PAGE, "é"),
    ("teams: surrogate", TEAMS_PAGE, SURROGATE),
    ("teams: non-UTF-8 bytes", TEAMS_PAGE, raw_cursor(b"\xff\xfe\xfd")),
    ("teams: not JSON", TEAMS_PAGE, raw_cursor(b"slug")),
    ("teams: JSON object", TEAMS_PAGE, raw_cursor(b'{"a": 1}')),
    ("teams: wrong size", TEAMS_PAGE, cursor("a", "b")),
    ("teams: number", TEAMS_PAGE, cursor(1)),
    ("teams: slug too long", TEAMS_PAGE, cursor(LONG_SLUG)),
    ("teams: slug NUL", TEAMS_PAGE, cursor(NUL)),
    ("teams: slug surrogate", TEAMS_PAGE, raw_cursor(b'["\\ud800"]')),
    ("teams: huge", TEAMS_PAGE, cursor("a" * 100_000)),
    ("teams: deeply nested", TEAMS_PAGE, raw_cursor(b"[" * 100_000)),
    ("components: wrong size", COMPONENTS_PAGE, cursor("checkout")),
    ("components: id not a UUID", COMPONENTS_PAGE, cursor("checkout", "not-a-uuid")),
    ("components: id NUL", COMPONENTS_PAGE, cursor("checkout", NUL)),
    ("components: name too long", COMPONENTS_PAGE, cursor(TOO_LONG_NAME, str(uuid.uuid4()))),
    ("components: name NUL", COMPONENTS_PAGE, cursor(NUL, str(uuid.uuid4()))),
    (
        "components: name surrogate",
        COMPONENTS_PAGE,
        raw_cursor(b'["\\udfff", "' + str(uuid.uuid4()).encode() + b'"]'),
    ),
    ("components: non-UTF-8 bytes", COMPONENTS_PAGE, raw_cursor(b"[\xc3\x28]")),
]


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(("case", "query", "variables"), READS, ids=[r[0] for r in READS])
async def test_bad_text_in_reads_is_bad_user_input(
    client: httpx.AsyncClient, case: str, query: str, variables: dict[str, Any]
) -> None:
    await make_component(await make_team())
    body = await gql(client, query, variables)
    assert code_of(body) in REFUSED, body


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(("case", "query", "after"), BAD_CURSORS, ids=[c[0] for c in BAD_CURSORS])
async def test_tampered_cursor_is_bad_user_input(
    client: httpx.AsyncClient, case: str, query: str, after: str
) -> None:
    await make_component(await make_team())
    body = await gql(client, query, {"a": after})
    assert code_of(body) in REFUSED, body
    if code_of(body) == "BAD_USER_INPUT":
        assert "cursor" in body["errors"][0]["message"]
    assert len(body["errors"][0]["message"]) < 200


@pytest.mark.usefixtures("services")
async def test_issued_cursors_still_page(client: httpx.AsyncClient) -> None:
    team = await make_team()
    await make_team("search")
    for name in ("a", "b", "c"):
        await make_component(team, name)
    first = await gql(client, "{ teams(first: 1) { nodes { slug } pageInfo { endCursor } } }")
    after = first["data"]["teams"]["pageInfo"]["endCursor"]
    second = await gql(client, TEAMS_PAGE.replace("{ id }", "{ slug }"), {"a": after})
    assert second["data"]["teams"]["nodes"] == [{"slug": "search"}]
    page = await gql(client, "{ components(first: 2) { pageInfo { endCursor } } }")
    after = page["data"]["components"]["pageInfo"]["endCursor"]
    rest = await gql(client, COMPONENTS_PAGE.replace("{ id }", "{ name }"), {"a": after})
    assert rest["data"]["components"]["nodes"] == [{"name": "c"}]


CREATE_TEAM = "mutation($i: CreateTeamInput!) { createTeam(input: $i) { id } }"
UPDATE_TEAM = "mutation($i: UpdateTeamInput!) { updateTeam(input: $i) { id } }"
CREATE_COMPONENT = "mutation($i: CreateComponentInput!) { createComponent(input: $i) { id } }"
UPDATE_COMPONENT = "mutation($i: UpdateComponentInput!) { updateComponent(input: $i) { id } }"
SET_BUDGET = "mutation($c: ID!, $b: Float) { setBudget(componentId: $c, budgetUsd: $b) { id } }"

# (case, document, input fields; TEAM / COMPONENT are replaced by real ids)
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("createTeam name NUL", CREATE_TEAM, {"name": NUL, "slug": "x"}),
    ("createTeam name surrogate", CREATE_TEAM, {"name": SURROGATE, "slug": "x"}),
    ("createTeam name too long", CREATE_TEAM, {"name": TOO_LONG_NAME, "slug": "x"}),
    ("createTeam slug too long", CREATE_TEAM, {"name": "x", "slug": LONG_SLUG}),
    ("createTeam slug NUL", CREATE_TEAM, {"name": "x", "slug": NUL}),
    ("updateTeam name NUL", UPDATE_TEAM, {"id": "TEAM", "name": NUL}),
    ("updateTeam name surrogate", UPDATE_TEAM, {"id": "TEAM", "name": SURROGATE}),
    ("updateTeam slug too long", UPDATE_TEAM, {"id": "TEAM", "slug": LONG_SLUG}),
    ("createComponent name NUL", CREATE_COMPONENT, {"name": NUL, "teamId": "TEAM"}),
    ("createComponent name surrogate", CREATE_COMPONENT, {"name": SURROGATE, "teamId": "TEAM"}),
    (
        "createComponent key NUL",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "opencostKey": NUL},
    ),
    (
        "createComponent key surrogate",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "opencostKey": SURROGATE},
    ),
    (
        "createComponent key too long",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "opencostKey": TOO_LONG_KEY},
    ),
    (
        "createComponent aggregate too long",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "opencostAggregate": TOO_LONG_AGGREGATE},
    ),
    (
        "createComponent aggregate NUL",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "opencostAggregate": "label:a\x00"},
    ),
    ("updateComponent name NUL", UPDATE_COMPONENT, {"id": "COMPONENT", "name": NUL}),
    (
        "updateComponent key surrogate",
        UPDATE_COMPONENT,
        {"id": "COMPONENT", "opencostKey": SURROGATE},
    ),
    (
        "updateComponent aggregate too long",
        UPDATE_COMPONENT,
        {"id": "COMPONENT", "opencostAggregate": TOO_LONG_AGGREGATE},
    ),
    (
        "createComponent budget too large",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "budgetUsd": 1e300},
    ),
    (
        "createComponent budget negative",
        CREATE_COMPONENT,
        {"name": "x", "teamId": "TEAM", "budgetUsd": -1},
    ),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    return ids.get(value, value) if isinstance(value, str) else value


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(("case", "document", "fields"), WRITES, ids=[w[0] for w in WRITES])
async def test_bad_text_and_money_in_writes_is_bad_user_input(
    client: httpx.AsyncClient,
    settings: Settings,
    case: str,
    document: str,
    fields: dict[str, Any],
) -> None:
    team = await make_team()
    component = await make_component(team)
    ids = {"TEAM": str(team.id), "COMPONENT": str(component.id)}
    variables = {"i": {k: _fill(v, ids) for k, v in fields.items()}}
    body = await gql(client, document, variables, headers=admin(settings))
    assert code_of(body) in REFUSED, body
    # nothing was written
    assert await Team.all().count() == 1
    assert await Component.all().count() == 1
    assert (await Component.get(id=component.id)).name == "checkout"


# GraphQL literals reach the resolver unchecked (graphql-core's parse_float_literal is float()).
# JSON variables NaN, Infinity and 1e309 (which Python's json reads as inf) are refused by
# graphql-core's Float coercion; that refusal was an INTERNAL_SERVER_ERROR until the view mapped
# graphql-core's own errors to BAD_USER_INPUT.
BUDGET_LITERALS = ["1e309", "-1e309", "1e300", "1000000000.01", "-0.5"]


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize("literal", BUDGET_LITERALS)
async def test_budget_literals_out_of_range_are_bad_user_input(
    client: httpx.AsyncClient, settings: Settings, literal: str
) -> None:
    component = await make_component(await make_team())
    set_budget = (
        f'mutation {{ setBudget(componentId: "{component.id}", budgetUsd: {literal}) {{ id }} }}'
    )
    body = await gql(client, set_budget, headers=admin(settings))
    assert code_of(body) in REFUSED, body
    assert "budgetUsd" in body["errors"][0]["message"]
    create = (
        f'mutation {{ createComponent(input: {{name: "x", teamId: "{component.team_id}", '
        f"budgetUsd: {literal}}}) {{ id }} }}"
    )
    body = await gql(client, create, headers=admin(settings))
    assert code_of(body) in REFUSED, body
    assert (await Component.get(id=component.id)).budget_usd is None


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e309"])
async def test_non_finite_budget_variables_never_reach_the_service(
    client: httpx.AsyncClient, settings: Settings, value: str
) -> None:
    component = await make_component(await make_team())
    raw = (
        '{"query": "mutation($c: ID!, $b: Float) { setBudget(componentId: $c, budgetUsd: $b) '
        '{ id } }", "variables": {"c": "' + str(component.id) + '", "b": ' + value + "}}"
    )
    response = await client.post(
        "/graphql",
        content=raw,
        headers={**admin(settings), "content-type": "application/json"},
    )
    body = response.json()
    assert response.status_code in {200, 400}, response.text
    assert code_of(body) in REFUSED, body
    if response.status_code == 200:
        assert "$b" in body["errors"][0]["message"]
    assert (await Component.get(id=component.id)).budget_usd is None


@pytest.mark.usefixtures("services")
async def test_budget_at_the_bound_is_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    component = await make_component(await make_team())
    body = await gql(
        client,
        SET_BUDGET.replace("{ id }", "{ budgetUsd }"),
        {"c": str(component.id), "b": settings.budget_max_usd},
        headers=admin(settings),
    )
    assert body["data"]["setBudget"]["budgetUsd"] == settings.budget_max_usd


async def test_budget_bound_is_configurable(services: Services) -> None:
    from finops_gql.catalog.service import CatalogService
    from finops_gql.errors import InvalidInput

    component = await make_component(await make_team())
    small = CatalogService(budget_max_usd=100.0)
    await small.set_budget(component.id, 100.0)
    with pytest.raises(InvalidInput, match=r"at most 100 \(BUDGET_MAX_USD\)"):
        await small.set_budget(component.id, 100.5)
    assert Settings.from_env({"BUDGET_MAX_USD": "5000"}).budget_max_usd == 5000.0


# -- 3. unique violations are CONFLICT, from any path, on both databases ---------------------------


async def _concurrently(
    client: httpx.AsyncClient, settings: Settings, document: str, inputs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    headers = admin(settings)
    return await asyncio.gather(*(gql(client, document, {"i": i}, headers) for i in inputs))


@pytest.mark.usefixtures("services")
async def test_concurrent_create_team_one_wins_the_rest_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    bodies = await _concurrently(
        client, settings, CREATE_TEAM, [{"name": f"T{n}", "slug": "same"} for n in range(20)]
    )
    codes = [code_of(b) for b in bodies]
    assert codes.count(None) == 1, codes
    assert codes.count("CONFLICT") == 19, codes
    assert await Team.filter(slug="same").count() == 1
    for body in bodies:
        if body.get("errors"):
            assert "slug 'same'" in body["errors"][0]["message"]


@pytest.mark.usefixtures("services")
async def test_concurrent_slug_updates_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    teams = [await make_team(f"t{n}") for n in range(10)]
    bodies = await _concurrently(
        client, settings, UPDATE_TEAM, [{"id": str(t.id), "slug": "same"} for t in teams]
    )
    codes = [code_of(b) for b in bodies]
    assert codes.count(None) == 1, codes
    assert codes.count("CONFLICT") == 9, codes


@pytest.mark.usefixtures("services")
async def test_concurrent_components_with_one_selector_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    teams = [await make_team(f"t{n}") for n in range(20)]
    bodies = await _concurrently(
        client,
        settings,
        CREATE_COMPONENT,
        [{"name": "checkout", "teamId": str(t.id)} for t in teams],
    )
    codes = [code_of(b) for b in bodies]
    assert codes.count(None) == 1, codes
    assert codes.count("CONFLICT") == 19, codes
    assert await Component.all().count() == 1


async def test_integrity_errors_in_service_writes_are_conflicts(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's own refusal (a writer that got past the pre-check) is a Conflict too."""
    from finops_gql.catalog import service as catalog_module

    team = await make_team("payments")
    other = await make_team("search")
    await make_component(team, "checkout")
    catalog = services.catalog
    # a caller-chosen id that exists already: primary key violation
    with pytest.raises(Conflict, match=f"a team with id {team.id} already exists"):
        await catalog.create_team("Again", "again", team_id=team.id)
    # a component added between delete_team's check and its delete: the foreign key refuses
    await make_component(other, "search")

    async def owns_nothing(team_id: uuid.UUID) -> bool:
        return False

    monkeypatch.setattr(catalog_module, "_owns_components", owns_nothing)
    with pytest.raises(Conflict, match="owns components"):
        await catalog.delete_team(other.id)
    assert await Team.filter(id=other.id).exists()

    # a selector claimed between the check and the insert: the unique index refuses, and the
    # message still names the holder
    async def no_check(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(catalog_module.CatalogService, "_check_selector", no_check)
    with pytest.raises(Conflict, match="component 'checkout' of team 'payments'"):
        await catalog.create_component("checkout", other.id)
    shop = await catalog.create_component("shop", other.id)
    with pytest.raises(Conflict, match="component 'checkout' of team 'payments'"):
        await catalog.update_component(shop.id, name="checkout")
    assert await Component.filter(name="checkout").count() == 1


# -- 4. two components may not claim the same OpenCost selector ------------------------------------


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    ("case", "fields"),
    [
        ("same default key in another team", {"name": "checkout"}),
        ("explicit key equal to another's name", {"name": "shop", "opencostKey": "checkout"}),
        (
            "explicit default aggregate",
            {"name": "checkout", "opencostAggregate": "label:app"},
        ),
    ],
)
async def test_create_component_with_a_claimed_selector_conflicts(
    client: httpx.AsyncClient, settings: Settings, case: str, fields: dict[str, Any]
) -> None:
    await make_component(await make_team("payments"), "checkout")
    other = await make_team("search")
    body = await gql(
        client,
        CREATE_COMPONENT,
        {"i": {"teamId": str(other.id), **fields}},
        headers=admin(settings),
    )
    assert code_of(body) == "CONFLICT", body
    message = body["errors"][0]["message"]
    assert "checkout" in message
    assert "payments" in message  # names the other component and its team
    assert await Component.all().count() == 1


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    "fields",
    [
        {"name": "checkout", "opencostKey": "checkout-search"},
        {"name": "checkout", "opencostAggregate": "namespace"},
        {"name": "shop"},
    ],
)
async def test_distinct_selectors_are_accepted(
    client: httpx.AsyncClient, settings: Settings, fields: dict[str, Any]
) -> None:
    await make_component(await make_team("payments"), "checkout")
    other = await make_team("search")
    body = await gql(
        client, CREATE_COMPONENT, {"i": {"teamId": str(other.id), **fields}}, admin(settings)
    )
    assert "errors" not in body, body


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    ("case", "fields"),
    [
        ("rename changes the default key", {"name": "checkout"}),
        ("explicit key", {"opencostKey": "checkout"}),
        ("aggregate change", {"opencostAggregate": "label:app"}),
    ],
)
async def test_update_component_onto_a_claimed_selector_conflicts(
    client: httpx.AsyncClient, settings: Settings, case: str, fields: dict[str, Any]
) -> None:
    await make_component(await make_team("payments"), "checkout")
    other = await make_team("search")
    if "opencostAggregate" in fields:
        mine = await make_component(other, "checkout", opencost_aggregate="namespace")
    else:
        mine = await make_component(other, "shop")
    body = await gql(
        client, UPDATE_COMPONENT, {"i": {"id": str(mine.id), **fields}}, admin(settings)
    )
    assert code_of(body) == "CONFLICT", body
    assert "payments" in body["errors"][0]["message"]
    refreshed = await Component.get(id=mine.id)
    assert (refreshed.name, refreshed.opencost_key) == (mine.name, None)


@pytest.mark.usefixtures("services")
async def test_update_keeping_its_own_selector_is_fine(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    team = await make_team("payments")
    mine = await make_component(team, "checkout")
    body = await gql(
        client,
        UPDATE_COMPONENT,
        {"i": {"id": str(mine.id), "name": "checkout", "opencostKey": "checkout"}},
        admin(settings),
    )
    assert "errors" not in body, body
    # a rename that keeps the key explicit frees the name for another component
    body = await gql(
        client, UPDATE_COMPONENT, {"i": {"id": str(mine.id), "name": "shop"}}, admin(settings)
    )
    assert "errors" not in body, body
    other = await make_team("search")
    body = await gql(
        client,
        CREATE_COMPONENT,
        {"i": {"teamId": str(other.id), "name": "checkout"}},
        admin(settings),
    )
    assert code_of(body) == "CONFLICT", body  # still claimed by key


async def test_selector_index_exists_after_migrations(services: Services) -> None:
    if dialect() == "postgres":
        sql = (
            "SELECT indexdef AS sql FROM pg_indexes WHERE indexname = 'component_selector_uniq' "
            "AND schemaname = current_schema()"
        )
    else:
        sql = "SELECT sql FROM sqlite_master WHERE name = 'component_selector_uniq'"
    rows = await connection().execute_query_dict(sql)
    assert len(rows) == 1
    assert "UNIQUE" in rows[0]["sql"].upper()
    assert "COALESCE" in rows[0]["sql"].upper()


async def test_database_refuses_a_duplicate_selector_whatever_the_path(services: Services) -> None:
    team = await make_team()
    await make_component(team, "checkout")
    from tortoise.exceptions import IntegrityError

    with pytest.raises(IntegrityError):
        await make_component(team, "other", opencost_key="checkout")
    with pytest.raises(IntegrityError):
        await make_component(team, "checkout")
    await make_component(team, "checkout", opencost_aggregate="namespace")


GROUPS = (
    "kind: Group\nmetadata: {name: payments}\nspec: {type: team}\n---\n"
    "kind: Group\nmetadata: {name: search}\nspec: {type: team}\n"
)


def component_doc(name: str, owner: str, key: str | None = None) -> str:
    annotations = f"\n  annotations: {{opencost.io/key: {key}}}" if key else ""
    return (
        f"---\nkind: Component\nmetadata:\n  name: {name}{annotations}\nspec: {{owner: {owner}}}\n"
    )


@pytest.mark.usefixtures("services")
async def test_import_refuses_two_components_with_one_selector_in_a_file() -> None:
    text = (
        GROUPS + component_doc("checkout", "payments") + component_doc("shop", "search", "checkout")
    )
    with pytest.raises(CatalogError) as caught:
        await import_catalog(text, "cat.yaml")
    message = str(caught.value)
    assert "component:default/checkout" in message
    assert "component:default/shop" in message
    assert "label:app" in message
    assert await Component.all().count() == 0


@pytest.mark.usefixtures("services")
async def test_import_refuses_a_selector_claimed_by_an_existing_component(
    services: Services,
) -> None:
    await services.catalog.create_component("checkout", (await make_team("other")).id)
    text = GROUPS + component_doc("checkout", "search")
    with pytest.raises(CatalogError) as caught:
        await import_catalog(text, "cat.yaml")
    message = str(caught.value)
    assert "component:default/checkout" in message
    assert "'checkout' of team 'other'" in message
    assert await Component.all().count() == 1
    assert await Team.all().count() == 1


async def test_import_racing_a_writer_is_a_catalog_error(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selector taken between the import's check and its write: the index refuses, the
    import reports it and writes nothing."""
    from finops_gql.catalog import backstage

    async def nobody(*args: object, **kwargs: object) -> None:
        return None

    await services.catalog.create_component("checkout", (await make_team("other")).id)
    monkeypatch.setattr(backstage, "selector_owner", nobody)
    with pytest.raises(CatalogError, match="concurrent change; nothing was imported"):
        await import_catalog(GROUPS + component_doc("checkout", "search"))
    assert await Team.all().count() == 1


@pytest.mark.usefixtures("services")
async def test_reimport_and_swapping_keys_within_a_file_are_fine() -> None:
    text = GROUPS + component_doc("checkout", "payments") + component_doc("shop", "search")
    await import_catalog(text)
    await import_catalog(text)  # the same ids re-claim their own selectors
    # a component moved to another key frees its old one for another in the same file, in
    # either order: the new claim may come before the move
    moved = (
        GROUPS
        + component_doc("shop", "search", "checkout")
        + component_doc("checkout", "payments", "checkout-v2")
    )
    await import_catalog(moved)
    keys = {c.name: c.selector_key for c in await Component.all()}
    assert keys == {"checkout": "checkout-v2", "shop": "checkout"}
    # and two components may swap keys
    swapped = (
        GROUPS
        + component_doc("shop", "search", "checkout-v2")
        + component_doc("checkout", "payments", "checkout")
    )
    await import_catalog(swapped)
    keys = {c.name: c.selector_key for c in await Component.all()}
    assert keys == {"checkout": "checkout", "shop": "checkout-v2"}


MIGRATION_SCHEMA = "h13_selector_migration"


def _migration_url(database_url: str, tmp: Any) -> str:
    """A database of its own: SQLite in a new file, PostgreSQL in a schema of the test database."""
    if database_url.startswith("sqlite"):
        return f"sqlite://{tmp / 'migration.sqlite3'}"
    return f"{database_url}?schema={MIGRATION_SCHEMA}"


async def _sql(url: str, *statements: tuple[str, list[Any]]) -> list[dict[str, Any]]:
    await init_db(url)
    rows: list[dict[str, Any]] = []
    try:
        for sql, values in statements:
            marks = placeholders(len(values))
            rows = await connection().execute_query_dict(sql.format(*marks), values)
    finally:
        await close_db()
    return rows


async def _selector_index(url: str) -> list[dict[str, Any]]:
    if url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE name = 'component_selector_uniq'"
    else:
        sql = (
            "SELECT indexname FROM pg_indexes WHERE indexname = 'component_selector_uniq' "
            "AND schemaname = current_schema()"
        )
    return await _sql(url, (sql, []))


async def test_migration_refuses_existing_duplicate_selectors_by_name(
    database_url: str, tmp_path: Any
) -> None:
    """Rows written before the unique index existed stop migration 0006 with a message naming
    them; nothing is deleted, and once fixed by hand the migration goes through."""
    from tortoise.migrations.api.migrate import migrate as tortoise_migrate

    from tests.proc import cli

    url = _migration_url(database_url, tmp_path)
    if url.startswith("postgres"):
        await _sql(
            database_url,
            (f"DROP SCHEMA IF EXISTS {MIGRATION_SCHEMA} CASCADE", []),
            (f"CREATE SCHEMA {MIGRATION_SCHEMA}", []),
        )
    try:
        await tortoise_migrate(config=tortoise_config(url), target="models.0004_one_running_sync")
        await close_db()
        team = uuid.uuid4()
        now = datetime(2026, 1, 1, tzinfo=UTC)
        insert_team = (
            "INSERT INTO team (id, name, slug, created_at, updated_at) VALUES ({}, {}, {}, {}, {})"
        )
        insert_component = (
            "INSERT INTO component (id, name, team_id, opencost_aggregate, opencost_key, "
            "cost_30d, created_at, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})"
        )

        def value(v: Any) -> Any:
            if url.startswith("postgres"):
                return v
            return str(v) if isinstance(v, uuid.UUID) else v.isoformat() if v is now else v

        rows = [(insert_team, [team, "Payments", "payments", now, now])]
        for name, key in [("checkout", None), ("shop", "checkout"), ("search", None)]:
            rows.append(
                (insert_component, [uuid.uuid4(), name, team, "label:app", key, 0.0, now, now])
            )
        await _sql(url, *((sql, [value(v) for v in values]) for sql, values in rows))

        with pytest.raises(MigrationRefused) as caught:
            await migrate(url)
        await close_db()
        message = str(caught.value)
        assert "aggregate label:app key 'checkout': 'checkout' (team 'payments'), 'shop'" in message
        assert "'search'" not in message
        assert "Nothing was changed" in message
        assert await _selector_index(url) == []
        count = await _sql(url, ("SELECT COUNT(*) AS n FROM component", []))
        assert count[0]["n"] == 3
        # the command line says the same, without a traceback
        code, _out, err = await cli("migrate", env={"DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
        assert code == 1
        assert "'shop' (team 'payments')" in err
        assert "Traceback" not in err

        await _sql(
            url, ("UPDATE component SET opencost_key = {} WHERE name = {}", ["shop", "shop"])
        )
        await migrate(url)
        await close_db()
        assert len(await _selector_index(url)) == 1
    finally:
        await close_db()
        if url.startswith("postgres"):
            await _sql(database_url, (f"DROP SCHEMA IF EXISTS {MIGRATION_SCHEMA} CASCADE", []))


# -- 5. OpenCost keys that differ only in form: the bare key wins, never both summed ---------------


def _both_forms() -> dict[str, Any]:
    body = json.loads((FIXTURES / "allocation-aggregate-label-app-legacy-keys.json").read_text())
    step = body["data"][0]
    bare = json.loads(json.dumps(step["app=opencost"]))
    bare["name"] = "opencost"
    bare["cpuCost"], bare["totalCost"] = 1.0, 1.5
    step["opencost"] = bare  # after the legacy key, as a mixed answer would list it
    return body


def test_bare_key_wins_over_legacy_form_and_nothing_is_summed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="finops_gql.opencost.parse"):
        steps = parse_allocation_response(_both_forms(), "label:app")
    assert steps[0]["opencost"].total_cost == 1.5
    assert steps[0]["opencost"].cpu_cost == 1.0
    assert set(steps[0]) == {"opencost", "prometheus"}  # a legacy-only key still counts
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "app=opencost" in warnings[0].getMessage()


def test_bare_key_wins_whatever_the_order(caplog: pytest.LogCaptureFixture) -> None:
    body = _both_forms()
    step = body["data"][0]
    body["data"][0] = {k: step[k] for k in ["opencost", "app=opencost", "app=prometheus"]}
    body["data"].append(json.loads(json.dumps(body["data"][0])))  # two steps, one warning
    with caplog.at_level(logging.WARNING, logger="finops_gql.opencost.parse"):
        steps = parse_allocation_response(body, "label:app")
    assert [s["opencost"].total_cost for s in steps] == [1.5, 1.5]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_sync_and_live_cost_count_a_key_in_both_forms_once(
    client: httpx.AsyncClient, services: Services, fake: FakeOpenCost
) -> None:
    from finops_gql.dev.opencost_fake import daily_total

    fake.keys = ["checkout", "app=checkout"]  # one answer, both forms, different costs
    component = await make_component(await make_team(), "checkout")
    # As after yesterday's sync, so the backfill fetches exactly one day.
    await SyncProgress.create(aggregate="label:app", last_day=today() - timedelta(days=1))
    run = await services.sync.run("cli", backfill_days=1)
    assert run.records == 1
    record = (await services.costs.history(component.id, 1))[0]
    assert record.breakdown.total_cost == pytest.approx(
        daily_total("checkout", record.day), abs=1e-4
    )
    assert record.breakdown.total_cost != pytest.approx(
        daily_total("checkout", record.day) + daily_total("app=checkout", record.day), abs=1e-4
    )
    actual = (await client.get(f"/api/v1/cost/components/{component.id}/actual")).json()
    seven = actual["sevenDay"]
    start, end = (datetime.fromisoformat(seven[k].replace("Z", "+00:00")) for k in ("start", "end"))
    assert seven["totalCost"] == pytest.approx(fake._cost("checkout", start, end), rel=1e-3)
