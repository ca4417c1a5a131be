"""SQL expressions that write a value's JSON text byte for byte as `jsonjs.dumps` writes it.

Each function takes an SQL expression (`c.cost_30d`) and a dialect (`db.setup.dialect()`:
"postgres" or "sqlite") and returns an expression of type text, for JSON built by the database
and spliced into an answer as it is. SQL NULL input gives the text `null`. Where the expression
cannot be sure of jsonjs's bytes it gives SQL NULL instead (not the text `null`): the caller joins
pieces with `||`, so the whole row is NULL and the caller writes that page in Python.

The expressions are flat (no subquery but SQLite's rare exponent case) and repeat `expr`: pass a
column reference (or a LATERAL's), not a computation. Flat because PostgreSQL pulls subqueries up
into the expression and plans the substituted tree, which grows with every level: an earlier
version named each intermediate in a nested subquery and took 23 ms to plan six money columns;
SQLite ran it at 17 us a value (2 us now).

PostgreSQL's cost is mostly the size of the tree, not the work per row: a statement is planned
at its first executions on a connection (each execution, when these were written: the service
ran with plan_cache_mode force_custom_plan then; db/setup.py), and starting it, at each
execution, walks nodes of the plan again; planning walks each node a dozen times (constant folding, volatility and parallel-safety
checks, costing, reference fixing, each with a catalog lookup per function), about 0.4 us a
function node per execution, as much as running it over 50 rows. So the PostgreSQL expressions
are written for few nodes: float8 constants as typed literals (`CAST('1e-4' AS double
precision)` is a constant from parsing on; `CAST(1e-4 AS double precision)` converts a numeric
at every planning), each rare case in a branch of its own without repeating the common one's
tests, and extra_float_digits read by current_setting in the expression (0.16 us a value; an
uncorrelated subquery, run once as an InitPlan, costs about 30 us more to plan each time than it
saves over a page).

float_json(x): the text of JavaScript's Number#toString, which jsonjs writes for every finite
double (`2` not `2.0`, `0.00001` not `1e-05`, `1e-7`, `1e+21`, `-0` as `0`). Exact because:
- PostgreSQL: `float8::text` is Ryu's shortest round-trip digits (the closest of them to x, as
  Python's repr and orjson choose) when extra_float_digits > 0 (the default 1), in fixed
  notation from 1e-4 to below 1e15, as JavaScript writes them. From 1e-6 to 1e-4 and from 1e15
  it writes `1.5e-05` / `1.0000000000000005e+15`, which JavaScript writes in fixed notation:
  `::numeric::text` does that exactly (numeric reads the decimal text exactly and keeps its
  scale: 0.000015). Below 1e-6 JavaScript writes the exponent without leading zeros (`1e-7`,
  PostgreSQL `1e-07`). The magnitude of x decides the notation because 1e-6, 1e-4 and 1e15 are
  doubles whose shortest digits are those powers of ten (one width_bucket over the bounds, NaN
  and infinities in the last bucket: float8 orders NaN above everything). NULL:
  extra_float_digits <= 0 (then `%.15g` or fewer digits); |x| >= 2^53, because PostgreSQL's Ryu
  never takes a bound of x's rounding interval as the digits, where Python's repr does when x's
  mantissa is even (a bound reads back as x, ties to even): 2.5e22 prints 2.4999999999999998e+22
  (below 2^53 a bound has at least 17 significant digits, n + 1/2 in [2^52, 2^53) and longer
  below, never fewer than the shortest digits inside, so the two agree); NaN and infinities
  (jsonjs writes `null` for them, but the Python path decides that). 0 and -0: `0`.
- SQLite: `CAST(x AS TEXT)` prints `%!.15g`: 15 significant digits, exponent notation below
  1e-4 and from 1e15 (`1.0e-05`). A normal double's rounding interval (width at most 2^-52 of
  x) holds at most one decimal of at most 15 digits (their spacing is at least 10^-15 of x), so
  when the text's value D * 10^p reads back as x it is the only such decimal that does, i.e.
  the shortest round-trip digits (trailing zeros trimmed). The read-back is computed, not CAST:
  SQLite 3.40's text-to-double conversion (long double arithmetic) is not correctly rounded
  (8.379259238982531 prints 8.37925923898253, which CAST reads back as x, while the correctly
  rounded double of that text is another). D < 10^15 < 2^53 and 10^|p| with |p| <= 22 are
  exact doubles (CAST('1e14' AS REAL) multiplies 1 by an exact power of ten), so one IEEE
  multiplication or division rounds D * 10^p correctly (Clinger's fast path). Fixed notation
  (1e-4 <= |x| < 1e15, the common case) is then JavaScript's; exponent notation is rewritten
  into JavaScript's layout (fixed from 1e-6 to below 1e21, `d.ddde-7` / `d.ddde+21` outside).
  A text the magnitude puts in the wrong notation (999999999999999.9 rounds to `1.0e+15`) does
  not read back. NULL: text that does not read back (x needs 16 or 17 digits, e.g.
  0.30000000000000004), |p| > 22 (below about 1e-8 with 15 digits, or from 1e23), subnormals
  (wider intervals: 5e-324 prints 4.94065645841247e-324) and infinities. SQLite stores NaN as
  NULL: `null`, as the driver reads it.

money_json(x): the text of jsonjs.dumps(round(x, 5)). round(x, 5) is the double nearest to
N / 10^5, N the integer nearest to the exact x * 10^5, ties to even (CPython rounds the exact
binary value). The expression computes N exactly in double arithmetic (IEEE, round to nearest;
PostgreSQL and SQLite on x86-64 SSE2) and writes N / 10^5 exactly:
- |x| < 5e-6 (the double, just above 5 * 10^-6): N = 0, `0` (zero and -0 included, never
  NULL).
- PostgreSQL, 5e-6 <= |x| < 1e10. y = fl(x * 1e5), |y| <= 10^15 < 2^50, f = floor(y), h = f +
  1/2 (exact). Rounding to nearest is monotonic and h is a double, so the exact x * 10^5 is on
  the same side of h as y, or at h only if y is: N is f or f + 1 (the exact product is within
  half an ulp, at most 2^-4, of y).
  Fast branch, with shortest digits (extra_float_digits > 0), |x| >= 1e-4 and y not a
  half-integer (y - f, exact by Sterbenz, is not 1/2): y is strictly between two half-integers,
  so is x * 10^5, and N = round(y) (no tie to break). N and 1e5 are exact doubles, so the IEEE
  division N / 1e5 is the double nearest N / 10^5: round(x, 5) itself, which float8out writes
  as float_json does in its fixed-notation range (|N| >= 10 since |x| * 10^5 > 10, so 1e-4 <=
  |N / 10^5| <= 1e10). One multiplication, floor, round and division: no numeric, no split.
  Otherwise (y a half-integer, where x * 10^5 may be a tie; 5e-6 <= |x| < 1e-4, where float8out
  writes `1e-05`; or extra_float_digits <= 0): the sign of x * 10^5 - h, exactly. Veltkamp's
  split with 2^12 + 1 writes x = xh + xl (exactly) with xh of 41 bits and xl of 12; 10^5 = 3125
  * 2^5 and 3125 has 12 bits, so a = xh * 1e5 and b = xl * 1e5 are exact doubles and x * 10^5
  = a + b. a - h is exact (Sterbenz: a lies in [h / 2, 2h], same sign) except where h = +-1/2
  and a is just past 2h, and there |a - h| is about 1/2 while |b| < 2^-39, so the sign is right
  anyway; fl((a - h) + b) has the sign of the exact sum (rounding keeps signs and never gives 0
  for a non-zero sum). N = round(h + sign / 4): f + 1 beyond h, f before it, and at h (a true
  tie) round's ties to even (rint). Written through numeric: CAST(float8 AS numeric) prints
  `%.15g` (15 significant digits whatever extra_float_digits is), and the double nearest N /
  10^5 (|N| <= 10^15) has only that decimal of at most 15 digits in its rounding interval
  (float_json's SQLite argument), so the text is N / 10^5, which numeric reads exactly (`1e-05`
  included) and writes in fixed notation, as JavaScript does from 1e-6. N is never 0 here.
  Every product has a factor > 1 and no input that could overflow (the CASE reaches them only
  for these magnitudes), so PostgreSQL's float8 underflow and overflow errors cannot occur.
  NULL from 1e10 on (N needs more than 15 digits; not a realistic cost), and for NaN and
  infinities.
- SQLite, 5e-6 <= |x| < 1e10: |N| >= 1. y = fl(|x| * 1e5), n0 = trunc(y) (exact, y < 2^50), h =
  n0 + 1/2 (exact), |N| is n0 or n0 + 1, decided by the sign of |x| * 10^5 - h, computed as
  above; a zero sum is a true tie: the even one of n0 and n0 + 1. Written with integers:
  printf('%d.%05d', |N| div 10^5, |N| mod 10^5) without trailing zeros, after the sign (|N| <
  10^15: the double nearest N / 10^5 has only that decimal of at most 15 digits in its rounding
  interval, so its shortest digits are N / 10^5's).
- SQLite, |x| >= 2^36: a double's spacing there is at least 2^-16 > 10^-5, so round(x, 5) is x
  itself: float_json(x) (NULL where it is: when x needs 16 or 17 digits). 1e10 <= |x| < 2^36
  (6.9e10): NULL.

Needs PostgreSQL 9.5 (width_bucket over an array) and SQLite 3.38 (sign from 3.35, json_quote
built in from 3.38); the arguments above are about SQLite 3.40's printing (`%!.15g`), and its
checks give NULL rather than wrong text if a later SQLite prints otherwise.

text_json(x): PostgreSQL `to_json(text)`, SQLite `json_quote(text)`: `"` and `\\` escaped with
a backslash, \\b \\f \\n \\r \\t, other controls below U+0020 as \\u00xx (lowercase), everything else
(DEL, non-ASCII, U+2028/U+2029, astral characters) as UTF-8, as orjson writes them (checked in
the tests for each class). NULL gives `null`.

bool_json(x): `true`, `false`, `null`.
"""

