"""The REST JSON writer matches Node's JSON.stringify byte for byte."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from finops_gql.jsonjs import dumps, dumps_ready, js_date, js_floats, raw


def js_number(value: float) -> str:
    """ECMA-262 Number::toString(x) for finite doubles, written from the spec as the oracle."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()[1:]
    text = "".join(map(str, digits))
    k, n = len(digits), len(digits) + int(exponent)
    if k <= n <= 21:
        return sign + text + "0" * (n - k)
    if 0 < n <= 21:
        return sign + text[:n] + "." + text[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + text
    e = n - 1
    mantissa = text[0] + ("." + text[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (2.0, "2"),
        (71.3, "71.3"),
        (0.00001, "0.00001"),
        (1e-7, "1e-7"),
        (1.5e21, "1.5e+21"),
        (-0.5, "-0.5"),
        (123456.78901, "123456.78901"),
        (1e16, "10000000000000000"),
        (2.0**53, "9007199254740992"),
        (2.0**60, "1152921504606847000"),
        (-(2.0**64), "-18446744073709552000"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e21, "1e+21"),
    ],
)
def test_numbers_as_javascript_writes_them(value: float, expected: str) -> None:
    assert js_number(value) == expected
    assert dumps(value).decode() == expected


def test_random_costs_match_the_spec() -> None:
    rng = random.Random(5)
    for _ in range(20_000):
        value = round(rng.uniform(0, 1000) * 10 ** rng.randint(-7, 4), rng.randint(0, 8))
        assert dumps(value).decode() == js_number(value), value


def test_huge_integral_numbers_match_the_spec() -> None:
    """Past 2**53 an integral double is written as JavaScript writes it (shortest digits and
    zeros), never as its exact integer (which orjson also refuses past 64 bits)."""
    rng = random.Random(6)
    for _ in range(5_000):
        value = float(round(rng.uniform(-1, 1) * 10 ** rng.randint(15, 23)))
        assert dumps(value).decode() == js_number(value), value


def test_non_finite_is_null_and_structures_are_compact() -> None:
    assert dumps([math.nan, math.inf]) == b"[null,null]"
    assert (
        dumps({"a": [1, 2.5, None, True], "é": "ü"}) == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
    )


def test_dates() -> None:
    moment = datetime(2026, 11, 21, 3, 0, 0, 123456, tzinfo=UTC)
    assert js_date(moment) == "2026-11-21T03:00:00.123Z"
    plus_two = moment.astimezone(timezone(timedelta(hours=2)))
    assert (
        dumps({"at": plus_two, "day": date(2026, 11, 21)})
        == b'{"at":"2026-11-21T03:00:00.123Z","day":"2026-11-21"}'
    )


def test_js_floats_written_ready_match_dumps() -> None:
    """The walk-free writer (a team summary's rows) writes every float as dumps does."""
    rng = random.Random(11)
    values = [0.0, -0.0, 2.0, -3.0, 1e-5, -1e-5, 9.99e-6, 1e-6, 5e-7, 1.5e21, 1e21, 1e16]
    values += [math.nan, math.inf, -math.inf, 2.0**53, 0.1 + 0.2]
    for _ in range(20_000):
        values.append(
            round(rng.uniform(-1000, 1000) * 10 ** rng.randint(-9, 22), rng.randint(0, 9))
        )
    assert dumps_ready(js_floats(values)) == dumps(values)
    rows = [{"n": n, "s": "ü"} for n in js_floats(values[:50])]
    assert dumps({"rows": raw(dumps_ready(rows))}) == dumps(
        {"rows": [{"n": n, "s": "ü"} for n in values[:50]]}
    )
