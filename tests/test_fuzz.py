"""Fuzzing at the edge: generated GraphQL documents and variables, and schemathesis over the REST
OpenAPI document. Whatever a client sends, the answer is a 2xx/4xx in the documented shape, never a
5xx, a traceback or INTERNAL_SERVER_ERROR.

The example counts are set for CI (a few hundred in all, seconds per database); raise them with
FUZZ_EXAMPLES=N for a longer local campaign. With CI set the examples are derandomized (the same
every run); locally each run explores new ones and Hypothesis replays past failures first.
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from typing import Any

import httpx
import hypothesis_graphql
import pytest
import schemathesis
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    is_input_type,
    parse,
    type_from_ast,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from finops_gql.config import Settings
from finops_gql.graphql.schema import schema as gateway_schema
from finops_gql.rest.openapi import openapi_document
from tests.conftest import make_component, make_records, make_team, token

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # CI replays the same examples every run (a regression net that cannot flake); a local run
    # explores new ones.
    derandomize=bool(os.environ.get("CI")),
    # One app and one database serve every example of a test: state carried between examples
    # (rows created by fuzzed mutations) is part of what is being fuzzed.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
GRAPHQL_SCHEMA: GraphQLSchema = gateway_schema._schema
# Instants as clients write them (with and without an offset, near and far), and any text.
DATETIMES = st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat())
SCALARS = {"DateTime": (DATETIMES | st.text(max_size=40)).map(nodes.String)}

# JSON any client can send: text with NUL, lone surrogates (written as \ud800 escapes), huge and
# tiny numbers, nesting.
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec=None), max_size=300)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _body(payload: object) -> bytes:
    # ensure_ascii escapes lone surrogates as \udXXX, which is valid JSON text.
    return json.dumps(payload, ensure_ascii=True, allow_nan=False).encode()


def _assert_graphql_answer(response: httpx.Response, document: str) -> None:
    assert response.status_code < 500, (response.status_code, document, response.text[:2000])
    assert b"Traceback" not in response.content
    body = response.json()
    assert isinstance(body, dict), body
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code != "INTERNAL_SERVER_ERROR", (document, error)
        assert code, (document, error)


@pytest.fixture
async def admin(client: httpx.AsyncClient, settings: Settings) -> httpx.AsyncClient:
    """The app with some catalog and cost rows in it, and an admin token (mutations too)."""
    team = await make_team("payments")
    other = await make_team("search-team")
    checkout = await make_component(team, "checkout", budget_usd=10)
    await make_records(checkout, [1.5, 2.25, 3.0])
    await make_component(other, "search")
    client.headers["Authorization"] = f"Bearer {token(settings, 'admin')}"
    client.headers["Content-Type"] = "application/json"
    return client


@FUZZ
@given(document=hypothesis_graphql.queries(GRAPHQL_SCHEMA, custom_scalars=SCALARS))
async def test_generated_queries_never_fail_internally(
    admin: httpx.AsyncClient, document: str
) -> None:
    response = await admin.post("/graphql", content=_body({"query": document}))
    _assert_graphql_answer(response, document)


@FUZZ
@given(document=hypothesis_graphql.mutations(GRAPHQL_SCHEMA, custom_scalars=SCALARS))
async def test_generated_mutations_never_fail_internally(
    admin: httpx.AsyncClient, document: str
) -> None:
    response = await admin.post("/graphql", content=_body({"query": document}))
    _assert_graphql_answer(response, document)


@FUZZ
@given(
    document=hypothesis_graphql.queries(
        GRAPHQL_SCHEMA, mode=hypothesis_graphql.Mode.NEGATIVE, custom_scalars=SCALARS
    )
    | hypothesis_graphql.mutations(
        GRAPHQL_SCHEMA, mode=hypothesis_graphql.Mode.NEGATIVE, custom_scalars=SCALARS
    )
)
async def test_invalid_documents_are_client_errors(admin: httpx.AsyncClient, document: str) -> None:
    """Documents with one schema violation each: a validation error, never an internal one."""
    response = await admin.post("/graphql", content=_body({"query": document}))
    _assert_graphql_answer(response, document)


def _operations_with_variables() -> list[str]:
    """One document per root field that takes arguments, every argument bound to a variable, so
    the variables' JSON (not the document's literals) carries the fuzzed values."""
    documents = []
    for kind, root in (
        ("query", GRAPHQL_SCHEMA.query_type),
        ("mutation", GRAPHQL_SCHEMA.mutation_type),
    ):
        assert root is not None
        for name, field in root.fields.items():
            if not field.args:
                continue
            params = ", ".join(f"${arg}: {field.args[arg].type}" for arg in field.args)
            args = ", ".join(f"{arg}: ${arg}" for arg in field.args)
            documents.append(f"{kind} F({params}) {{ {name}({args}) {{ __typename }} }}")
    return documents


VARIABLE_DOCUMENTS = _operations_with_variables()


HOSTILE_TEXT = (
    st.text(alphabet=st.characters(codec=None), max_size=120)
    | st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x" * 101, "x" * 254, "x" * 5000])
    | st.text(alphabet="abc-", min_size=1, max_size=12)
)
HOSTILE_INT = st.integers(min_value=-(2**40), max_value=2**40) | st.sampled_from([0, 1, 100, 101])
HOSTILE_FLOAT = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, -1.0, 1e308, 1e-308, 12.5]
)


def _value_for(type_: GraphQLInputType) -> st.SearchStrategy[Any]:
    """Values that fit the variable's declared type in shape, with hostile contents; now and
    then anything at all, so the shape checks are fuzzed too."""
    nullable = not isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    strategy: st.SearchStrategy[Any]
    if isinstance(inner, GraphQLList):
        strategy = st.lists(_value_for(inner.of_type), max_size=3)
    elif isinstance(inner, GraphQLInputObjectType):
        strategy = st.fixed_dictionaries(
            {
                name: _value_for(field.type)
                for name, field in inner.fields.items()
                if isinstance(field.type, GraphQLNonNull)
            },
            optional={
                name: _value_for(field.type)
                for name, field in inner.fields.items()
                if not isinstance(field.type, GraphQLNonNull)
            },
        )
    elif isinstance(inner, GraphQLEnumType):
        strategy = st.sampled_from(list(inner.values)) | HOSTILE_TEXT
    elif isinstance(inner, GraphQLScalarType) and inner.name == "Int":
        strategy = HOSTILE_INT
    elif isinstance(inner, GraphQLScalarType) and inner.name == "Float":
        strategy = HOSTILE_FLOAT | HOSTILE_INT
    elif isinstance(inner, GraphQLScalarType) and inner.name == "Boolean":
        strategy = st.booleans()
    else:  # String, ID and custom scalars (dates): text, which custom scalars must refuse cleanly
        strategy = HOSTILE_TEXT | st.dates().map(str)
    if nullable:
        strategy = st.none() | strategy
    return strategy | JSON_VALUES if inner is type_ else strategy


def _variables_for(document: str) -> st.SearchStrategy[dict[str, Any]]:
    operation = parse(document).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    variables = {}
    for definition in operation.variable_definitions:
        input_type = type_from_ast(GRAPHQL_SCHEMA, definition.type)
        assert is_input_type(input_type)
        variables[definition.variable.name.value] = _value_for(input_type)
    return st.fixed_dictionaries(variables) | st.dictionaries(st.text(max_size=8), JSON_VALUES)


@settings(FUZZ, max_examples=EXAMPLES * 3)  # the widest input space: most examples here
@given(
    data=st.data(),
    document=st.sampled_from(VARIABLE_DOCUMENTS),
)
async def test_fuzzed_variables_never_fail_internally(
    admin: httpx.AsyncClient, data: Any, document: str
) -> None:
    variables = data.draw(_variables_for(document), label="variables")
    body = _body({"query": document, "variables": variables})
    response = await admin.post("/graphql", content=body)
    _assert_graphql_answer(response, document + " " + body.decode()[:500])


@FUZZ
@given(payload=JSON_VALUES | st.binary(max_size=200))
async def test_fuzzed_request_bodies_are_client_errors(
    admin: httpx.AsyncClient, payload: object
) -> None:
    """Any JSON body at all, and bytes that are not JSON: a 4xx or a GraphQL answer."""
    content = payload if isinstance(payload, bytes) else _body(payload)
    response = await admin.post("/graphql", content=content)
    assert response.status_code < 500, (content[:300], response.text[:500])
    assert b"Traceback" not in response.content


REST_SCHEMA = schemathesis.openapi.from_dict(openapi_document())
REST_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


REST_OPERATIONS = [result.ok() for result in REST_SCHEMA.get_all_operations()]
REST_CASES = st.one_of(
    *(op.as_strategy() for op in REST_OPERATIONS),
    *(
        op.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)
        for op in REST_OPERATIONS
    ),
)


@FUZZ
@given(case=REST_CASES)
async def test_rest_routes_conform_under_schemathesis(admin: httpx.AsyncClient, case: Any) -> None:
    """Schemathesis' generated requests (valid and invalid) against every documented route: no
    5xx, and every answer's status, content type and body are the ones the OpenAPI document
    declares."""
    kwargs = case.as_transport_kwargs(base_url="http://gateway")
    response = await admin.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers={
            k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"
        },
    )
    case.validate_response(response, checks=REST_CHECKS)


async def test_missing_required_variable_is_bad_user_input(admin: httpx.AsyncClient) -> None:
    """Found by the variables fuzzer: graphql-core wraps coercion errors in a GraphQLError,
    which used to be reported as INTERNAL_SERVER_ERROR."""
    body = _body({"query": "query F($id: ID!) { component(id: $id) { id } }", "variables": {}})
    response = await admin.post("/graphql", content=body)
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$id" in error["message"]