from __future__ import annotations

_DIALECTS = ("postgres", "sqlite")


def _check(dialect: str) -> bool:
    """True for PostgreSQL."""
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    return dialect == "postgres"


def _js_number(t: str) -> str:
    """SQLite: `t`, a non-zero finite double's shortest digits as `[-]d[.ddd][e±XX]` (no
    trailing zeros), in JavaScript's layout."""
    zeros = "'000000000000000000000'"  # 21: the most a layout below pads
    return (
        f"CASE WHEN instr({t}, 'e') = 0 THEN {t} ELSE (SELECT CASE"  # noqa: S608 (expressions, no values)
        " WHEN e < -6 OR e > 20 THEN m || 'e' || CASE WHEN e < 0 THEN '-' ELSE '+' END"
        " || CAST(abs(e) AS TEXT)"
        f" WHEN e < 0 THEN s || '0.' || substr({zeros}, 1, -e - 1) || d"
        f" WHEN length(d) <= e + 1 THEN s || d || substr({zeros}, 1, e + 1 - length(d))"
        " ELSE s || substr(d, 1, e + 1) || '.' || substr(d, e + 2) END"
        " FROM (SELECT m, e, CASE WHEN substr(m, 1, 1) = '-' THEN '-' ELSE '' END AS s,"
        " replace(replace(m, '-', ''), '.', '') AS d"
        f" FROM (SELECT substr({t}, 1, instr({t}, 'e') - 1) AS m,"
        f" CAST(substr({t}, instr({t}, 'e') + 1) AS INTEGER) AS e) AS jm) AS jd) END"
    )


