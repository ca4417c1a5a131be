"""Per-operation limits enforced around execution (OperationGuard): the query cost, and the
execution deadline.

The cost is computed once per operation from the document and the variables (cost.py), before any
resolver runs, and stored on the context: the view reports it in every answer's
`extensions.cost`, and the per-principal budget (ratelimit.py) is charged the same figure here,
before execution. A document refused as too complex costs 1 point, and so does one that never
reaches execution (unparsable, invalid): every operation costs at least one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator

from graphql import ASTValidationRule, GraphQLError
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from finops_gql.graphql.context import Context
from finops_gql.graphql.cost import Cost
from finops_gql.graphql.documents import default_guard, parse_bounded, validate_cached
from finops_gql.jsonjs import js_date
from finops_gql.metrics import RATE_LIMITED_REQUESTS
from finops_gql.observability import observe_operation
from finops_gql.ratelimit import RATE_LIMITED, RateDecision

log = logging.getLogger(__name__)

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
GRAPHQL_TIMEOUT = "GRAPHQL_TIMEOUT"


def too_complex(cost: Cost) -> GraphQLError:
    return GraphQLError(
        f"query cost {cost.requested} exceeds the limit of {cost.limit} (GRAPHQL_MAX_COST): "
        "ask for smaller pages (first, limit) or fewer nested lists",
        extensions={"code": QUERY_TOO_COMPLEX},
    )


def timed_out(seconds: float) -> GraphQLError:
    return GraphQLError(
        f"the operation ran longer than the limit of {seconds:g} s "
        "(GRAPHQL_TIMEOUT_SECONDS) and was stopped",
        extensions={"code": GRAPHQL_TIMEOUT},
    )


def rate_limited(decision: RateDecision) -> GraphQLError:
    return GraphQLError(
        decision.message(),
        extensions={
            "code": RATE_LIMITED,
            "retryAfter": int(decision.retry_after_header),
            "resetAt": js_date(decision.reset_at),
        },
    )


def subscriptions_need_a_socket() -> GraphQLError:
    return GraphQLError(
        "subscriptions run over a WebSocket at /graphql (subprotocol graphql-transport-ws), "
        "not over HTTP",
        extensions={"code": "BAD_REQUEST"},
    )


def only_subscriptions() -> GraphQLError:
    return GraphQLError(
        "only subscriptions run over the WebSocket: send queries and mutations over HTTP "
        "(POST /graphql)",
        extensions={"code": "BAD_REQUEST"},
    )


class OperationGuard(SchemaExtension):
    """The app's one schema extension, around every operation (HTTP and WebSocket alike): one
    set of hooks per operation costs less than one per concern, and the order of the steps is
    written here once.

    - operation: adds the schema's fixed validation rules (depth, aliases: `rules`), times the
      operation for GRAPHQL_SECONDS, and charges 1 point to an operation that never reached its
      cost (unparsable, invalid): every operation costs at least one;
    - parse and validate: bounded and cached by the app's DocumentGuard (documents.py);
    - the query cost: computed after validation, charged to the principal's budget, and the
      operation refused (over the limit, or over budget) before any resolver runs.

    Queries and mutations are refused in on_execute (a result set there skips execution).
    Subscriptions are costed and charged once, when they start, and refused in on_validate
    instead: Strawberry subscribes whatever on_execute sets, while a validation error ends the
    operation before it starts (an `error` message). Events are not charged.

    graphql/lean.py runs these same steps, in this order, for a valid query over HTTP without
    Strawberry's hook machinery: a step added here is added there too (tests/test_lean.py
    compares the two paths' answers)."""

    _charged = False  # per operation: Strawberry makes a new extension for each

    def __init__(self, rules: tuple[type[ASTValidationRule], ...] = ()) -> None:
        self.rules = rules

    async def on_operation(self) -> AsyncIterator[None]:
        execution = self.execution_context
        if self.rules:
            execution.validation_rules = execution.validation_rules + self.rules
        started = time.perf_counter()
        yield
        context = execution.context
        if not self._charged and isinstance(context, Context):
            await self._charge(context, 1)  # never executed: unparsable or invalid
        observe_operation(execution, time.perf_counter() - started)

    def on_parse(self) -> Iterator[None]:
        parse_bounded(self.execution_context)
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        execution = self.execution_context
        validate_cached(execution)
        context = execution.context
        if (
            isinstance(context, Context)
            and execution.graphql_document is not None
            and not execution.pre_execution_errors
        ):
            subscription = execution.operation_type is OperationType.SUBSCRIPTION
            if context.connection is not None and not subscription:
                # Over a socket an operation has no deadline: only subscriptions, which wait
                # for events, belong there.
                execution.pre_execution_errors = [only_subscriptions()]
            elif context.connection is None and subscription:
                execution.pre_execution_errors = [subscriptions_need_a_socket()]
            elif subscription and (refusal := await self.refusal(execution, context)):
                execution.pre_execution_errors = [refusal]
        yield

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if (
            isinstance(context, Context)
            and execution.graphql_document is not None
            and execution.operation_type is not OperationType.SUBSCRIPTION
            and (refusal := await self.refusal(execution, context))
        ):
            # A result already set makes Strawberry skip execution altogether.
            execution.result = GraphQLExecutionResult(data=None, errors=[refusal])
        yield

    async def refusal(self, execution: ExecutionContext, context: Context) -> GraphQLError | None:
        """Cost the operation, charge it, and say why it may not run (None: it may)."""
        assert execution.graphql_document is not None
        cost = Cost(
            (context.documents or default_guard()).cost(
                execution.schema._schema,
                execution.query,
                execution.graphql_document,
                execution.variables,
                execution.operation_name,
            ),
            context.max_cost,
        )
        context.cost = cost
        decision = await self._charge(context, 1 if cost.exceeded else cost.requested)
        if cost.exceeded:
            # First: a document that is too complex stays so, retrying later cannot help.
            log.info("operation refused: cost %d over %d", cost.requested, cost.limit)
            return too_complex(cost)
        if decision is not None and not decision.allowed:
            RATE_LIMITED_REQUESTS.labels("graphql").inc()
            return rate_limited(decision)
        return None

    async def _charge(self, context: Context, requested: int) -> RateDecision | None:
        self._charged = True
        limiter = context.services.ratelimit
        if limiter is None:
            return None
        context.rate = await limiter.charge(context.principal.subject, requested)
        return context.rate
