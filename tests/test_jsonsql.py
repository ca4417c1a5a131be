"""db/jsonsql.py: the JSON text the database writes is jsonjs.dumps's, byte for byte, on both
databases; differential over tens of thousands of adversarial and realistic doubles. Each
non-NULL result must equal jsonjs.dumps of the value as the driver reads it (money: of
round(x, 5)); NULL (cannot tell) must be rare on realistic data and never for zero."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterator

import pytest
from tortoise.transactions import in_transaction

from finops_gql import jsonjs
from finops_gql.costs.windows import money
from finops_gql.db import jsonsql
from finops_gql.db.setup import connection, dialect
from tests.conftest import make_component, make_team

pytestmark = pytest.mark.usefixtures("services")

Writer = Callable[[str, str], str]
# SQLite binds at most 32,766 parameters a statement: its values go in VALUES lists this long.
SQLITE_CHUNK = 10_000


def adversarial() -> list[float]:
    rng = random.Random(20261124)
    values = [
        0.0,
        -0.0,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        2.225073858507201e-308,
        1.7976931348623157e308,
        math.nan,
        math.inf,
        -math.inf,
        0.1 + 0.2,
        1234.5,
        4e-6,
        math.nextafter(4e-6, 0),
        5e-6,
        math.nextafter(5e-6, 0),  # the double below 5 * 10^-6: rounds to 0, 5e-6 to 1e-5
        1e15 + 0.5,
        8.379259238982531,  # SQLite's CAST reads 8.37925923898253 back as this; it is not
    ]
    for power in (36, 46, 52, 53, 54, 60):
        edge = 2.0**power
        values += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
        values += [edge / 1e5, math.nextafter(edge / 1e5, 0), math.nextafter(edge / 1e5, math.inf)]
    for edge in (1e10, 1e-4, 1e-5, 1e-6, 1e-7, 1e15, 1e21, 7e8):
        values += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    values += money_fast_path_edges(rng)
    # Exact ties of the money rounding and their neighbours: k/64 (halves of 1e-5 steps too).
    for k in range(-40_000, 40_000, 7):
        values += [k / 64, k / 64 / 1e5 * 32]
    for k in range(0, 100_000, 97):
        tie = (k + 0.5) / 1e5
        values += [tie, math.nextafter(tie, 0), math.nextafter(tie, math.inf)]
    # Decimal magnitudes from below the subnormals to the largest double.
    for exponent in range(-325, 309):
        for mantissa in (1.0, 1.5, 2.5, 9.999, 3.0000000000000004):
            with_power = mantissa * 10.0**exponent if exponent > -308 else mantissa * 1e-300
            values.append(with_power / 10.0 ** max(0, -exponent - 300))
    values += [10 ** rng.uniform(-7, -4) for _ in range(2_000)]
    values += [10 ** rng.uniform(15, 22) for _ in range(2_000)]
    values += [10 ** rng.uniform(-9, 12) for _ in range(15_000)]
    # Near ties: |x * 1e5 - n| about 0.5, at every scale up to 1e10.
    for _ in range(15_000):
        n = rng.randint(-(10**15), 10**15) // 10 ** rng.randint(0, 14)
        tie = (n + 0.5) / 1e5
        values += [tie, math.nextafter(tie, 0), math.nextafter(tie, math.inf)]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3_000)]
    values += realistic(20_000, seed=1)
    return values + [-v for v in values[:2_000]]


# PostgreSQL's money_json writes round(y) / 1e5 with float8out when 1e-4 <= |x| < 1e10 and
# y = x * 1e5 (the double product) is not a half-integer, and takes its exact branch (Veltkamp's
# split, numeric's text) otherwise: for half-integers, 5e-6 <= |x| < 1e-4, and every value when
# extra_float_digits <= 0 (test_postgres_money_exact_branch_alone).
FAST_MIN, FAST_MAX = 1e-4, 1e10


def money_fast(x: float) -> bool:
    """Whether PostgreSQL's money_json takes its float8out path for x (given shortest digits)."""
    if not FAST_MIN <= abs(x) < FAST_MAX:
        return False
    y = x * 1e5
    return abs(y - round(y)) < 0.5