# PostgreSQL: whether float8::text writes shortest round-trip digits (extra_float_digits > 0).
_SHORTEST_DIGITS = "CAST(current_setting('extra_float_digits') AS INTEGER) > 0"


def _f8(value: str) -> str:
    """A PostgreSQL double constant, typed when the statement is parsed (not converted from
    numeric at each planning)."""
    return f"CAST('{value}' AS double precision)"


_DBL_MAX = "1.7976931348623157e308"
_DBL_MIN_NORMAL = "2.2250738585072014e-308"


def float_json(expr: str, dialect: str) -> str:
    """The text jsonjs.dumps writes for the double `expr`; SQL NULL where it cannot tell.
    `expr` is repeated: pass a column (or a LATERAL's), not a computation."""
    if _check(dialect):
        x = f"CAST({expr} AS double precision)"
        text = f"CAST({x} AS TEXT)"
        # Buckets of |x|: 0 below 1e-6, 1 to 1e-4, 2 to 1e15 (fixed), 3 to 2^53, 4 the rest.
        bounds = "CAST('{1e-6,1e-4,1e15,9007199254740992}' AS double precision[])"
        return (
            f"CASE WHEN {x} IS NULL THEN 'null' WHEN {x} = {_f8('0')} THEN '0'"
            f" WHEN {_SHORTEST_DIGITS} THEN CASE width_bucket(abs({x}), {bounds})"
            f" WHEN 2 THEN {text} WHEN 0 THEN replace({text}, 'e-0', 'e-') WHEN 4 THEN NULL"
            f" ELSE CAST(CAST({text} AS numeric) AS TEXT) END END"
        )
    x = f"CAST({expr} AS REAL)"
    # Fixed notation (1e-4 <= |x| < 1e15): `%!.15g` always writes a point (3.0, 0.3, 100.0);
    # u is the text without trailing zeros but with its point, D * 10^-f its value. The point
    # and |D| < 10^15 are checked, not assumed: a later SQLite printing 17 digits (or no point)
    # gives NULL, not a wrong read-back.
    u = f"rtrim(CAST({x} AS TEXT), '0')"
    digits = f"CAST(replace({u}, '.', '') AS INTEGER)"
    fixed_value = f"{digits} / CAST('1e' || CAST(length({u}) - instr({u}, '.') AS TEXT) AS REAL)"
    return (
        f"CASE WHEN {x} IS NULL THEN 'null' WHEN {x} = 0 THEN '0'"
        f" WHEN abs({x}) >= 1e-4 AND abs({x}) < 1e15"
        f" THEN CASE WHEN instr({u}, '.') > 0 AND abs({digits}) < 1000000000000000"
        f" AND {fixed_value} = {x} THEN rtrim({u}, '.') END"
        f" WHEN abs({x}) >= {_DBL_MIN_NORMAL} AND abs({x}) <= {_DBL_MAX}"
        f" THEN {_sqlite_exponent(x)} END"
    )


