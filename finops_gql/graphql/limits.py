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


class QueryCost(SchemaExtension):
    """Cost the operation after validation, refuse it over the limit before any resolver runs."""

    def on_execute(self) -> Iterator[None]:
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
            if cost.exceeded:
                log.info("query refused: cost %d over %d", cost.requested, cost.limit)
                # A result already set makes Strawberry skip execution altogether.
                execution.result = GraphQLExecutionResult(data=None, errors=[too_complex(cost)])
        yield