def money_fast_path_edges(rng: random.Random) -> list[float]:
    """Values on both sides of each bound of money_json's fast path: |x| around 1e-4 and 1e10,
    and x whose y is a half-integer n + 1/2 (the exact path) or a few ulps either side of one
    (where the exact x * 10^5 may lie on the other side of n + 1/2 than y's neighbours suggest),
    at every scale of n from 10 to 1e15."""
    values: list[float] = []
    for bound in (FAST_MIN, FAST_MAX):
        for step in range(-40, 41):
            values.append(bound + step * math.ulp(bound))
        values += [bound * (1 + k / 1e6) for k in range(-20, 21)]
    for _ in range(4_000):
        n = rng.randint(10, 10**15) // 10 ** rng.randint(0, 14)
        x = (n + 0.5) / 1e5
        for sign in (1, -1):
            for step in range(-3, 4):
                values.append(sign * (x + step * math.ulp(x)))
    return values


def realistic(count: int, seed: int) -> list[float]:
    """Costs as the service stores them: 0..1e7 with float noise (sums of rounded figures, up
    to ~10 decimals), budgets like 1234.5, and many zeros."""
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.2:
            values.append(0.0)
        elif kind < 0.3:
            values.append(rng.randint(0, 200_000) / 2)  # budgets
        elif kind < 0.6:
            days = [round(rng.uniform(0, 10 ** rng.uniform(-2, 5.5)), 5) for _ in range(30)]
            values.append(sum(days))  # a 30-day sum: float noise
        else:
            scale = 10 ** rng.uniform(-3, 7)
            values.append(round(rng.uniform(0, scale), rng.randint(0, 10)) * rng.choice((1, 1.1)))
    return values


