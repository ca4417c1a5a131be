"""Per-operation limits enforced around execution: the query cost, and the execution deadline.

The cost is computed once per operation from the document and the variables (cost.py), before any
resolver runs, and stored on the context: the view reports it in every answer's
`extensions.cost`, and a per-principal budget can charge the same figure from `QueryCost`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from finops_gql.graphql.context import Context
from finops_gql.graphql.cost import Cost, document_cost

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


class QueryCost(SchemaExtension):
    """Cost the operation after validation, refuse it over the limit before any resolver runs.

    Queries and mutations are refused in on_execute (a result set there skips execution).
    Subscriptions are refused in on_validate instead: Strawberry subscribes whatever on_execute
    sets, while validation errors end the operation before it starts (an `error` message)."""

    def _cost(self) -> Cost | None:
        execution = self.execution_context
        context = execution.context
        if not isinstance(context, Context) or execution.graphql_document is None:
            return None
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
        if cost.exceeded:
            log.info("operation refused: cost %d over %d", cost.requested, cost.limit)
        return cost

    def on_validate(self) -> Iterator[None]:
        # Runs after DocumentLimits (earlier in the list) validated the document.
        execution = self.execution_context
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
            elif subscription and (cost := self._cost()) is not None and cost.exceeded:
                execution.pre_execution_errors = [too_complex(cost)]
        yield

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        if execution.operation_type is not OperationType.SUBSCRIPTION:
            cost = self._cost()
            if cost is not None and cost.exceeded:
                # A result already set makes Strawberry skip execution altogether.
                execution.result = GraphQLExecutionResult(data=None, errors=[too_complex(cost)])
        yield
