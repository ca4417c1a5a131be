"""SQL expressions that write a value's JSON text byte for byte as `jsonjs.dumps` writes it.

Each function takes an SQL expression (`c.cost_30d`) and a dialect (`db.setup.dialect()`:
"postgres" or "sqlite") and returns an expression of type text, for JSON built by the database
and spliced into an answer as it is. SQL NULL input gives the text `null`. Where the expression
cannot be sure of jsonjs's bytes it gives SQL NULL instead (not the text `null`): the caller joins
pieces with `||`, so the whole row is NULL and the caller writes that page in Python.

Intermediate values are named in scalar subqueries over no table (`(SELECT ... FROM (SELECT x
AS v) s)`): evaluated once per row, no table read, and no sub-expression written twice.

float_json(x): the text of JavaScript's Number#toString, which jsonjs writes for every finite
double (`2` not `2.0`, `0.00001` not `1e-05`, `1e-7`, `1e+21`, `-0` as `0`). Both databases
first print a decimal `d.ddd` or `d.ddde±XX`, exponent notation exactly when the decimal exponent
E is < -4 or >= 15; the shortest-digit decimal is then rewritten in JavaScript's layout (fixed
for -7 < E < 21, else `d.ddde-7` / `d.ddde+21` with no leading exponent zeros). Exact because:
- PostgreSQL: `float8::text` is Ryu's shortest round-trip digits (the closest of them to x, as
  Python's repr and orjson choose) when extra_float_digits > 0 (the default 1). With
  extra_float_digits <= 0 it prints `%.15g` or fewer digits: NULL. PostgreSQL's Ryu never takes
  a bound of x's rounding interval as the digits, where Python's repr does when x's mantissa is
  even (a bound reads back as x, ties to even): 2.5e22 prints 2.4999999999999998e+22. Below 2^53
  a bound has at least 17 significant digits (n + 1/2 in [2^52, 2^53), longer below), never
  fewer than the shortest digits inside, so the two agree; |x| >= 2^53: NULL. NaN and
  infinities: NULL (jsonjs writes `null` for them, but the Python path decides that). 0 and -0:
  `0`.
- SQLite: `CAST(x AS TEXT)` prints `%!.15g`: 15 significant digits. A normal double's rounding
  interval (width at most 2^-52 of x) holds at most one decimal of at most 15 digits (their
  spacing is at least 10^-15 of x), so when the text's value D * 10^p reads back as x it is the
  only such decimal that does, i.e. the shortest round-trip digits (trailing zeros trimmed). The
  read-back is computed, not CAST: SQLite 3.40's text-to-double conversion (long double
  arithmetic) is not correctly rounded (8.379259238982531 prints 8.37925923898253, which CAST
  reads back as x, while the correctly rounded double of that text is another). D < 10^15 <
  2^53 and 10^|p| with |p| <= 22 are exact doubles, so one IEEE multiplication or division
  rounds D * 10^p correctly (Clinger's fast path). NULL: text that does not read back (x needs
  16 or 17 digits, e.g. 0.30000000000000004), |p| > 22 (below about 1e-8 with 15 digits, or
  from 1e23), subnormals (wider intervals: 5e-324 prints 4.94065645841247e-324) and infinities.
  SQLite stores NaN as NULL: `null`, as the driver reads it.

money_json(x): the text of jsonjs.dumps(round(x, 5)). round(x, 5) is the double nearest to
N / 10^5, N the integer nearest to the exact x * 10^5, ties to even (CPython rounds the exact
binary value). The expression computes N exactly in double arithmetic (IEEE, round to nearest;
PostgreSQL and SQLite on SSE2) and writes N / 10^5 with integer arithmetic:
- |x| < 4e-6: |x * 10^5| < 0.4, N = 0: `0` (zero and -0 included; never NULL).
- 4e-6 <= |x| < 1e10: y = fl(x * 1e5), n0 = trunc(y) (exact, |y| < 2^50), h = n0 + 0.5 (or
  n0 - 0.5 for y < 0; exact). The exact product is within half an ulp (<= 2^-4) of y, so N is n0
  or its neighbour away from zero, decided by the sign of x * 10^5 - h. That sign is exact:
  Veltkamp's split with 2^12 + 1 writes x = xh + xl (exactly) with xh of 41 bits and xl of 12;
  10^5 = 3125 * 2^5 and 3125 has 12 bits, so a = xh * 1e5 and b = xl * 1e5 are exact doubles
  and x * 10^5 = a + b exactly. a - h is exact (Sterbenz: a is within a factor 2 of h whenever
  n0 != 0; when n0 = 0 and a < h / 2, a - h <= -1/4 and |b| < 2^-40 so the sign is right
  anyway), and fl((a - h) + b) has the sign of the exact sum (rounding keeps signs and never
  gives 0 for a non-zero sum). A zero sum is a true tie: the even one of n0 and its neighbour.
  Every product has a factor > 1 and no input that could overflow, so PostgreSQL's float8
  underflow and overflow errors cannot occur. |N| < 10^15: the double nearest N / 10^5 has at
  most 15 significant digits of N / 10^5 in its rounding interval and only that decimal (the
  argument of float_json's SQLite case), so its shortest digits are N / 10^5's:
  `[-]q[.rrrrr]`, trailing zeros dropped (|N| / 10^5 >= 10^-5, so always fixed notation).
- |x| >= 2^36: a double's spacing there is at least 2^-16 > 10^-5, so round(x, 5) is x
  itself: float_json(x) (NULL where it is: NaN, infinities, PostgreSQL from 2^53, SQLite when x
  needs 16 or 17 digits).
- 1e10 <= |x| < 2^36 (6.9e10): NULL (N needs more than 15 digits; not a realistic cost).

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


def _double(value: str, postgres: bool) -> str:
    """A double precision literal (PostgreSQL reads `1.5` as numeric)."""
    return f"CAST({value} AS double precision)" if postgres else value


def _js_number(t: str, postgres: bool) -> str:
    """`t`, a non-zero finite double's shortest digits as `[-]d[.ddd][e±XX]` (exponent only
    when E < -4 or E >= 15, no trailing zeros), in JavaScript's layout."""
    find = "strpos" if postgres else "instr"
    zeros = "'000000000000000000000'"  # 21: the most a layout below pads
    return (
        f"CASE WHEN {find}({t}, 'e') = 0 THEN {t} ELSE (SELECT CASE"  # noqa: S608 (expressions, no values)
        " WHEN e < -6 OR e > 20 THEN m || 'e' || CASE WHEN e < 0 THEN '-' ELSE '+' END"
        " || CAST(abs(e) AS TEXT)"
        f" WHEN e < 0 THEN s || '0.' || substr({zeros}, 1, -e - 1) || d"
        f" WHEN length(d) <= e + 1 THEN s || d || substr({zeros}, 1, e + 1 - length(d))"
        " ELSE s || substr(d, 1, e + 1) || '.' || substr(d, e + 2) END"
        " FROM (SELECT m, e, CASE WHEN substr(m, 1, 1) = '-' THEN '-' ELSE '' END AS s,"
        " replace(replace(m, '-', ''), '.', '') AS d"
        f" FROM (SELECT substr({t}, 1, {find}({t}, 'e') - 1) AS m,"
        f" CAST(substr({t}, {find}({t}, 'e') + 1) AS INTEGER) AS e) AS jm) AS jd) END"
    )