def _chunks(values: list[float], size: int) -> Iterator[list[float]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def run(writer: Writer, values: list[float]) -> list[tuple[float | None, str | None]]:
    """Each value as the driver reads it back, and the writer's text for it, in one statement
    (SQLite: one per chunk)."""
    name = dialect()
    expr = writer("x", name)
    if name == "postgres":
        sql = (
            f"SELECT x, {expr} AS j"  # noqa: S608
            " FROM unnest($1::float8[]) WITH ORDINALITY AS u(x, i) ORDER BY i"
        )
        _, rows = await connection().execute_query(sql, [values])
        return [(row[0], row[1]) for row in rows]
    found: list[tuple[float | None, str | None]] = []
    for chunk in _chunks(values, SQLITE_CHUNK):
        marks = ", ".join("(?)" for _ in chunk)
        sql = f"SELECT x, {expr} AS j FROM (SELECT column1 AS x FROM (VALUES {marks}))"  # noqa: S608
        _, rows = await connection().execute_query(sql, chunk)
        found += [(row[0], row[1]) for row in rows]
    assert len(found) == len(values)
    return found


def expected(value: float | None, rounded: bool) -> str:
    if value is None:
        return "null"
    return jsonjs.dumps(money(value) if rounded else value).decode()


def mismatches(rows: list[tuple[float | None, str | None]], rounded: bool) -> list[str]:
    return [
        f"{value!r}: {got} != {expected(value, rounded)}"
        for value, got in rows
        if got is not None and got != expected(value, rounded)
    ]


def null_rate(rows: list[tuple[float | None, str | None]]) -> float:
    return sum(got is None for _, got in rows) / len(rows)


@pytest.mark.parametrize(
    ("writer", "rounded"), [(jsonsql.float_json, False), (jsonsql.money_json, True)]
)
async def test_adversarial_doubles_are_written_as_jsonjs_writes_them(
    writer: Writer, rounded: bool
) -> None:
    rows = await run(writer, adversarial())
    assert mismatches(rows, rounded) == []
    # Decided: money below 1e10 (near ties included), PostgreSQL's float_json below 2^53;
    # SQLite's float_json gives NULL for most of these (they need 16 or 17 digits).
    limit = 1e10 if rounded else 2.0**53 if dialect() == "postgres" else 0
    undecided = [v for v, got in rows if got is None and v is not None and abs(v) < limit]
    assert undecided == []
    for value, got in rows:
        if value == 0 or value is None:  # zero, -0, and SQLite's NaN (stored as NULL)
            assert got == ("0" if value is not None else "null")
        if value is not None and math.isinf(value):
            assert got is None
        if value is not None and math.isnan(value):
            assert got is None


async def test_money_decides_every_realistic_cost_and_near_tie() -> None:
    values = realistic(20_000, seed=2)
    ties = [v for v in values if v and abs(v * 1e5 - round(v * 1e5)) >= 0.49]
    assert len(ties) > 100  # about 2 % of them
    rows = await run(jsonsql.money_json, values)
    assert mismatches(rows, rounded=True) == []
    assert null_rate(rows) == 0


async def test_money_fast_path_edges_are_written_exactly() -> None:
    values = money_fast_path_edges(random.Random(7))
    fast = [v for v in values if money_fast(v)]
    # Both sides of every bound are exercised (the fast path is PostgreSQL's; SQLite runs the
    # same values through its exact path).
    assert len(fast) > 10_000
    assert len(values) - len(fast) > 10_000
    for bound in (FAST_MIN, FAST_MAX):
        near = [v for v in values if bound / 1.00001 <= abs(v) <= bound * 1.00001]
        assert any(money_fast(v) for v in near)
        assert any(not (FAST_MIN <= abs(v) < FAST_MAX) for v in near)
    halves = [v for v in values if FAST_MIN <= abs(v) < FAST_MAX and not money_fast(v)]
    assert len(halves) > 1_000
    # y a neighbour of a half-integer while the exact product is on the other side of it than
    # round(y) would suggest cannot happen (rounding is monotonic): these are the values that
    # would show it if it did.
    rows = await run(jsonsql.money_json, values)
    assert mismatches(rows, rounded=True) == []
    # NULL only from 1e10 (N needs more than 15 digits there).
    assert [v for v, got in rows if got is None and v is not None and abs(v) < 1e10] == []


async def test_float_nulls_on_realistic_data_are_the_ones_needing_16_or_17_digits() -> None:
    values = realistic(20_000, seed=3)
    rows = await run(jsonsql.float_json, values)
    assert mismatches(rows, rounded=False) == []
    assert all(got == "0" for value, got in rows if value == 0)
    if dialect() == "postgres":
        assert null_rate(rows) == 0
        return
    # SQLite prints 15 digits: only values whose shortest digits are longer give NULL.
    for value, got in rows:
        assert (got is None) == (len(repr(value).replace(".", "").lstrip("0")) > 15), value
    budgets = await run(jsonsql.float_json, [v / 2 for v in range(0, 400_000, 37)])
    assert null_rate(budgets) == 0


@pytest.mark.parametrize("digits", [0, -1])
async def test_postgres_without_shortest_digits_gives_null(digits: int) -> None:
    if dialect() != "postgres":
        pytest.skip("extra_float_digits is PostgreSQL's")
    values = [0.1 + 0.2, 1234.5, 1.0, 0.0, 109.12704000000001, -0.00015, 1234567890.12345]
    sql = (
        f"SELECT {jsonsql.float_json('x', 'postgres')}, {jsonsql.money_json('x', 'postgres')}"  # noqa: S608
        " FROM unnest($1::float8[]) WITH ORDINALITY AS u(x, i) ORDER BY i"
    )
    async with in_transaction() as conn:
        await conn.execute_script(f"SET LOCAL extra_float_digits = {digits}")
        _, rows = await conn.execute_query(sql, [values])
    # float_json gives NULL for everything but zero (not read from float8::text), money_json
    # does not read float8::text: its fast branch is not taken (at -1 float8::text would write
    # 1234567890.1235).
    assert [tuple(row) for row in rows] == [
        (None, "0.3"),
        (None, "1234.5"),
        (None, "1"),
        ("0", "0"),
        (None, "109.12704"),
        (None, "-0.00015"),
        (None, "1234567890.12345"),
    ]


async def test_postgres_money_exact_branch_alone() -> None:
    """Without shortest digits PostgreSQL's money_json takes its exact branch for every value:
    the same differential as with them, every value through the Veltkamp split."""
    if dialect() != "postgres":
        pytest.skip("extra_float_digits is PostgreSQL's")
    values = adversarial() + money_fast_path_edges(random.Random(8)) + realistic(20_000, seed=4)
    sql = (
        f"SELECT x, {jsonsql.money_json('x', 'postgres')}"  # noqa: S608
        " FROM unnest($1::float8[]) WITH ORDINALITY AS u(x, i) ORDER BY i"
    )
    async with in_transaction() as conn:
        await conn.execute_script("SET LOCAL extra_float_digits = 0")
        _, found = await conn.execute_query(sql, [values])
    rows = [(row[0], row[1]) for row in found]
    assert mismatches(rows, rounded=True) == []
    assert [v for v, got in rows if got is None and abs(v) < 1e10] == []


async def test_sqlite_money_exact_branch_alone() -> None:
    """SQLite's money_json without its fast path: every value through the exact split, the same
    differential."""
    if dialect() != "sqlite":
        pytest.skip("the split alone is tested on PostgreSQL with extra_float_digits = 0")
    values = adversarial() + money_fast_path_edges(random.Random(9)) + realistic(20_000, seed=5)
    rows = await run(lambda e, _: jsonsql._sqlite_money_json(e, fast=False), values)
    assert mismatches(rows, rounded=True) == []
    assert [v for v, got in rows if got is None and abs(v) < 1e10] == []


async def test_a_row_spliced_from_pieces_is_jsonjs_dumps_or_null_as_a_whole() -> None:
    """The caller's use: pieces joined with `||` over a table; one undecidable piece (a
    budget needing 17 digits, on SQLite) makes the whole row NULL, for the Python path."""
    team = await make_team()
    await make_component(team, 'a "quoted" \u2028 name', budget_usd=1234.5, cost_30d=0.1 + 0.2)
    await make_component(team, "b", budget_usd=None, cost_30d=2.000005)
    await make_component(team, "c", budget_usd=0.1 + 0.2, cost_30d=0.0)
    name = dialect()
    sql = (
        "SELECT c.name, c.budget_usd, c.cost_30d,"  # noqa: S608
        f" '{{\"name\":' || {jsonsql.text_json('c.name', name)}"
        f" || ',\"budget\":' || {jsonsql.float_json('c.budget_usd', name)}"
        f" || ',\"cost\":' || {jsonsql.money_json('c.cost_30d', name)} || '}}' AS j"
        " FROM component c ORDER BY c.name"
    )
    _, rows = await connection().execute_query(sql)
    written = {row[0]: row[3] for row in rows}
    for row in rows:
        if row[3] is not None:
            python = {"name": row[0], "budget": row[1], "cost": money(row[2])}
            assert row[3] == jsonjs.dumps(python).decode()
    assert written['a "quoted" \u2028 name'] == (
        '{"name":"a \\"quoted\\" \u2028 name","budget":1234.5,"cost":0.3}'
    )
    # 2.000005 is 2.0000049999999998... in binary: round() gives 2 (its text would round up).
    assert written["b"] == '{"name":"b","budget":null,"cost":2}'
    assert (written["c"] is None) == (name == "sqlite")


STRINGS = [
    "",
    "plain",
    "".join(chr(c) for c in range(1, 0x80)),  # every control, quote, backslash, DEL
    'quote " and back\\slash',
    "tab\tnew\nline\rcr\bbs\fff\x0b\x1f",
    "é € ü ß 日本語",
    "\u2028\u2029 separators",
    "\ufeff\ufffe\uffff",
    "astral 😀 𝄞 \U0010ffff",
    "</script>",
]


async def test_strings_are_escaped_as_orjson_escapes_them() -> None:
    name = dialect()
    values = [*STRINGS, *(chr(c) for c in range(1, 0x800)), None]
    if name == "sqlite":  # PostgreSQL's text cannot hold U+0000
        values.append("nul \x00 inside")
    if name == "postgres":
        rows_sql = ", ".join(f"({i}, ${i}::text)" for i in range(1, len(values) + 1))
        source = f"(VALUES {rows_sql}) AS q(i, s)"
    else:
        rows_sql = ", ".join(f"({i}, ?)" for i in range(1, len(values) + 1))
        source = f"(SELECT column1 AS i, column2 AS s FROM (VALUES {rows_sql}))"  # noqa: S608
    sql = f"SELECT {jsonsql.text_json('s', name)} FROM {source} ORDER BY i"  # noqa: S608
    _, rows = await connection().execute_query(sql, values)
    assert [row[0] for row in rows] == [jsonjs.dumps(value).decode() for value in values]


async def test_booleans() -> None:
    name = dialect()
    true, false = ("TRUE", "FALSE") if name == "postgres" else ("1", "0")
    sql = (
        f"SELECT {jsonsql.bool_json(true, name)}, {jsonsql.bool_json(false, name)},"
        f" {jsonsql.bool_json('NULL', name)}"
    )
    _, rows = await connection().execute_query(sql)
    assert tuple(rows[0]) == ("true", "false", "null")


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="mysql"):
        jsonsql.float_json("x", "mysql")
