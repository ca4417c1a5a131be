"""The query cost rule (finops_gql/graphql/cost.py), table-driven against the real schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, get_introspection_query, parse, validate

from finops_gql.config import ConfigError, Settings
from finops_gql.graphql.cost import Cost, document_cost, static_caps, unbounded_lists
from finops_gql.graphql.schema import schema as strawberry_schema

SCHEMA: GraphQLSchema = strawberry_schema._schema
DEFAULT_LIMIT = 50_000

# (id, document, variables, expected cost)
CASES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("scalars are free", "{ opencostAvailability { available reason } }", None, 1),
    ("typename is free", "{ __typename }", None, 0),
    ("a page: connection + nodes", "{ components(first: 10) { nodes { name } } }", None, 11),
    ("pageInfo is one object", "{ components(first: 10) { pageInfo { hasNextPage } } }", None, 2),
    ("omitted first counts its default (50)", "{ components { nodes { id } } }", None, 51),
    (
        "nested pages multiply",
        "{ components(first: 100) { nodes { team { components(first: 10) { nodes { name } } } } } }",
        None,
        # 1 + 100 * (1 node + 1 team + 1 connection + 10 nodes)
        1 + 100 * 13,
    ),
    (
        "the issue's attack, on the paginated schema",
        "{ components(first: 100) { nodes { team { components { nodes"
        " { history(limit: 30) { totalCost day } } } } } } }",
        None,
        # 1 + 100 * (1 + 1 + 1 + 50 * (1 + 30))
        155_301,
    ),
    ("limit sizes a plain list", "{ topComponents(limit: 7) { totalCost } }", None, 7),
    ("limit default (10)", "{ topComponents { component { name } } }", None, 20),
    ("history default (30)", '{ component(id: "x") { history { day } } }', None, 31),
    (
        "summary components default (100)",
        '{ team(slug: "a") { costSummary { components { totalCost } } } }',
        None,
        102,
    ),
    (
        "aliases count each",
        "{ a: topComponents(limit: 5) { totalCost } b: topComponents(limit: 6) { totalCost } }",
        None,
        11,
    ),
    (
        "variables",
        "query($n: Int!) { components(first: $n) { nodes { team { name } } } }",
        {"n": 20},
        41,
    ),
    (
        "variable default in the operation",
        "query($n: Int = 3) { components(first: $n) { nodes { id } } }",
        None,
        4,
    ),
    (
        "omitted nullable variable falls back to the argument default",
        "query($n: Int) { topComponents(limit: $n) { totalCost } }",
        None,
        10,
    ),
    (
        "named fragment",
        "{ components(first: 4) { ...Page } } fragment Page on ComponentConnection"
        " { nodes { team { slug } } pageInfo { endCursor } }",
        None,
        1 + 4 * 2 + 1,
    ),
    (
        "inline fragment",
        "{ components(first: 4) { nodes { ... on Component { team { slug } } } } }",
        None,
        9,
    ),
    (
        "fragment spread twice counts twice",
        "{ a: components(first: 2) { ...N } b: components(first: 3) { ...N } }"
        " fragment N on ComponentConnection { nodes { team { id } } }",
        None,
        (1 + 2 * 2) + (1 + 3 * 2),
    ),
    (
        "@skip(if: true) is not counted",
        "query($s: Boolean!) { topComponents(limit: 9) @skip(if: $s) { totalCost } }",
        {"s": True},
        0,
    ),
    (
        "@include(if: false) is not counted",
        "{ topComponents(limit: 9) @include(if: false) { totalCost } }",
        None,
        0,
    ),
    ("negative sizes count as zero", "{ topComponents(limit: -5) { totalCost } }", None, 0),
    (
        "mutations are costed like queries",
        'mutation { setBudget(componentId: "x", budgetUsd: 1) { team { slug } } }',
        None,
        2,
    ),
    ("__type is one object", '{ __type(name: "Team") { name kind } }', None, 1),
]


@pytest.mark.parametrize(
    ("document", "variables", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_cost_table(document: str, variables: dict[str, Any] | None, expected: int) -> None:
    parsed = parse(document)
    assert validate(SCHEMA, parsed) == [], "the table holds valid documents only"
    assert document_cost(SCHEMA, parsed, variables) == expected


def test_operation_name_picks_the_operation() -> None:
    document = parse(
        "query Small { topComponents(limit: 1) { totalCost } }"
        " query Big { topComponents(limit: 100) { totalCost } }"
    )
    assert document_cost(SCHEMA, document, None, "Small") == 1
    assert document_cost(SCHEMA, document, None, "Big") == 100
    # No operation would run: execution itself answers with the error.
    assert document_cost(SCHEMA, document, None, None) == 0
    assert document_cost(SCHEMA, document, None, "Nope") == 0


def test_bad_variables_cost_nothing_because_nothing_runs() -> None:
    document = parse("query($n: Int!) { components(first: $n) { nodes { id } } }")
    assert document_cost(SCHEMA, document, {"n": "many"}) == 0
    assert document_cost(SCHEMA, document, {}) == 0


def test_fragments_spreading_each_other_are_costed_in_linear_time() -> None:
    # 40 levels of fragments each spreading the next twice: 2**40 fields if walked naively.
    levels = 40
    fragments = [
        f"fragment F{i} on ComponentConnection {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    ]
    fragments.append(f"fragment F{levels} on ComponentConnection {{ pageInfo {{ endCursor }} }}")
    document = parse("{ components(first: 1) { ...F0 } } " + " ".join(fragments))
    assert validate(SCHEMA, document) == []
    assert document_cost(SCHEMA, document) == 1 + 2**levels


def test_every_list_of_objects_has_a_bound() -> None:
    assert unbounded_lists(SCHEMA) == []


def test_introspection_lists_are_capped_by_the_schema() -> None:
    """The caps keep the schema check honest (no list without a bound), even though
    introspection itself costs a flat 1."""
    caps = static_caps(SCHEMA)
    assert caps[("__Schema", "types")] == len(SCHEMA.type_map)
    team_fields = len(SCHEMA.type_map["Team"].fields)  # type: ignore[attr-defined]
    assert caps[("__Type", "fields")] >= team_fields


@pytest.mark.parametrize(
    "options",
    [
        {},
        # GraphiQL 3.8 asks for everything it can show.
        {
            "descriptions": True,
            "specified_by_url": True,
            "directive_is_repeatable": True,
            "schema_description": True,
            "input_value_deprecation": True,
        },
    ],
    ids=["default", "graphiql"],
)
def test_introspection_costs_one_however_large_the_schema(options: dict[str, bool]) -> None:
    assert document_cost(SCHEMA, parse(get_introspection_query(**options))) == 1
    document = parse('{ a: __schema { types { name } } b: __type(name: "Team") { name } }')
    assert document_cost(SCHEMA, document) == 2
    # Beside ordinary fields, those are costed as usual.
    mixed = parse("{ __schema { types { name } } topComponents(limit: 5) { totalCost } }")
    assert document_cost(SCHEMA, mixed) == 1 + 5


def test_cost_reports_and_compares() -> None:
    assert Cost(10, 10).exceeded is False
    assert Cost(11, 10).exceeded is True
    assert Cost(3, 10).as_extension() == {"requested": 3, "limit": 10}


def test_readme_examples_are_valid_and_fit_the_limit() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("```graphql\n", 1)[1].split("```", 1)[0]
    documents = [d.strip() for d in re.split(r"^#.*$", block, flags=re.MULTILINE) if d.strip()]
    operations = [op for d in documents for op in re.split(r"\n(?=mutation )", d)]
    assert len(operations) == 6
    costs = []
    for document in operations:
        parsed = parse(document)
        assert validate(SCHEMA, parsed) == [], document
        costs.append(document_cost(SCHEMA, parsed))
    assert costs[:2] == [102, 244]  # quoted in the README's Limits section
    assert all(0 < c < DEFAULT_LIMIT for c in costs)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRAPHQL_MAX_COST": "0"}, "GRAPHQL_MAX_COST must be >= 1"),
        ({"GRAPHQL_MAX_COST": "lots"}, "GRAPHQL_MAX_COST must be an integer"),
        ({"GRAPHQL_TIMEOUT_SECONDS": "0"}, "GRAPHQL_TIMEOUT_SECONDS must be > 0"),
        ({"GRAPHQL_TIMEOUT_SECONDS": "-1"}, "GRAPHQL_TIMEOUT_SECONDS must be >= 0"),
    ],
)
def test_limit_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_limit_settings_are_read() -> None:
    assert Settings.from_env({}).graphql_max_cost == 50_000
    assert Settings.from_env({}).graphql_timeout_s == 10.0
    changed = Settings.from_env({"GRAPHQL_MAX_COST": "1000", "GRAPHQL_TIMEOUT_SECONDS": "2.5"})
    assert (changed.graphql_max_cost, changed.graphql_timeout_s) == (1000, 2.5)


def test_the_cost_is_remembered_per_document_variables_and_operation() -> None:
    """DocumentGuard.cost answers document_cost's figure, remembered with the parsed document per
    (operation name, variables), at most COSTS_PER_DOCUMENT of them; a document it did not parse
    (or one too large to keep) is costed afresh."""
    from finops_gql.graphql.documents import COSTS_PER_DOCUMENT, DocumentGuard

    guard = DocumentGuard(Settings())
    query = (
        "query A($n: Int!) { components(first: $n) { nodes { team { name } } } } "
        "query B { topComponents(limit: 5) { totalCost } }"
    )
    document = guard.parse(query)
    for n in (20, 30, 20):
        assert guard.cost(SCHEMA, query, document, {"n": n}, "A") == 1 + 2 * n
    assert guard.cost(SCHEMA, query, document, None, "B") == 5
    assert guard.cost(SCHEMA, query, document, {"n": "x"}, "A") == 0  # bad variables: nothing runs
    (entry,) = guard._cache.values()
    assert {key[1:] for key in entry.costs} == {
        ("A", b'{"n":20}'),
        ("A", b'{"n":30}'),
        ("B", b""),
        ("A", b'{"n":"x"}'),
    }
    for n in range(100):
        assert guard.cost(SCHEMA, query, document, {"n": n}, "A") == 1 + 2 * n
    assert len(entry.costs) == COSTS_PER_DOCUMENT
    assert (SCHEMA, "A", b'{"n":99}') in entry.costs
    assert (SCHEMA, "A", b'{"n":20}') not in entry.costs  # the oldest went first
    other = parse("{ components(first: 3) { nodes { name } } }")  # not the guard's own copy
    assert guard.cost(SCHEMA, query, other, None, None) == 4
    assert len(entry.costs) == COSTS_PER_DOCUMENT
