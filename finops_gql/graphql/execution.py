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

A selection made only of such fields and of held objects (PRELOADED) whose own selections are
too (a page's rows: `name budgetUsd cost30d team { slug }`) is run by a projector: a function
generated once per selection that builds the object's dict, with no Path and no per-field call
into the executor. It answers only when every value completes without an error; otherwise the
object runs the general way above, which makes graphql-core's error at its path (reading plain
attributes twice is harmless).

`lean_resolvers` does the same for a plain synchronous method resolver that takes only `self` and
`info` (`Component.team`: one call per row): Strawberry's generic wrapper converts arguments
(none), chains field extensions (none) and re-reads the resolver's signature on every call; the
lean one calls the method with the same Info object directly.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from math import isfinite
from operator import attrgetter
from typing import Any, NoReturn, cast

from graphql import (
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLLeafType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLString,
    Undefined,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from orjson import Fragment
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A basic scalar field: its resolver needs neither info nor arguments."""

    resolve: Any
    return_type: GraphQLOutputType
    leaf_type: GraphQLLeafType
    non_null: bool
    null_message: str
    # The attribute read Strawberry's basic resolver does (its default resolver is getattr).
    get: Any
    # A value of exactly this type is its own coerced output (str for String and ID, a finite
    # float for Float, ...): no coercion call. Any other value takes coerce_output_value.
    exact: type | None


# A resolver field's Strawberry metadata key naming a source attribute that, when not None, is
# the value the resolver returns (the resolver returns it first thing): the executor reads it
# without building resolve info. Component.team: a page's statement reads its teams.
PRELOADED = "finops_gql.preloaded"


@dataclass(frozen=True, slots=True)
class _Preloaded:
    """An object field whose value the source may already hold (see PRELOADED)."""

    attribute: str
    return_type: GraphQLOutputType
    object_type: GraphQLObjectType


# Values graphql-core's built-in scalars give back unchanged (an int is not a Float's output:
# coerce_output_value turns 3 into 3.0; bool is not an Int's).
_EXACT: dict[GraphQLLeafType, type] = {
    GraphQLString: str,
    GraphQLID: str,
    GraphQLFloat: float,
    GraphQLBoolean: bool,
}


_Plan = _Leaf | _Preloaded | None


def _call_basic(resolve: Any, source: Any) -> Any:
    return resolve(source, None)


def _preloaded(field: GraphQLField) -> _Preloaded | None:
    definition = field.extensions.get("strawberry-definition")
    attribute = (
        definition.metadata.get(PRELOADED) if isinstance(definition, StrawberryField) else None
    )
    object_type = get_nullable_type(field.type)
    if (
        attribute is None
        or field.args
        or not isinstance(object_type, GraphQLObjectType)
        or object_type.is_type_of is not None
    ):
        return None
    return _Preloaded(attribute, field.type, object_type)


def _plan(parent_type: GraphQLObjectType, name: str, field: GraphQLField | None) -> _Plan:
    if field is None:
        return None
    resolve = field.resolve
    if field.args or not getattr(resolve, "_is_default", False):
        return _preloaded(field)
    if getattr(resolve, "__name__", "") != "_get_basic_result":  # Strawberry's no-info getter
        return None
    nullable = get_nullable_type(field.type)
    if not is_leaf_type(nullable):
        return None
    definition = field.extensions.get("strawberry-definition")
    get: Any = partial(_call_basic, resolve)
    if (
        isinstance(definition, StrawberryField)
        and definition.base_resolver is None
        and definition.default_resolver is getattr
    ):
        get = attrgetter(definition.python_name)  # get_result's default_resolver(source, name)
    return _Leaf(
        resolve,
        field.type,
        nullable,
        is_non_null_type(field.type),
        f"Cannot return null for non-nullable field {parent_type.name}.{name}.",
        get,
        _EXACT.get(nullable),
    )


# Per schema object: (parent type name, field name) -> plan (None: graphql-core's own path).
_PLANS: dict[int, tuple[GraphQLSchema, dict[tuple[str, str], _Plan]]] = {}


def _plans(schema: GraphQLSchema) -> dict[tuple[str, str], _Plan]:
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


# One selection's steps: (response name, its field details, the field's plan).
_Steps = tuple[tuple[str, FieldDetailsList, _Plan], ...]


class _NotProjected(Exception):
    """Raised by a projector for an object the general path must run."""


_NOT_PROJECTED = _NotProjected()

# A selection's projector: the object's answer dict, or _NotProjected.
Projector = Callable[[Any], dict[str, Any]]
# One step of a projector: (response name, a basic field, or the attribute holding an object and
# that object's projector).
_Step = tuple[str, "_Leaf | None", str, "Projector | None"]


def _completed(leaf: _Leaf, is_awaitable: Any, value: Any) -> Any:
    """A value that is not its own coerced output: null where the field is nullable, else the
    scalar's completion; whatever needs graphql-core's path (a null for a non-null field, an
    exception, an awaitable, a value the scalar refuses) raises."""
    if value is None and not leaf.non_null:
        return None
    if value is None or value is Undefined or isinstance(value, Exception) or is_awaitable(value):
        raise _NOT_PROJECTED
    return FastExecutor.complete_leaf_value(leaf.leaf_type, value)


def _raise_not_projected() -> NoReturn:
    raise _NOT_PROJECTED


# Projectors by their steps, shared by every execution (a selection's steps are made of the
# schema's cached plans, so the same selection gives equal steps); cleared past _COMPILED_MAX.
_COMPILED: dict[tuple[tuple[_Step, ...], Any], Projector] = {}
_COMPILED_MAX = 1024


def projector_for(steps: tuple[_Step, ...], is_awaitable: Any) -> Projector:
    key = (steps, is_awaitable)
    found = _COMPILED.get(key)
    if found is None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        found = _COMPILED[key] = compile_projector(steps, is_awaitable)
    return found


def compile_projector(steps: tuple[_Step, ...], is_awaitable: Any) -> Projector:
    """A selection whose every field is a basic scalar (_Leaf) or a held object (_Preloaded)
    whose own selection is one too, as one generated function: read each value, keep it when it
    is its own coerced output (the exact type; a finite float), complete it otherwise, and build
    the dict in one literal: no Path, no per-field call into the executor, no loop. It answers
    only when every value completes without an error, and raises otherwise; the caller then runs
    the object's fields the general way, which makes graphql-core's exact error at the exact
    path. Reading a basic field or a held object has no side effect, so running the object twice
    is harmless. The generated text holds only local names; the response names (GraphQL names,
    checked by the parser) are written with repr."""
    namespace: dict[str, Any] = {
        "isfinite": isfinite,
        "NOT": _raise_not_projected,
    }
    lines = ["def project(source):"]
    keys = []
    for i, (name, leaf, attribute, nested) in enumerate(steps):
        keys.append(f"{name!r}: v{i}")
        if leaf is None:
            namespace[f"nested{i}"] = nested
            namespace[f"attribute{i}"] = attribute
            lines += [
                f"    v{i} = getattr(source, attribute{i})",
                f"    if v{i} is None: NOT()",  # the resolver's own path (it may load it)
                f"    v{i} = nested{i}(v{i})",
            ]
            continue
        namespace[f"get{i}"] = leaf.get
        namespace[f"complete{i}"] = partial(_completed, leaf, is_awaitable)
        namespace[f"exact{i}"] = leaf.exact
        lines.append(f"    v{i} = get{i}(source)")
        if leaf.exact is None:
            lines.append(f"    v{i} = complete{i}(v{i})")
        elif leaf.exact is float:
            lines.append(f"    if type(v{i}) is not float or not isfinite(v{i}):")
            lines.append(f"        v{i} = complete{i}(v{i})")
        else:
            lines.append(f"    if type(v{i}) is not exact{i}:")
            lines.append(f"        v{i} = complete{i}(v{i})")
    lines.append(f"    return {{{', '.join(keys)}}}")
    exec("\n".join(lines), namespace)  # noqa: S102 (text made above from local names only)
    project: Projector = namespace["project"]
    return project


def no_executor() -> None:
    """What a context names when no executor places prerendered rows (Context.executor)."""
    return None


class FastExecutor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._fast = manager is None or getattr(manager, "_middleware_resolvers", None) is None
        self._plans = _plans(self.schema)
        # Per (parent type, grouped field set) of this execution (graphql-core memoizes the
        # sets per list field: one for every row of a page), its steps and its projector (None:
        # not projectable); the set is kept alive with them, so its id is not reused meanwhile.
        self._steps: dict[tuple[str, int], tuple[GroupedFieldSet, _Steps]] = {}
        self._projectors: dict[tuple[str, int], tuple[GroupedFieldSet, Projector | None]] = {}
        # Resolvers may answer a list field with rows already written as JSON (graphql/rows.py)
        # when this executor places them, that is unless a resolver middleware must see every
        # field; they collect the field's selection with it. Weakly: no cycle through the
        # context. A context that outlives an operation (a WebSocket's) never keeps an earlier
        # executor for a later one that does not place them.
        if hasattr(self.context_value, "executor"):
            self.context_value.executor = weakref.ref(self) if self._fast else no_executor

    def _leaf(self, parent_type: GraphQLObjectType, details: FieldDetailsList) -> _Plan:
        name = details[0].node.name.value
        key = (parent_type.name, name)
        try:
            return self._plans[key]
        except KeyError:
            plan = self._plans[key] = _plan(parent_type, name, parent_type.fields.get(name))
            return plan

    def _steps_of(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> _Steps:
        key = (parent_type.name, id(grouped_field_set))
        entry = self._steps.get(key)
        if entry is not None and entry[0] is grouped_field_set:
            return entry[1]
        steps = tuple(
            (response_name, details, self._leaf(parent_type, details))
            for response_name, details in grouped_field_set.items()
        )
        self._steps[key] = (grouped_field_set, steps)
        return steps

    def _projector_of(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> Projector | None:
        key = (parent_type.name, id(grouped_field_set))
        entry = self._projectors.get(key)
        if entry is not None and entry[0] is grouped_field_set:
            return entry[1]
        steps: list[_Step] = []
        for response_name, details, plan in self._steps_of(parent_type, grouped_field_set):
            if isinstance(plan, _Leaf):
                steps.append((response_name, plan, "", None))
                continue
            if not isinstance(plan, _Preloaded):
                steps = []
                break
            subfields, new_defer_usages, _ = self.collect_subfields(plan.object_type, details)
            nested = None if new_defer_usages else self._projector_of(plan.object_type, subfields)
            if nested is None:
                steps = []
                break
            steps.append((response_name, None, plan.attribute, nested))
        projector = projector_for(tuple(steps), self.is_awaitable) if steps else None
        self._projectors[key] = (grouped_field_set, projector)
        return projector

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
        if position_context is None:
            project = self._projector_of(parent_type, grouped_field_set)
            if project is not None:
                try:
                    return project(source_value)
                except Exception:  # noqa: S110 (the general path below makes the error)
                    pass
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, details, leaf in self._steps_of(parent_type, grouped_field_set):
                if isinstance(leaf, _Preloaded):
                    held = getattr(source_value, leaf.attribute, None)
                    if held is not None and position_context is None:
                        field_path = Path(path, response_name, parent_type.name)
                        result = self._execute_held(leaf, details, field_path, held)
                        if result is not Undefined:
                            results[response_name] = result
                            if is_awaitable(result):
                                awaitable_fields.append(response_name)
                            continue
                elif leaf is not None:
                    try:
                        value = leaf.get(source_value)
                        exact = leaf.exact
                        if type(value) is exact and (exact is not float or isfinite(value)):  # type: ignore[arg-type]
                            results[response_name] = value  # its own coerced output
                            continue
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

    def _execute_held(
        self, plan: _Preloaded, details: FieldDetailsList, path: Path, held: Any
    ) -> Any:
        """execute_field for a field whose value the source held: complete_value of an object
        (no is_type_of) is execute_fields on its subfields; errors are handled as execute_field
        handles them. Undefined when the subfields need @defer's path."""
        object_type = plan.object_type
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(object_type, details)
        if new_defer_usages:
            return Undefined
        try:
            completed = self.execute_fields(object_type, held, path, grouped_field_set, None)
        except Exception as raw_error:
            self.handle_field_error(raw_error, plan.return_type, details, path)
            return None
        if self.is_awaitable(completed):
            return self._awaited_item(completed, plan.return_type, details, path)
        return completed

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        """graphql-core's list completion, with the rows of an object list executed directly.

        For an item of object type, complete_value goes complete_value (non-null), complete_value,
        complete_object_value, collect_and_execute_subfields, execute_collected_subfields, then
        execute_fields: the same subfields for every row. Here a list of objects (no is_type_of,
        no @defer/@stream, a plain Python list) runs execute_fields for each row itself; a row
        that is null, an exception or an awaitable takes graphql-core's own item path, and a
        row's error is handled as complete_list_item_value handles it. A list already written as
        JSON for this very selection (graphql/rows.py, only when this executor is fast) is its
        own completed value.
        """
        if type(result) is Fragment:  # rows written as JSON for this selection (graphql/rows.py)
            return cast(list[Any], result)  # placed as it is by the answer's writer
        item_type = return_type.of_type
        object_type = get_nullable_type(item_type)
        if (
            not self._fast
            or position_context is not None
            or type(result) is not list
            or not isinstance(object_type, GraphQLObjectType)
            or object_type.is_type_of is not None
        ):
            return super().complete_list_value(
                return_type, field_details_list, info, path, result, position_context
            )
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages or self.get_stream_usage(field_details_list, path) is not None:
            return super().complete_list_value(
                return_type, field_details_list, info, path, result, position_context
            )
        is_awaitable = self.is_awaitable
        execute_fields = self.execute_fields
        project = self._projector_of(object_type, grouped_field_set)
        completed: list[Any] = []
        pending: list[int] = []
        try:
            for index, item in enumerate(result):
                if (
                    project is not None
                    and not isinstance(item, Exception)
                    and not is_awaitable(item)
                ):
                    try:
                        completed.append(project(item))
                        continue
                    except Exception:  # noqa: S110 (the row's general path makes the error)
                        pass
                item_path = path.add_key(index, None)
                if is_awaitable(item):
                    completed.append(
                        self.complete_awaitable_list_item_value(
                            item, item_type, field_details_list, info, item_path, None
                        )
                    )
                    pending.append(index)
                    continue
                if item is None or item is Undefined or isinstance(item, Exception):
                    if self.complete_list_item_value(
                        item, completed, item_type, field_details_list, info, item_path, None
                    ):
                        pending.append(index)
                    continue
                try:
                    row = execute_fields(object_type, item, item_path, grouped_field_set, None)
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    completed.append(None)
                    continue
                if is_awaitable(row):
                    completed.append(
                        self._awaited_item(row, item_type, field_details_list, item_path)
                    )
                    pending.append(index)
                else:
                    completed.append(row)
        except Exception:
            if pending:
                self.settle_in_background([completed[index] for index in pending])
            raise
        if not pending:
            return completed

        async def get_completed() -> list[Any]:
            if len(pending) == 1:
                completed[pending[0]] = await completed[pending[0]]
            else:
                awaited = await gather_with_cancel(*(completed[index] for index in pending))
                for index, value in zip(pending, awaited, strict=True):
                    completed[index] = value
            return completed

        return get_completed()

    async def _awaited_item(
        self,
        row: Awaitable[Any],
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        item_path: Path,
    ) -> Any:
        """complete_list_item_value's (and execute_field's) await_completed."""
        try:
            return await row
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, field_details_list, item_path)
            return None