def _sqlite_exponent(x: str) -> str:
    """float_json of SQLite's `%!.15g` text in exponent notation (e.g. 1.0e-05, 1.5e+300) or
    any other: m the mantissa without trailing zeros (and a bare point), e the exponent part;
    the text's value D * 10^p, D its digits as an integer, read back exactly. A subquery, run
    only for these rare magnitudes."""
    return (
        "(SELECT CASE WHEN p < -22 OR p > 22 OR dd >= 1e15 THEN NULL"  # noqa: S608 (expressions, no values)
        " WHEN (CASE WHEN p < 0 THEN dd / CAST('1e' || CAST(-p AS TEXT) AS REAL)"
        " ELSE dd * CAST('1e' || CAST(p AS TEXT) AS REAL) END) <> abs(v) THEN NULL"
        f" ELSE {_js_number('u')} END"
        " FROM (SELECT v, m || x AS u,"
        " CAST(CAST(replace(replace(m, '-', ''), '.', '') AS INTEGER) AS REAL) AS dd,"
        " CASE WHEN x = '' THEN 0 ELSE CAST(substr(x, 2) AS INTEGER) END"
        " - CASE WHEN instr(m, '.') = 0 THEN 0 ELSE length(m) - instr(m, '.') END AS p"
        " FROM (SELECT v, x, CASE WHEN instr(m, '.') = 0 THEN m"
        " ELSE rtrim(rtrim(m, '0'), '.') END AS m"
        " FROM (SELECT v,"
        " CASE WHEN instr(t, 'e') = 0 THEN t ELSE substr(t, 1, instr(t, 'e') - 1) END AS m,"
        " CASE WHEN instr(t, 'e') = 0 THEN '' ELSE substr(t, instr(t, 'e')) END AS x"
        f" FROM (SELECT {x} AS v, CAST({x} AS TEXT) AS t) AS jt) AS jm) AS jx) AS ju)"
    )


