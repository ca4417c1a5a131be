"""The one JSON writer of every answer (REST, GraphQL, errors): bytes exactly as Node's
JSON.stringify writes them, for byte-compatibility with the NestJS service the REST routes replace
and so that REST and GraphQL agree: compact separators, `2` not `2.0`, `0.00001` not `1e-05`,
dates as ISO-8601 with milliseconds and `Z`.

orjson writes every non-integral double as JavaScript's Number#toString does (tests/test_jsonjs.py
checks it against the ECMAScript algorithm); integral doubles are turned into ints first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson


# Answers repeat a few instants (every row a sync run writes has its `syncedAt`): a top-10 wrote
# the same one ten times, a tenth of the request's instructions.
@lru_cache(maxsize=1024)
def js_date(value: datetime) -> str:
    """Date.prototype.toISOString: UTC, milliseconds, Z (remembered: equal instants, whatever
    their time zones, write the same text)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Integral doubles below this are written digit for digit by int(); past it JavaScript writes the
# shortest digits that round-trip, padded with zeros (2**60 is 1152921504606847000, not ...976),
# and int() would also overflow orjson's 64 bits from 2**64 on.
_EXACT_INT = 2.0**53


def _float(value: float) -> Any:
    if value.is_integer() and abs(value) < 1e21:
        if abs(value) < _EXACT_INT:
            return int(value)
        return orjson.Fragment(str(int(Decimal(repr(value)))))
    if 1e-6 <= abs(value) < 1e-5:  # JS keeps fixed notation down to 1e-6, orjson to 1e-5
        return orjson.Fragment(format(Decimal(repr(value)), "f"))
    return value


_PLAIN = (str, int, bool, type(None))


def _prepare(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return _float(value)
    if kind is dict:
        # Scalars inline: a team summary is hundreds of small dicts.
        return {
            key: item if type(item) in _PLAIN else _prepare(item) for key, item in value.items()
        }
    if kind is list:
        return [_prepare(item) for item in value]
    if kind is datetime:
        return js_date(value)
    if kind is date:
        return value.isoformat()
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(_prepare(value))


# -- writers that skip the walk: a list of hundreds of rows (a team summary) ---------------------


def js_floats(values: Iterable[float]) -> list[Any]:
    """Each float as `dumps` writes it, for values written with `dumps_ready`: the rare ones
    `_float` changes (integral, or below 1e-5) go through it, the rest stay as they are (their
    text is already JavaScript's, see the module's docstring)."""
    return [v if not (v.is_integer() or -1e-5 < v < 1e-5) else _float(v) for v in values]


def js_ready(value: Any) -> Any:
    """One value as `dumps` would write it, ready for `dumps_ready`."""
    return _prepare(value)


def dumps_ready(value: Any) -> bytes:
    """`dumps` without its walk over the value, for values that hold nothing it would change:
    str, int, bool, None, lists and dicts of them, floats from `js_floats`, and `raw` parts."""
    return orjson.dumps(value)


def raw(written: bytes) -> orjson.Fragment:
    """JSON text `dumps` embeds as it is (a part written by `dumps_ready`)."""
    return orjson.Fragment(written)