def _plain(argument: StrawberryArgument, scalars: Any) -> bool:
    """An argument Strawberry passes to the resolver as graphql-core coerced it: a built-in or
    custom scalar (not a GlobalID, which it decodes), an enum (graphql-core gives the member),
    either optional. Lists (copied), input objects (built) and Maybe (wrapped) are converted."""
    kind: Any = argument.type
    if isinstance(kind, StrawberryOptional) and not isinstance(kind, StrawberryMaybe):
        kind = kind.of_type
    if kind is GlobalID or isinstance(kind, StrawberryMaybe | StrawberryOptional | LazyType):
        return False
    enum = isinstance(kind, StrawberryEnumDefinition) or has_enum_definition(kind)
    return bool(enum or is_scalar(kind, scalars))


def _lean(field: StrawberryField, info_class: Any, schema: Any) -> Any | None:
    """A direct caller for `field`'s resolver, or None when Strawberry's wrapper is needed."""
    resolver = field.base_resolver
    if (
        resolver is None
        or field.extensions
        or resolver.self_parameter is None
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
        or not callable(resolver.wrapped_func)
        or not all(_plain(a, schema.schema_converter.scalar_registry) for a in field.arguments)
    ):
        return None
    method = resolver.wrapped_func
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    # GraphQL name -> Python name, as Strawberry's convert_arguments maps them.
    names = tuple(
        (schema.config.name_converter.from_argument(a), a.python_name) for a in field.arguments
    )
    if not names and info_name is not None:

        def resolve_info(source: Any, info: Any) -> Any:
            return method(source, **{info_name: info_class(_raw_info=info, _field=field)})

        return resolve_info

    def resolve(source: Any, info: Any, **arguments: Any) -> Any:
        kwargs = {python: arguments[name] for name, python in names if name in arguments}
        if info_name is not None:
            kwargs[info_name] = info_class(_raw_info=info, _field=field)
        return method(source, **kwargs)  # a coroutine for an async one: graphql-core awaits it

    return resolve


def lean_resolvers(schema: Any) -> list[str]:
    """Give plain method resolvers a direct caller (see the module's doc). Not with exception
    handlers, which Strawberry's wrapper applies. Returns the fields changed."""
    converter = schema.schema_converter
    if getattr(converter, "_exception_handler_specs", None):
        return []
    changed = []
    # A subscription field's resolve maps each event: Strawberry's own, not the resolver.
    events = schema._schema.subscription_type
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        if type_ is events:
            continue
        for name, field_def in type_.fields.items():
            field = field_def.extensions.get("strawberry-definition")
            if isinstance(field, StrawberryField) and field_def.resolve is not None:
                lean = _lean(field, schema.config.info_class, schema)
                if lean is not None:
                    field_def.resolve = lean
                    changed.append(f"{type_.name}.{name}")
    return changed
