"""List fields answered with the JSON the database wrote (catalog/rowjson.py).

`components(...) { nodes { name budgetUsd cost30d team { slug } } }`, a dashboard's table, asks
only for columns. For such a selection the resolver has the database write each row's JSON and
hands the executor the page's text (`prerendered`), which it places in the answer as it is: no
model, no GraphQL object, no field execution per row. The text is what the ordinary path writes
(tests/test_rows.py compares the two byte for byte); any other selection (a field with
arguments, a resolver that loads something, `system`, `history`, ...) takes the ordinary path,
as does a page holding a value the database cannot write exactly.

The selection is collected by graphql-core's own field collection with the operation's executor,
so aliases, fragments, inline fragments and @skip/@include are exactly the executor's. A
selection without directives collects the same whatever the variables: its plan is kept per
document node (documents are parsed once, graphql/documents.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLResolveInfo,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FieldDetailsList,
    GroupedFieldSet,
    collect_subfields,
)

from finops_gql.catalog import rowjson

# GraphQL field -> rowjson column, for each field whose answer is exactly the column's JSON
# (types.Component.of and Team.of: cost30d is money(cost_30d), opencostKey the selector key).
COMPONENT_COLUMNS = {
    "id": "id",
    "name": "name",
    "budgetUsd": "budget_usd",
    "cost30d": "cost_30d",
    "opencostAggregate": "opencost_aggregate",
    "opencostKey": "opencost_key",
    "overBudget": "over_budget",
}
TEAM_COLUMNS = {"id": "id", "name": "name", "slug": "slug", "cost30d": "cost_30d"}
# A connection's other fields, which the page itself answers.
_CONNECTION_FIELDS = frozenset({"pageInfo", "totalCount", "__typename"})


def prerendered(rows: str) -> Any:
    """A list field's value already written as JSON: the executor places it as it is
    (execution.FastExecutor.complete_list_value)."""
    return orjson.Fragment(rows)


def _subfields(
    executor: Any, object_type: GraphQLObjectType, details: FieldDetailsList
) -> GroupedFieldSet | None:
    """The executor's own collection of `details`' subfields (fragments, aliases,
    @skip/@include with this operation's variables)."""
    collected = collect_subfields(
        executor.schema,
        executor.fragments,
        executor.variable_values,
        executor.operation,
        object_type,
        details,
        executor.hide_suggestions,
    )
    if collected.new_defer_usages:
        return None
    return collected.grouped_field_set


def _object_type(field_type: Any) -> GraphQLObjectType | None:
    named = get_named_type(field_type)
    return named if isinstance(named, GraphQLObjectType) else None


def _shape(
    executor: Any,
    object_type: GraphQLObjectType,
    details: FieldDetailsList,
    columns: dict[str, str],
    nested: bool,
) -> rowjson.Shape | None:
    grouped = _subfields(executor, object_type, details)
    if not grouped:
        return None
    shape: list[tuple[str, rowjson.Value]] = []
    for response_name, field_details in grouped.items():
        name = field_details[0].node.name.value
        value: rowjson.Value
        if name == "__typename":
            value = rowjson.Constant(object_type.name)
        elif name in columns:
            value = columns[name]
        elif name == "team" and nested:
            team_type = _object_type(object_type.fields[name].type)
            if team_type is None:
                return None
            team = _shape(executor, team_type, field_details, TEAM_COLUMNS, False)
            if team is None:
                return None
            value = rowjson.Team(team)
        else:
            return None
        shape.append((response_name, value))
    return tuple(shape)


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """What a component connection's selection asks of its resolver."""

    # The nodes' shape when the database can write them, else None.
    shape: rowjson.Shape | None
    # Whether totalCount is asked (types.EarlyCount starts counting beside the page).
    asks_total: bool


def _has_directives(
    selection_set: SelectionSetNode | None, fragments: dict[str, Any], seen: set[str]
) -> bool:
    """Whether a selection (fragments it spreads included) carries a directive: then what it
    collects depends on the variables (@skip/@include), not on the document alone."""
    if selection_set is None:
        return False
    for selection in selection_set.selections:
        if selection.directives:
            return True
        if isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen or name not in fragments:
                continue
            seen.add(name)
            definition = fragments[name].definition
            if definition.directives or _has_directives(definition.selection_set, fragments, seen):
                return True
        elif _has_directives(getattr(selection, "selection_set", None), fragments, seen):
            return True
    return False


def _plan(executor: Any, info: GraphQLResolveInfo[Any]) -> ConnectionPlan:
    connection = get_nullable_type(info.return_type)
    if not isinstance(connection, GraphQLObjectType):
        return ConnectionPlan(None, False)
    details = [FieldDetails(node, None) for node in info.field_nodes]
    grouped = _subfields(executor, connection, details)
    if grouped is None:
        return ConnectionPlan(None, False)
    nodes: FieldDetailsList | None = None
    writable, asks_total = True, False
    for field_details in grouped.values():
        name = field_details[0].node.name.value
        asks_total = asks_total or name == "totalCount"
        if name == "nodes" and nodes is None:
            nodes = field_details
        elif name not in _CONNECTION_FIELDS:
            writable = False
    component = _object_type(connection.fields["nodes"].type)
    if not writable or nodes is None or component is None:
        return ConnectionPlan(None, asks_total)
    return ConnectionPlan(_shape(executor, component, nodes, COMPONENT_COLUMNS, True), asks_total)


# Plans by the connection field's node, for selections without directives (the same document
# node, the same plan, whatever the variables); the node is kept with its plan so its id is not
# reused meanwhile. Cleared past _PLANS_MAX (documents come and go with the parse cache).
_PLANS: dict[int, tuple[FieldNode, ConnectionPlan]] = {}
_PLANS_MAX = 512


def connection_plan(info: Any) -> ConnectionPlan | None:
    """The plan of a component connection field (`components`), collected the executor's way;
    None when this operation's executor does not place prerendered rows (Context.executor)."""
    executor = info.context.executor()
    if executor is None:
        return None
    raw: GraphQLResolveInfo[Any] = info._raw_info
    nodes = raw.field_nodes
    if len(nodes) == 1:
        found = _PLANS.get(id(nodes[0]))
        if found is not None and found[0] is nodes[0]:
            return found[1]
    plan = _plan(executor, raw)
    if len(nodes) == 1 and not _has_directives(nodes[0].selection_set, executor.fragments, set()):
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[id(nodes[0])] = (nodes[0], plan)
    return plan
