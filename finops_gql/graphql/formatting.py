"""GraphQL errors as clients see them: an extensions.code to branch on, no internals.

Used by the HTTP view's answers and, through GatewaySchema.process_errors, by the WebSocket
messages Strawberry formats itself."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from finops_gql.errors import Conflict, Forbidden, InvalidInput, NotFound, QueueUnavailable
from finops_gql.logs import request_id
from finops_gql.opencost.errors import OpenCostUnavailable

log = logging.getLogger("finops_gql.graphql.view")  # where these were always logged

CODES: list[tuple[type[Exception], str]] = [
    (OpenCostUnavailable, "OPENCOST_UNAVAILABLE"),
    (NotFound, "NOT_FOUND"),
    (InvalidInput, "BAD_USER_INPUT"),
    (Conflict, "CONFLICT"),
    (Forbidden, "FORBIDDEN"),
    (QueueUnavailable, "QUEUE_UNAVAILABLE"),
]


def formatted(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    body: dict[str, Any] = dict(error.formatted)
    extensions = dict(body.get("extensions") or {})
    if original is None:
        extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
    elif isinstance(original, GraphQLError):
        # graphql-core refusing a variable's value (NaN or 1e309 for a Float, text for an Int)
        extensions.setdefault("code", "BAD_USER_INPUT")
    else:
        for kind, code in CODES:
            if isinstance(original, kind):
                extensions["code"] = code
                break
        else:
            if "code" not in extensions:
                # A bug, not the client's fault: log it whole, answer without internals.
                log.error(
                    "unexpected error in %s",
                    error.path,
                    exc_info=original,
                    extra={"requestId": request_id.get()},
                )
                body["message"] = "internal error"
                extensions["code"] = "INTERNAL_SERVER_ERROR"
    body["extensions"] = extensions
    return body
