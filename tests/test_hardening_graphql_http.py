"""Issue 13: /graphql is no denial-of-service lever, bad HTTP input is a 400, and an OpenCost
failure leaves the persisted part of an answer intact.

Bounds are proven by the answer (status, code, what was read or cached), never by a stopwatch.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query
from starlette.applications import Starlette
from starlette.routing import Route

from finops_gql.app import create_app
from finops_gql.config import ConfigError, Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.graphql.documents import DocumentGuard
from finops_gql.services import Services
from tests.conftest import gql, make_component, make_records, make_team, token

pytestmark = pytest.mark.usefixtures("services")

MiB = 1024 * 1024
TYPENAME = "{ __typename }"


def guard_of(app: Starlette) -> DocumentGuard:
    for route in app.routes:
        if isinstance(route, Route) and route.path == "/graphql":
            guard = route.app.documents  # type: ignore[attr-defined]
            assert isinstance(guard, DocumentGuard)
            return guard
    raise AssertionError("no /graphql route")


@contextlib.asynccontextmanager
async def app_with(
    settings: Settings, services: Services, **changes: object
) -> AsyncIterator[tuple[httpx.AsyncClient, DocumentGuard]]:
    app = create_app(settings.with_(**changes), services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        http.headers["Authorization"] = f"Bearer {token(settings)}"
        yield http, guard_of(app)


@pytest.fixture
async def small_cache(
    settings: Settings, services: Services
) -> AsyncIterator[tuple[httpx.AsyncClient, DocumentGuard]]:
    async with app_with(settings, services, graphql_cache_size=4) as opened:
        yield opened


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """An HTTP-level refusal: the status, JSON in the GraphQL error shape, no data."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert "Traceback" not in error["message"]
    return dict(error)


# -- 1. request body size -------------------------------------------------------------------------


async def test_body_over_the_limit_is_refused_on_content_length_before_reading(
    client: httpx.AsyncClient,
) -> None:
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(32):
            read += 1
            yield b" " * (64 * 1024)

    response = await client.post(
        "/graphql",
        content=body(),
        headers={"content-type": "application/json", "content-length": str(2 * MiB)},
    )
    error = error_of(response, 413)
    assert error["extensions"] == {
        "code": "REQUEST_TOO_LARGE",
        "limit": "GRAPHQL_MAX_BODY_BYTES",
        "value": MiB,
    }
    assert "GRAPHQL_MAX_BODY_BYTES=1048576" in error["message"]
    assert read == 0  # refused on the header alone


