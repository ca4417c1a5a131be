"""Per-operation limits enforced around execution: the query cost, and the execution deadline.

The cost is computed once per operation from the document and the variables (cost.py), before any
resolver runs, and stored on the context: the view reports it in every answer's
`extensions.cost`, and the per-principal budget (ratelimit.py) is charged the same figure here,
before execution. A document refused as too complex costs 1 point, and so does one that never
reaches execution (unparsable, invalid): every operation costs at least one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from finops_gql.graphql.context import Context
from finops_gql.graphql.cost import Cost, document_cost
from finops_gql.jsonjs import js_date
from finops_gql.metrics import RATE_LIMITED_REQUESTS
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


class QueryCost(SchemaExtension):
    """Cost the operation after validation, charge it to the principal's budget, and refuse it
    (over the limit, or over budget) before any resolver runs."""

    _charged = False  # per operation: Strawberry makes a new extension for each

    async def on_operation(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        if not self._charged and isinstance(context, Context):
            await self._charge(context, 1)  # never executed: unparsable or invalid

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if isinstance(context, Context) and execution.graphql_document is not None:
            cost = Cost(
                document_cost(
                    execution.schema._schema,
                    execution.graphql_document,
                    execution.variables,
                    execution.operation_name,
                ),
                context.max_cost,
            )
            context.cost = cost
            decision = await self._charge(context, 1 if cost.exceeded else cost.requested)
            refusal = None
            if cost.exceeded:
                # First: a document that is too complex stays so, retrying later cannot help.
                log.info("query refused: cost %d over %d", cost.requested, cost.limit)
                refusal = too_complex(cost)
            elif decision is not None and not decision.allowed:
                RATE_LIMITED_REQUESTS.labels("graphql").inc()
                refusal = rate_limited(decision)
            if refusal is not None:
                # A result already set makes Strawberry skip execution altogether.
                execution.result = GraphQLExecutionResult(data=None, errors=[refusal])
        yield

    async def _charge(self, context: Context, requested: int) -> RateDecision | None:
        self._charged = True
        limiter = context.services.ratelimit
        if limiter is None:
            return None
        context.rate = await limiter.charge(context.principal.subject, requested)
        return context.rate
