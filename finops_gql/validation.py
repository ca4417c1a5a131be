"""Checks every client-supplied value passes before it reaches a query, shared by the services.

The database is not the validator: asyncpg refuses a string longer than its varchar parameter, a
NUL byte or an unpaired surrogate with an exception (a 500), where SQLite would store them. So
text is checked against its column here, once, for reads and writes alike, and each adapter (REST,
GraphQL, CLI, catalog import) inherits it by calling the services.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid

import orjson

from finops_gql.errors import InvalidInput

# Default of BUDGET_MAX_USD: a 30-day budget above a billion is a typo, or an attack on the sums.
BUDGET_MAX_USD = 1_000_000_000.0
# Shown in messages: enough to recognise a value, never a megabyte echoed back.
SHOWN_CHARS = 60
# An issued cursor holds at most a 200-character name and a UUID: JSON escapes a character in up
# to 12 bytes and base64 adds a third, so 4 KiB is above anything this API issues.
CURSOR_MAX_CHARS = 4096


def shown(value: object) -> str:
    """A value for an error message: repr, truncated."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(str(value))} characters)"


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text on both databases, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


def check_text(value: object, what: str, max_chars: int, *, strip: bool = False) -> str:
    """Non-empty text that fits a varchar(max_chars) column, without NUL or lone surrogates."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    if strip:
        value = value.strip()
    if not value or len(value) > max_chars:
        raise InvalidInput(f"{what} must be 1 to {max_chars} characters, got {len(value)}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    return value


def fits_column(value: str, max_chars: int) -> bool:
    """Whether a lookup value could be in a varchar(max_chars) column at all."""
    return 0 < len(value) <= max_chars and text_problem(value) is None


def check_money(value: float | None, what: str, maximum: float, setting: str) -> float | None:
    """A finite, non-negative amount no larger than `maximum` (named by its setting)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what} must be a number")
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number, got {value}")
    if value < 0:
        raise InvalidInput(f"{what} must be >= 0, got {value}")
    if value > maximum:
        raise InvalidInput(f"{what} must be at most {maximum:g} ({setting}), got {value:g}")
    return float(value)


def check_amount(value: float | None, what: str) -> float | None:
    """A finite, non-negative number (a filter's bound: no maximum to name)."""
    return check_money(value, what, math.inf, "")


def parse_uuid(value: object, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    text = str(value)
    try:
        # UUID text is 32 to 45 characters; the bound keeps int() parsing off huge inputs.
        if len(text) > 64:
            raise ValueError
        return uuid.UUID(text)
    except ValueError:
        raise InvalidInput(f"{what} must be a UUID, got {shown(text)}") from None


def encode_cursor(*parts: str) -> str:
    # orjson: a page encodes one on every request (json.dumps cost several microseconds); both
    # writers' text reads back the same through decode_cursor.
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode()


def decode_cursor(cursor: str, size: int, what: str = "after") -> list[str]:
    """The parts of a cursor this API issued; anything else is InvalidInput, never a crash.

    Each part still has to be checked against its column by the caller.
    """
    bad = InvalidInput(f"{what}: not a cursor this API issued")
    if not isinstance(cursor, str) or len(cursor) > CURSOR_MAX_CHARS:
        raise bad
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, RecursionError):
        # UnicodeEncodeError/UnicodeDecodeError are ValueErrors: non-ASCII text, non-UTF-8 bytes
        raise bad from None
    if (
        not isinstance(parts, list)
        or len(parts) != size
        or not all(isinstance(p, str) and text_problem(p) is None for p in parts)
    ):
        raise bad
    return parts
