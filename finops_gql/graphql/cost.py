"""Query cost, computed from the document and variables before any resolver runs.

The rule (GitHub's node limit): every field that returns an object counts one per object it may
return, and the number it may return is the product of the list sizes along its path. A list's
size is its `first` / `limit` argument (as given, from a variable, or the argument's default); a
connection's `nodes` take the `first` of the field that returned the connection. Introspection
(`__schema`, `__type`) costs 1: its size is the schema's, whatever the client asks, and GraphiQL's
introspection query must pass however large the schema grows (aliases and GRAPHQL_MAX_FIELDS bound
how often one document repeats it).
Scalars, enums and `__typename` are free: they cost no resolver call and no row.

    {components(first: 100) {nodes {team {name}}}}
        components 1 + nodes 100 + team 100 = 201

Fragments (named and inline) and aliases are walked like the fields they stand for (a field
asked for twice counts twice: a bound, not an exact figure); @skip / @include are honoured.
Each selection set is costed once per (type, page size) and scaled, so the walk is linear in the
document's size even for fragments that spread each other many times.

Pure: no I/O, no Strawberry; the extension in limits.py calls `operation_cost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_enum_type,
    is_input_object_type,
    is_interface_type,
    is_leaf_type,
    is_list_type,
    is_object_type,
    is_union_type,
)
from graphql.execution.values import (
    VariableValues,
    get_argument_values,
    get_directive_values,
    get_variable_values,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

from finops_gql.config import MAX_SOURCES
from finops_gql.costs.explorer import MAX_RANGE_DAYS
from finops_gql.costs.forecast import MAX_DAYS as MAX_FORECAST_DAYS

# Arguments that bound how many items a field returns.
SIZE_ARGUMENTS = ("first", "limit")
# List fields that take their size from the connection field above them (`first`).
CONNECTION_LISTS = frozenset({"nodes", "edges"})


# JavaScript's Number.MAX_SAFE_INTEGER: a reported cost above it is written as this.
MAX_REPORTED = 2**53 - 1


class CostError(ValueError):
    """The schema has a list field with no known bound: a programming error, found by tests."""


@dataclass(frozen=True)
class Cost:
    """What one operation may cost; stored on the request's context for reporting (and budgets)."""

    requested: int
    limit: int

    @property
    def exceeded(self) -> bool:
        return self.requested > self.limit

    def as_extension(self) -> dict[str, int]:
        # Nested pages multiply (Team.children under Team.children ...): the product can pass
        # what JSON writers and JavaScript hold exactly. Past the limit, "at least" is the answer.
        return {"requested": min(self.requested, MAX_REPORTED), "limit": self.limit}


INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


@cache
def static_caps(schema: GraphQLSchema) -> Mapping[tuple[str, str], int]:
    """Bounds of the introspection lists, taken from the schema (it never changes at runtime)."""
    types = list(schema.type_map.values())
    objects = [t for t in types if is_object_type(t) or is_interface_type(t)]
    fields = [f for t in objects for f in t.fields.values()]
    args = [len(f.args) for f in fields] + [len(d.args) for d in schema.directives]
    most_fields = max((len(t.fields) for t in objects), default=0)
    inputs = [len(t.fields) for t in types if is_input_object_type(t)]
    enums = [len(t.values) for t in types if is_enum_type(t)]
    implementations = [len(t.interfaces) for t in objects]
    possible = [len(schema.get_possible_types(t)) for t in types if is_union_type(t)] + [
        len(schema.get_possible_types(t)) for t in types if is_interface_type(t)
    ]
    return {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(schema.directives),
        ("__Type", "fields"): most_fields,
        ("__Type", "inputFields"): max(inputs, default=0),
        ("__Type", "enumValues"): max(enums, default=0),
        ("__Type", "interfaces"): max(implementations, default=0),
        ("__Type", "possibleTypes"): max(possible, default=0),
        ("__Field", "args"): max(args, default=0),
        ("__Directive", "args"): max(args, default=0),
        # A series has one point per bucket, and a range is at most MAX_RANGE_DAYS days.
        ("CostSeries", "points"): MAX_RANGE_DAYS,
        ("PlatformCostSeries", "points"): MAX_RANGE_DAYS,
        # A forecast has one point per day asked for, at most forecast.MAX_DAYS.
        ("Forecast", "points"): MAX_FORECAST_DAYS,
        # One per OpenCost source, at most config.MAX_SOURCES.
        ("Availability", "sources"): MAX_SOURCES,
    }


