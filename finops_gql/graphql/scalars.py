"""Scalars written the way the REST routes write them, so one client sees one format."""

from __future__ import annotations

from datetime import datetime

import strawberry

from finops_gql.errors import InvalidInput
from finops_gql.jsonjs import js_date


class BadDateTime(InvalidInput, ValueError):
    """A DateTime input that does not parse: BAD_USER_INPUT whether it came as a variable or as
    a literal in the document (validation keeps the parser's exception as the original error)."""


def parse_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise BadDateTime("DateTime must be an ISO 8601 string, e.g. 2026-11-21T03:00:00.000Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadDateTime(
            f"DateTime must be ISO 8601, e.g. 2026-11-21T03:00:00.000Z, got {value[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise BadDateTime("DateTime must carry a UTC offset or Z")
    return parsed


DateTime = strawberry.scalar(
    name="DateTime",
    description="An instant as ISO 8601 in UTC with milliseconds, e.g. 2026-11-21T03:00:00.000Z "
    "(the REST routes' format).",
    serialize=js_date,
    parse_value=parse_datetime,
)