async def test_chunked_body_without_content_length_is_counted_while_received(
    client: httpx.AsyncClient,
) -> None:
    chunk, read = 64 * 1024, 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        yield b'{"query": "{ __typename }", "x": "'
        for _ in range(8 * MiB // chunk):  # 8 MiB offered
            read += 1
            yield b"a" * chunk

    request = client.build_request(
        "POST", "/graphql", content=body(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert error_of(response, 413)["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert read * chunk <= MiB + chunk  # stopped at the limit, not after reading all 8 MiB


async def test_body_at_the_limit_is_served(client: httpx.AsyncClient) -> None:
    query = TYPENAME + " #" + "x" * 1000
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    assert response.json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize(
    ("variable", "attribute", "default", "too_small"),
    [
        ("GRAPHQL_MAX_BODY_BYTES", "graphql_max_body_bytes", MiB, "10"),
        ("GRAPHQL_MAX_DOCUMENT_BYTES", "graphql_max_document_bytes", 128 * 1024, "10"),
        ("GRAPHQL_MAX_TOKENS", "graphql_max_tokens", 5000, "99"),
        ("GRAPHQL_MAX_FIELDS", "graphql_max_fields", 200, "9"),
        ("GRAPHQL_CACHE_SIZE", "graphql_cache_size", 256, "-1"),
        ("GRAPHQL_CACHE_MAX_DOCUMENT_BYTES", "graphql_cache_max_document_bytes", 16384, "-1"),
    ],
)
def test_limit_settings_are_read_and_checked(
    variable: str, attribute: str, default: int, too_small: str
) -> None:
    assert getattr(Settings.from_env({}), attribute) == default
    assert getattr(Settings.from_env({variable: "4096"}), attribute) == 4096
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: too_small})


# -- 2. document bounds before parsing and validation ---------------------------------------------


async def test_twenty_thousand_copies_of_a_field_are_refused_by_tokens(
    client: httpx.AsyncClient,
) -> None:
    query = "{" + " opencostAvailability { available }" * 20_000 + "}"  # 700 KB
    [error] = (await gql(client, query))["errors"]
    assert error["extensions"]["code"] == "DOCUMENT_TOO_LARGE"
    # The same shape in 100 KB passes the size bound; the parser stops at the token bound.
    body = await gql(client, "{" + " a{b}" * 20_000 + "}")
    [error] = body["errors"]
    assert error["extensions"] == {
        "code": "DOCUMENT_TOO_LARGE",
        "limit": "GRAPHQL_MAX_TOKENS",
        "value": 5000,
    }
    assert "GRAPHQL_MAX_TOKENS=5000" in error["message"]
    assert body["data"] is None


async def test_conflicting_argument_fields_are_refused_before_validation(
    client: httpx.AsyncClient,
) -> None:
    query = "{" + " ".join(f"syncRuns(limit: {i}) {{ id }}" for i in range(2000)) + "}"
    [error] = (await gql(client, query))["errors"]
    assert error["extensions"]["code"] == "DOCUMENT_TOO_LARGE"
    assert error["extensions"]["limit"] == "GRAPHQL_MAX_TOKENS"


async def test_field_count_is_bounded_before_validation(client: httpx.AsyncClient) -> None:
    # 201 fields in 203 tokens: only the field bound stops this before the quadratic rule.
    body = await gql(client, "{" + " __typename" * 201 + "}")
    [error] = body["errors"]
    assert error["extensions"] == {
        "code": "DOCUMENT_TOO_LARGE",
        "limit": "GRAPHQL_MAX_FIELDS",
        "value": 200,
    }
    assert "GRAPHQL_MAX_FIELDS=200" in error["message"]
    # Fields in fragments and nested selections count too.
    nested = "{ ...F } fragment F on Query { teams { nodes {" + " slug" * 200 + " } } }"
    assert (await gql(client, nested))["errors"][0]["extensions"]["limit"] == "GRAPHQL_MAX_FIELDS"
    assert (await gql(client, "{" + " __typename" * 200 + "}"))["data"] == {"__typename": "Query"}


async def test_a_fifty_megabyte_comment_is_refused_unread(client: httpx.AsyncClient) -> None:
    query = "#" + "x" * (50 * MiB) + "\n" + TYPENAME
    response = await client.post("/graphql", json={"query": query})
    assert error_of(response, 413)["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_document_size_is_bounded_before_lexing(client: httpx.AsyncClient) -> None:
    # A 1 MB comment fits the body limit but would cost the pure-Python lexer 0.1 s.
    query = TYPENAME + " #" + "x" * (1000 * 1000)
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"] == {
        "code": "DOCUMENT_TOO_LARGE",
        "limit": "GRAPHQL_MAX_DOCUMENT_BYTES",
        "value": 128 * 1024,
    }
    assert "1000016 bytes" in error["message"]


async def test_many_comments_are_bounded_like_tokens(client: httpx.AsyncClient) -> None:
    query = "#\n" * 6000 + TYPENAME
    [error] = (await gql(client, query))["errors"]
    assert error["extensions"]["limit"] == "GRAPHQL_MAX_TOKENS"


async def test_get_query_is_bounded_by_size(settings: Settings, services: Services) -> None:
    # httpx refuses URLs over 64 KiB, so the bound is lowered to show it applies to GET.
    async with app_with(settings, services, graphql_max_document_bytes=4096) as (http, _):
        query = TYPENAME + " #" + "x" * 5000
        response = await http.get("/graphql", params={"query": query})
        assert response.status_code == 200
        [error] = response.json()["errors"]
        assert error["extensions"] == {
            "code": "DOCUMENT_TOO_LARGE",
            "limit": "GRAPHQL_MAX_DOCUMENT_BYTES",
            "value": 4096,
        }
        assert "5016 bytes" in error["message"]


async def test_graphiql_introspection_query_passes(client: httpx.AsyncClient) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    body = await gql(client, query)
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_syntax_errors_keep_their_message(client: httpx.AsyncClient) -> None:
    [error] = (await gql(client, "{ teams "))["errors"]
    assert error["message"].startswith("Syntax Error")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# -- 3. the parse/validation cache ----------------------------------------------------------------


async def test_cache_is_bounded_by_entries(
    small_cache: tuple[httpx.AsyncClient, DocumentGuard],
) -> None:
    http, guard = small_cache
    for i in range(10):
        query = f"query Q{i} {{ __typename }}"
        response = await http.post("/graphql", json={"query": query})
        assert response.json()["data"] == {"__typename": "Query"}
        assert query in guard
        assert len(guard) <= 4
    assert len(guard) == 4


async def test_large_documents_are_answered_but_not_cached(
    small_cache: tuple[httpx.AsyncClient, DocumentGuard],
) -> None:
    http, guard = small_cache
    large = TYPENAME + " #" + "x" * (16 * 1024)
    for _ in range(2):
        response = await http.post("/graphql", json={"query": large})
        assert response.json()["data"] == {"__typename": "Query"}
    assert large not in guard
    assert len(guard) == 0


async def test_cached_document_still_validates_and_limits_depth(
    small_cache: tuple[httpx.AsyncClient, DocumentGuard],
) -> None:
    http, _ = small_cache
    bad = "{ nope }"
    deep = (
        "{ teams { nodes {" + " components { nodes { team {" * 4 + " slug" + " } } }" * 4 + " } } }"
    )
    for _ in range(2):  # the second answer comes from the cache and must be the same
        body = (await http.post("/graphql", json={"query": bad})).json()
        assert body["errors"][0]["message"] == "Cannot query field 'nope' on type 'Query'."
        body = (await http.post("/graphql", json={"query": deep})).json()
        assert "exceeds maximum operation depth" in body["errors"][0]["message"]


# -- 4. several operations need an operationName ---------------------------------------------------

TWO = 'query A { __typename } mutation B { deleteTeam(id: "x") }'


async def test_several_operations_without_a_name_is_an_error(client: httpx.AsyncClient) -> None:
    body = await gql(client, TWO)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"] == "Must provide operation name if query contains multiple operations."
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    # Cached documents are checked too.
    assert (await gql(client, TWO))["errors"][0]["message"] == error["message"]


async def test_several_operations_with_a_name_run_that_one(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": TWO, "operationName": "A"})
    assert response.json()["data"] == {"__typename": "Query"}


# -- 5. the HTTP request's shape ------------------------------------------------------------------

DEEP_VARIABLES = b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 100_000
DEEP_VARIABLES += b"]" * 100_000 + b"}}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"42", "Expected a JSON object, got a number"),
        (b"[]", "Expected a JSON object, got an array"),
        (b'"x"', "Expected a JSON object, got a string"),
        (b"null", "Expected a JSON object, got null"),
        (b'{"query": "{ __typename }", "variables": 42}', "`variables` must be an object"),
        (b'{"query": "{ __typename }", "variables": []}', "`variables` must be an object"),
        (b'{"query": 42}', "`query` must be a string"),
        (b'{"query": "{ __typename }", "extensions": [1]}', "`extensions` must be an object"),
        (b'{"query": "{ __typename }", "operationName": 5}', "operationName must be a string"),
        (DEEP_VARIABLES, "JSON nests deeper than 1024 levels"),
        (b"[" * 500_000 + b"]" * 500_000, "JSON nests deeper than 1024 levels"),
        (b'{"query": ', "Unable to parse JSON"),
        (b"\xff\xfe", "Unable to parse JSON"),
    ],
    ids=[
        "number",
        "array",
        "string",
        "null",
        "variables-number",
        "variables-array",
        "query-number",
        "extensions-array",
        "operation-name-number",
        "variables-100k-deep",
        "body-500k-deep",
        "truncated",
        "not-utf8",
    ],
)
async def test_bad_json_bodies_are_400(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    error = error_of(response, 400)
    assert message in error["message"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": TYPENAME, "variables": "42"}, "Expected a JSON object, got a number"),
        ({"query": TYPENAME, "variables": "{"}, "Unable to parse JSON"),
        ({"query": TYPENAME, "variables": "[" * 5000}, "JSON nests deeper than 1024 levels"),
        ({"query": TYPENAME, "extensions": "[]"}, "Expected a JSON object, got an array"),
    ],
)
async def test_bad_get_params_are_400(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/graphql", params=params)
    error = error_of(response, 400)
    assert message in error["message"]


async def test_body_nested_a_million_deep_is_refused_by_size(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b"[" * 1_000_000 + b"]" * 1_000_000,
        headers={"content-type": "application/json"},
    )
    assert error_of(response, 413)["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_variables_nested_within_json_bounds_are_a_graphql_error(
    client: httpx.AsyncClient,
) -> None:
    nested = b"[" * 1000 + b'"x"' + b"]" * 1000
    content = b'{"query": "query($s: String!) { team(slug: $s) { id } }", "variables": {"s": '
    response = await client.post(
        "/graphql",
        content=content + nested + b"}}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_good_get_still_works(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": TYPENAME, "variables": "{}"})
    assert response.json()["data"] == {"__typename": "Query"}


# -- 6. an OpenCost failure keeps what the database knows ------------------------------------------


async def test_opencost_down_keeps_names_and_persisted_cost(
    client: httpx.AsyncClient, services: Services, fake: FakeOpenCost
) -> None:
    team = await make_team()
    for name in ("checkout", "payments-api", "search"):
        await make_records(await make_component(team, name), [1.0] * 30)
    await services.costs.refresh_rollups()
    fake.fail = "500"
    body = await gql(
        client,
        "{ components(first: 10) { nodes { name cost30d"
        " actualCost { sevenDay { totalCost } } } } }",
    )
    assert body["data"]["components"]["nodes"] == [
        {"name": name, "cost30d": 30.0, "actualCost": None}
        for name in ("checkout", "payments-api", "search")
    ]
    paths = sorted(tuple(e["path"]) for e in body["errors"])
    assert paths == [("components", "nodes", i, "actualCost") for i in range(3)]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"OPENCOST_UNAVAILABLE"}