_DBL_MAX = "1.7976931348623157e308"
_DBL_MIN_NORMAL = "2.2250738585072014e-308"


def float_json(expr: str, dialect: str) -> str:
    """The text jsonjs.dumps writes for the double `expr`; SQL NULL where it cannot tell."""
    if _check(dialect):
        exact = f"abs(v) < {_double('9007199254740992.0', True)}"
        return (
            "(SELECT CASE WHEN v IS NULL THEN 'null' WHEN v = 0 THEN '0'"  # noqa: S608 (expressions, no values)
            " WHEN CAST(current_setting('extra_float_digits') AS INTEGER) <= 0"
            f" OR NOT ({exact}) THEN NULL"
            f" ELSE {_js_number('t', True)} END"
            f" FROM (SELECT v, CAST(v AS TEXT) AS t"
            f" FROM (SELECT CAST({expr} AS double precision) AS v) AS jv) AS jt)"
        )
    # SQLite: `%!.15g` text, e.g. 3.0, 0.3, 1.0e-05, 1.5e+300: m the mantissa without its
    # trailing zeros (and a bare point), x the exponent part; the text's value is D * 10^p,
    # D its digits as an integer, read back exactly (see the module's docstring).
    return (
        "(SELECT CASE WHEN v IS NULL THEN 'null' WHEN v = 0 THEN '0'"  # noqa: S608 (expressions, no values)
        f" WHEN NOT (abs(v) >= {_DBL_MIN_NORMAL} AND abs(v) <= {_DBL_MAX})"
        " OR p < -22 OR p > 22 THEN NULL"
        " WHEN (CASE WHEN p < 0 THEN dd / CAST('1e' || CAST(-p AS TEXT) AS REAL)"
        " ELSE dd * CAST('1e' || CAST(p AS TEXT) AS REAL) END) <> abs(v) THEN NULL"
        f" ELSE {_js_number('u', False)} END"
        " FROM (SELECT v, m || x AS u,"
        " CAST(CAST(replace(replace(m, '-', ''), '.', '') AS INTEGER) AS REAL) AS dd,"
        " CASE WHEN x = '' THEN 0 ELSE CAST(substr(x, 2) AS INTEGER) END"
        " - CASE WHEN instr(m, '.') = 0 THEN 0 ELSE length(m) - instr(m, '.') END AS p"
        " FROM (SELECT v, x, CASE WHEN instr(m, '.') = 0 THEN m"
        " ELSE rtrim(rtrim(m, '0'), '.') END AS m"
        " FROM (SELECT v,"
        " CASE WHEN instr(t, 'e') = 0 THEN t ELSE substr(t, 1, instr(t, 'e') - 1) END AS m,"
        " CASE WHEN instr(t, 'e') = 0 THEN '' ELSE substr(t, instr(t, 'e')) END AS x"
        " FROM (SELECT v, CAST(v AS TEXT) AS t"
        f" FROM (SELECT CAST({expr} AS REAL) AS v) AS jv) AS jt) AS jm) AS jx) AS ju)"
    )