def money_json(expr: str, dialect: str) -> str:
    """The text jsonjs.dumps writes for money(x) = round(x, 5) of the double `expr`; SQL NULL
    where it cannot tell (NaN, infinities, from 1e10 on; SQLite: from 2^36 float_json's cases).
    `expr` is repeated: pass a column (or a LATERAL's), not a computation."""
    if _check(dialect):
        return _postgres_money_json(expr)
    return _sqlite_money_json(expr)


def _sqlite_money_json(expr: str, fast: bool = True) -> str:
    """money_json for SQLite; `fast=False` (tests) sends every value through the exact split."""
    x = f"CAST({expr} AS REAL)"
    ax = f"abs({x})"
    # n0 = trunc(|x| * 1e5), h = n0 + 0.5, r = |x| * 10^5 - h exactly signed (a + b - h).
    n0 = f"CAST({ax} * 100000.0 AS INTEGER)"
    t = f"({ax} * 4097.0)"
    xh = f"({t} - ({t} - {ax}))"
    r = f"(({xh} * 100000.0 - ({n0} + 0.5)) + ({ax} - {xh}) * 100000.0)"
    # |N|: n0, or n0 + 1 beyond h, or at h (a tie) the even one.
    n = f"({n0} + CASE sign({r}) WHEN 1 THEN 1 WHEN 0 THEN {n0} % 2 ELSE 0 END)"
    sign = f"CASE WHEN {x} < 0 THEN '-' ELSE '' END"

    def written(n: str) -> str:
        return f"{sign} || rtrim(rtrim(printf('%d.%05d', {n} / 100000, {n} % 100000), '0'), '.')"

    # The fast path, as on PostgreSQL: y = |x| * 1e5 (below 1e15, so y + 0.5 is exact) not a
    # half-integer has the exact product's nearest integer, floor(y + 0.5); the split above
    # only decides the half-integers (a fifth of the statement's time on a page before).
    y = f"({ax} * 100000.0)"
    nearest = f"CAST({y} + 0.5 AS INTEGER)"
    return (
        f"CASE WHEN {x} IS NULL THEN 'null'"
        f" WHEN {ax} < 5e-6 THEN '0'"
        f" WHEN {ax} < 1e10 THEN CASE WHEN {y} - CAST({y} AS INTEGER) <> 0.5"
        f" THEN {written(nearest) if fast else written(n)} ELSE {written(n)} END"
        f" WHEN {ax} >= 68719476736.0 THEN {float_json(expr, 'sqlite')} END"
    )


def _postgres_money_json(expr: str) -> str:
    """money_json for PostgreSQL (the module's docstring argues each branch)."""
    x = f"CAST({expr} AS double precision)"
    ax = f"abs({x})"
    scale = _f8("100000")
    y = f"({x} * {scale})"
    h = f"(floor({y}) + {_f8('0.5')})"
    t = f"({x} * {_f8('4097')})"
    xh = f"({t} - ({t} - {x}))"
    r = f"(({xh} * {scale} - {h}) + ({x} - {xh}) * {scale})"  # x * 10^5 - h, its sign exact
    n = f"round({h} + sign({r}) * {_f8('0.25')})"
    return (
        f"CASE WHEN {ax} < {_f8('5e-6')} THEN '0'"
        f" WHEN {ax} < {_f8('1e10')} THEN CASE WHEN {ax} >= {_f8('1e-4')}"
        f" AND {y} - floor({y}) <> {_f8('0.5')} AND {_SHORTEST_DIGITS}"
        f" THEN CAST(round({y}) / {scale} AS TEXT)"
        f" ELSE CAST(CAST({n} / {scale} AS numeric) AS TEXT) END"
        f" WHEN {x} IS NULL THEN 'null' END"
    )


def text_json(expr: str, dialect: str) -> str:
    """The text jsonjs.dumps (orjson) writes for the string `expr`."""
    if _check(dialect):
        return f"COALESCE(CAST(to_json(CAST({expr} AS TEXT)) AS TEXT), 'null')"
    return f"json_quote(CAST({expr} AS TEXT))"


def bool_json(expr: str, dialect: str) -> str:
    """`true`, `false` or `null` for the boolean `expr` (SQLite: an integer, 0 false)."""
    _check(dialect)
    return f"(CASE WHEN ({expr}) IS NULL THEN 'null' WHEN ({expr}) THEN 'true' ELSE 'false' END)"
