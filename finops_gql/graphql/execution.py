"""The GraphQL executor, with a fast path for plain scalar fields.

A page of 50 components resolves about 300 fields, and most of them are plain attributes
(`name`, `budgetUsd`, `cost30d`, a team's `slug`): Strawberry resolves those with no resolver
function, no arguments and no field extension (a "basic" field). graphql-core still builds a
resolve-info object, a field-node list and a path for each, calls Strawberry's wrapper, and
completes the value through the generic `complete_value` recursion: about 6 µs a field, most of
the page's execution time.

`FastExecutor.execute_fields` reads such a field directly and serializes it with its scalar's
own `serialize`, and leaves every other field to graphql-core unchanged. The answer is exactly
graphql-core's: the same `coerce_output_value`, the same "Cannot return null for non-nullable
field" error located at the same path (the path is built only on that error), the same
propagation to the nearest nullable parent; aliases and fragments are grouped by graphql-core's
own field collection before this runs, and @skip/@include with it. A resolver middleware (a
Strawberry extension with a per-field `resolve` hook) turns the fast path off, since it must see
every field.

`lean_resolvers` does the same for a plain synchronous method resolver that takes only `self` and
`info` (`Component.team`: one call per row): Strawberry's generic wrapper converts arguments
(none), chains field extensions (none) and re-reads the resolver's signature on every call; the
lean one calls the method with the same Info object directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Undefined,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A basic scalar field: its resolver needs neither info nor arguments."""

    resolve: Any
    return_type: GraphQLOutputType
    leaf_type: GraphQLLeafType
    non_null: bool
    null_message: str


def _plan(parent_type: GraphQLObjectType, name: str, field: GraphQLField | None) -> _Leaf | None:
    resolve = field.resolve if field is not None else None
    if field is None or field.args or not getattr(resolve, "_is_default", False):
        return None
    if getattr(resolve, "__name__", "") != "_get_basic_result":  # Strawberry's no-info getter
        return None
    nullable = get_nullable_type(field.type)
    if not is_leaf_type(nullable):
        return None
    return _Leaf(
        resolve,
        field.type,
        nullable,
        is_non_null_type(field.type),
        f"Cannot return null for non-nullable field {parent_type.name}.{name}.",
    )


# Per schema object: (parent type name, field name) -> plan (None: graphql-core's own path).
_PLANS: dict[int, tuple[GraphQLSchema, dict[tuple[str, str], _Leaf | None]]] = {}


def _plans(schema: GraphQLSchema) -> dict[tuple[str, str], _Leaf | None]:
    entry = _PLANS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _PLANS[id(schema)] = (schema, {})
    return entry[1]


def _complete(leaf: _Leaf, value: Any) -> Any:
    """graphql-core's complete_value for a leaf (its errors are the caller's to locate)."""
    if isinstance(value, Exception):
        raise value
    if value is None or value is Undefined:
        if leaf.non_null:
            raise TypeError(leaf.null_message)
        return None
    return FastExecutor.complete_leaf_value(leaf.leaf_type, value)


class FastExecutor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._fast = manager is None or getattr(manager, "_middleware_resolvers", None) is None
        self._plans = _plans(self.schema)

    def _leaf(self, parent_type: GraphQLObjectType, details: FieldDetailsList) -> _Leaf | None:
        name = details[0].node.name.value
        key = (parent_type.name, name)
        try:
            return self._plans[key]
        except KeyError:
            plan = self._plans[key] = _plan(parent_type, name, parent_type.fields.get(name))
            return plan

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        """graphql-core's execute_fields, with basic scalar fields read in place."""
        if not self._fast:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, details in grouped_field_set.items():
                leaf = self._leaf(parent_type, details)
                if leaf is not None:
                    try:
                        value = leaf.resolve(source_value, None)
                        # An awaitable attribute takes graphql-core's own path below.
                        deferred = is_awaitable(value)
                        if not deferred:
                            results[response_name] = _complete(leaf, value)
                    except Exception as raw_error:  # as execute_field handles it
                        deferred = False
                        field_path = Path(path, response_name, parent_type.name)
                        self.handle_field_error(raw_error, leaf.return_type, details, field_path)
                        results[response_name] = None
                    if not deferred:
                        continue
                field_path = Path(path, response_name, parent_type.name)
                result = self.execute_field(
                    parent_type, source_value, details, field_path, position_context
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()


def _lean(field: StrawberryField, info_class: Any) -> Any | None:
    """A direct caller for `field`'s resolver, or None when Strawberry's wrapper is needed."""
    resolver = field.base_resolver
    if (
        resolver is None
        or field.is_async
        or field.arguments
        or field.extensions
        or resolver.self_parameter is None
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
        or resolver.info_parameter is None
        or not callable(resolver.wrapped_func)
    ):
        return None
    method, info_name = resolver.wrapped_func, resolver.info_parameter.name

    def resolve(source: Any, info: Any) -> Any:
        return method(source, **{info_name: info_class(_raw_info=info, _field=field)})

    return resolve


def lean_resolvers(schema: Any) -> list[str]:
    """Give plain info-only method resolvers a direct caller (see the module's doc). Not with
    exception handlers, which Strawberry's wrapper applies. Returns the fields changed."""
    converter = schema.schema_converter
    if getattr(converter, "_exception_handler_specs", None):
        return []
    changed = []
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field_def in type_.fields.items():
            field = field_def.extensions.get("strawberry-definition")
            if isinstance(field, StrawberryField) and field_def.resolve is not None:
                lean = _lean(field, schema.config.info_class)
                if lean is not None:
                    field_def.resolve = lean
                    changed.append(f"{type_.name}.{name}")
    return changed