def _is_list(field: GraphQLField) -> bool:
    return is_list_type(get_nullable_type(field.type))


def _size_argument(field: GraphQLField) -> str | None:
    return next((name for name in SIZE_ARGUMENTS if name in field.args), None)


def unbounded_lists(schema: GraphQLSchema) -> list[str]:
    """Object-returning list fields whose size the cost rule cannot know (must be empty)."""
    caps = static_caps(schema)
    connections = set()
    for type_ in schema.type_map.values():
        if is_object_type(type_):
            for field in type_.fields.values():
                if _size_argument(field) is not None and not _is_list(field):
                    connections.add(get_named_type(field.type).name)
    missing = []
    for type_ in schema.type_map.values():
        if not is_object_type(type_):
            continue
        for name, field in type_.fields.items():
            if not _is_list(field) or is_leaf_type(get_named_type(field.type)):
                continue
            if _size_argument(field) is not None or (type_.name, name) in caps:
                continue
            if name in CONNECTION_LISTS and type_.name in connections:
                # Every field returning this connection must then carry `first`.
                continue
            missing.append(f"{type_.name}.{name}")
    return missing


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues | None,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.caps = static_caps(schema)
        # (id of a selection set, type name, page size) -> its cost at multiplier 1
        self.memo: dict[tuple[int, str, int | None], int] = {}
        self.active: set[int] = set()  # guards against fragment cycles (validation refuses them)

    def _included(self, node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
        if not node.directives:
            return True
        try:
            skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
            include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        except GraphQLError:
            return True  # execution refuses it too; counting it is the safe side
        if skip is not None and skip.get("if") is True:
            return False
        return not (include is not None and include.get("if") is False)

    def selection_set(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, page: int | None
    ) -> int:
        if selection_set is None:
            return 0
        key = (id(selection_set), parent.name, page)
        found = self.memo.get(key)
        if found is not None:
            return found
        if key[0] in self.active:
            return 0
        self.active.add(key[0])
        total = 0
        for selection in selection_set.selections:
            if not self._included(selection):  # type: ignore[arg-type]
                continue
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                on = selection.type_condition
                target = self.schema.get_type(on.name.value) if on else parent
                total += self.selection_set(selection.selection_set, target or parent, page)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.selection_set(fragment.selection_set, target or parent, page)
        self.active.discard(key[0])
        self.memo[key] = total
        return total

    def _field_def(self, parent: GraphQLNamedType, name: str) -> GraphQLField | None:
        if parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        fields = getattr(parent, "fields", None)
        return fields.get(name) if fields else None

    def _size(self, field: GraphQLField, node: FieldNode) -> int | None:
        argument = _size_argument(field)
        if argument is None:
            return None
        try:
            value = get_argument_values(field, node, self.variables).get(argument)
        except GraphQLError:
            return 0  # execution refuses this field before resolving it
        if not isinstance(value, int):
            return 0  # null or missing: the resolver is never reached with a list to fill
        return max(value, 0)

    def field(self, node: FieldNode, parent: GraphQLNamedType, page: int | None) -> int:
        if parent is self.schema.query_type and node.name.value in INTROSPECTION_ROOTS:
            # Bounded by the schema, not by the client: every tool's introspection query must
            # pass however large the schema grows. Aliases and the field bound limit repeats.
            return 1
        field = self._field_def(parent, node.name.value)
        if field is None:  # __typename, or a field validation would have refused
            return 0
        named = get_named_type(field.type)
        if is_leaf_type(named):
            return 0
        size = self._size(field, node)
        if _is_list(field):
            if size is not None:
                bound = size
            elif node.name.value in CONNECTION_LISTS and page is not None:
                bound = page
            else:
                cap = self.caps.get((parent.name, node.name.value))
                if cap is None:
                    raise CostError(f"{parent.name}.{node.name.value} is a list with no bound")
                bound = cap
            child_page = None
        else:
            bound = 1
            child_page = size  # a connection: its nodes take this size
        return bound * (1 + self.selection_set(node.selection_set, named, child_page))


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


def document_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    """The cost of the operation that would run (0 when none would: execution reports why)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {})
    )
    if isinstance(coerced, list):
        return 0  # bad variables: execution answers with the errors before any resolver runs
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    assert isinstance(root, GraphQLObjectType)
    return _Walker(schema, fragments, coerced).selection_set(operation.selection_set, root, None)
