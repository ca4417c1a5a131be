"""A query over HTTP, run without Strawberry's per-phase extension machinery.

Strawberry runs every operation through four phases (operation, parsing, validation,
execution), and for each it builds a context manager per extension hook: it inspects the hook,
wraps it in a (async) context manager, enters it through an exit stack, and starts an async
generator the event loop tracks. For a page answered in a fraction of a millisecond, that was
about a fifth of the CPU per request, with one extension (limits.OperationGuard).

`execute_query` runs the same steps directly, in OperationGuard's order, for the operations
that need nothing else: a query over HTTP whose document parses and validates (both cached by
the app's DocumentGuard). Everything else (a mutation, a subscription, an invalid document, a
schema with other extensions) returns None before any side effect, and Strawberry's own path
runs it with OperationGuard's hooks, which make the same errors. tests/test_lean.py compares
both paths byte for byte.
"""

from __future__ import annotations

import time
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.execution import optimized_is_awaitable
from strawberry.http import GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.schema.schema import Schema, _coerce_error
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.await_maybe import await_maybe

from finops_gql.graphql.context import Context
from finops_gql.graphql.documents import parse_bounded, validate_cached
from finops_gql.graphql.limits import OperationGuard
from finops_gql.observability import observe_operation


def _guard(schema: BaseSchema) -> OperationGuard | None:
    """The operation's extensions when they are OperationGuard alone (made per operation, as
    Strawberry makes them)."""
    if not isinstance(schema, Schema):
        return None
    extensions = schema.get_extensions()
    if len(extensions) != 1 or type(extensions[0]) is not OperationGuard:
        return None
    return extensions[0]


async def execute_query(
    schema: BaseSchema,
    context: Context,
    request: GraphQLRequestData,
    allowed: set[OperationType],
) -> ExecutionResult | None:
    """Strawberry's Schema.execute for a valid query over HTTP, or None when the operation is
    not one (nothing done: Strawberry's path then runs it)."""
    if context.connection is not None or not request.query:
        return None
    guard = _guard(schema)
    if guard is None or not isinstance(schema, Schema):
        return None
    started = time.perf_counter()
    execution = schema._create_execution_context(
        query=request.query,
        allowed_operation_types=allowed,
        variable_values=request.variables,
        context_value=context,
        operation_name=request.operation_name,
        operation_extensions=request.extensions,
    )
    guard.execution_context = execution
    try:
        parse_bounded(execution)
        kind = execution.operation_type
    except (GraphQLError, RuntimeError):  # unparsable, or no operation to run
        return None
    if kind is not OperationType.QUERY or kind not in allowed:
        return None
    if guard.rules:
        execution.validation_rules = execution.validation_rules + guard.rules
    validate_cached(execution)
    if execution.pre_execution_errors:
        return None
    # From here the operation is this function's: OperationGuard's steps, in its order.
    refusal = await guard.refusal(execution, context)
    result: Any
    if refusal is not None:
        result = GraphQLExecutionResult(data=None, errors=[refusal])
    else:
        try:
            result = await await_maybe(
                schema._get_execute_function()(
                    schema._schema,
                    execution.graphql_document,
                    root_value=None,
                    middleware=None,
                    variable_values=execution.variables,
                    operation_name=execution.operation_name,
                    context_value=context,
                    is_awaitable=optimized_is_awaitable,
                    executor_class=schema.execution_context_class,
                    operation_extensions=request.extensions,
                )
            )
        except Exception as exc:  # as Strawberry's execute turns it into an error
            result = GraphQLExecutionResult(data=None, errors=[_coerce_error(exc)])
    if result.errors:
        execution.pre_execution_errors = result.errors
        schema._process_errors(result.errors, execution)
    answer = ExecutionResult(data=result.data, errors=result.errors, extensions={})
    execution.result = answer
    observe_operation(execution, time.perf_counter() - started)
    return answer