def money_json(expr: str, dialect: str) -> str:
    """The text jsonjs.dumps writes for money(x) = round(x, 5) of the double `expr`; SQL NULL
    where it cannot tell (NaN, infinities, 1e10 <= |x| < 2^36, and float_json's cases)."""
    pg = _check(dialect)

    def d(value: str) -> str:
        return _double(value, pg)

    big = "bigint" if pg else "INTEGER"
    trunc = "trunc(y)" if pg else "CAST(CAST(y AS INTEGER) AS REAL)"
    scale = d("100000.0")
    half = d("0.5")
    exact = f"abs(v) >= {d('4e-6')} AND abs(v) < {d('1e10')}"
    # N as text: sign, |N| div 10^5, and the five decimals without their trailing zeros.
    written = (
        "CASE WHEN n < 0 THEN '-' ELSE '' END || CAST(abs(n) / 100000 AS TEXT)"
        " || CASE WHEN abs(n) % 100000 = 0 THEN ''"
        " ELSE '.' || rtrim(substr(CAST(100000 + abs(n) % 100000 AS TEXT), 2), '0') END"
    )
    # n0 + the step away from zero when the exact product is beyond h (or at h with n0 odd).
    step = (
        "CASE WHEN y > 0 THEN (CASE WHEN r > 0 OR (r = 0 AND i % 2 <> 0) THEN 1 ELSE 0 END)"
        " ELSE (CASE WHEN r < 0 OR (r = 0 AND i % 2 <> 0) THEN -1 ELSE 0 END) END"
    )
    return (
        "(SELECT CASE WHEN v IS NULL THEN 'null'"  # noqa: S608 (expressions, no values)
        f" WHEN abs(v) < {d('4e-6')} THEN '0'"
        f" WHEN {exact} THEN {written}"
        f" WHEN abs(v) >= {d('68719476736.0')} THEN {float_json('v', dialect)}"
        " ELSE NULL END"
        f" FROM (SELECT v, i + {step} AS n"
        f" FROM (SELECT v, y, i, (a - h) + b AS r"
        f" FROM (SELECT v, y, i, xh * {scale} AS a, (w - xh) * {scale} AS b,"
        f" CASE WHEN y > 0 THEN n0 + {half} ELSE n0 - {half} END AS h"
        f" FROM (SELECT v, w, y, n0, CAST(n0 AS {big}) AS i, t - (t - w) AS xh"
        f" FROM (SELECT v, w, y, {trunc} AS n0, w * {d('4097.0')} AS t"
        f" FROM (SELECT v, w, w * {scale} AS y"
        f" FROM (SELECT v, CASE WHEN {exact} THEN v END AS w"
        f" FROM (SELECT CAST({expr} AS {'double precision' if pg else 'REAL'}) AS v) AS jv)"
        " AS jw) AS jy) AS jn) AS js) AS jh) AS jr) AS jN)"
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
