"""Daily cost forecasts: pure Python (no numpy), deterministic, no clock and no I/O.

The method, for a daily cost series with at least MIN_HISTORY_DAYS days: ordinary least squares
on an intercept, a linear trend and six day-of-week indicators (Monday is the baseline), fitted
on the last HISTORY_DAYS days at most. Cost series are short, have a weekly cycle (weekday load,
weekend batch jobs) and drift slowly; this model has eight parameters, a closed-form fit, and an
exact prediction interval under its assumptions:

    expected = x0 . b,   se = s * sqrt(1 + x0' (X'X)^-1 x0),   interval = expected +- t * se

with s^2 the residual variance (n - 8 degrees of freedom) and t Student's quantile for the stated
coverage. The x0' (X'X)^-1 x0 term grows with the square of the distance from the fitted days, so
the interval widens with the horizon. Costs are never negative: expected and bounds are clamped
at 0.

With fewer than MIN_HISTORY_DAYS days (two of each weekday) the weekly effects cannot be told
from noise: the forecast falls back to the mean of the days there are, flat, with a deliberately
wide interval (the larger of the sample deviation and half the mean), and says so (`fallback`).
Without any day of history every point is 0.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

from finops_gql.costs.windows import money
from finops_gql.errors import InvalidInput

INTERVAL = 0.8  # coverage of the [lower, upper] interval
MIN_HISTORY_DAYS = 14
HISTORY_DAYS = 56  # at most 8 weeks of history are fitted: older regimes would bias the trend
MAX_DAYS = 90
# Weekday effects (Tuesday..Sunday against Monday), trend and intercept.
PARAMETERS = 8
# A fallback interval is at least this share of the mean either side of it, before the quantile.
FALLBACK_SPREAD = 0.5


class Method(enum.Enum):
    TREND_WEEKLY = "TREND_WEEKLY"  # OLS: intercept, linear trend, day of week
    MEAN = "MEAN"  # fallback: fewer than MIN_HISTORY_DAYS days of history
    NO_DATA = "NO_DATA"  # fallback: no history at all, zeros


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    day: date
    expected: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Forecast:
    method: Method
    interval: float
    history_days: int
    points: list[ForecastPoint]

    @property
    def fallback(self) -> bool:
        return self.method is not Method.TREND_WEEKLY

    @property
    def expected_total(self) -> float:
        return sum(p.expected for p in self.points)


def check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, got {days}")
    return days


def history_range(today: date) -> tuple[date, date]:
    """The days a forecast reads on `today`: the HISTORY_DAYS complete days before it (they hold
    every budget period's spent days too)."""
    last = today - timedelta(days=1)
    return last - timedelta(days=HISTORY_DAYS - 1), last


def observed(days: dict[date, float], last: date, history_days: int = HISTORY_DAYS) -> list[float]:
    """The series to fit: from the first day with a record (within `history_days` ending `last`)
    to `last`, a day without a record counting 0 (the subject existed and cost nothing)."""
    start = last - timedelta(days=history_days - 1)
    recorded = [d for d in days if start <= d <= last]
    if not recorded:
        return []
    first = min(recorded)
    return [days.get(first + timedelta(days=i), 0.0) for i in range((last - first).days + 1)]


def student_t(probability: float, df: int) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal quantile (error
    below 0.01 from 5 degrees of freedom; the fit has at least 6)."""
    z = NormalDist().inv_cdf(probability)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _inverse(matrix: list[list[float]]) -> list[list[float]] | None:
    """Gauss-Jordan with partial pivoting; None when singular."""
    n = len(matrix)
    a = [row[:] + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        scale = a[col][col]
        a[col] = [v / scale for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0.0:
                factor = a[r][col]
                a[r] = [v - factor * p for v, p in zip(a[r], a[col], strict=True)]
    return [row[n:] for row in a]


def _row(day: date, t: float) -> list[float]:
    weekday = day.weekday()
    return [1.0, t, *(1.0 if weekday == d else 0.0 for d in range(1, 7))]


def _clamped(day: date, centre: float, half_width: float) -> ForecastPoint:
    return ForecastPoint(
        day,
        money(max(centre, 0.0)),
        money(max(centre - half_width, 0.0)),
        money(max(centre + half_width, 0.0)),
    )


def forecast(
    history: Sequence[float], last: date, days: int, interval: float = INTERVAL
) -> Forecast:
    """`days` daily points from the day after `last`, from `history` (consecutive daily costs
    ending on `last`, oldest first; only the newest HISTORY_DAYS are used)."""
    check_days(days)
    values = [float(v) for v in history[-HISTORY_DAYS:]]
    n = len(values)
    ahead = [last + timedelta(days=h) for h in range(1, days + 1)]
    if n == 0:
        points = [ForecastPoint(d, 0.0, 0.0, 0.0) for d in ahead]
        return Forecast(Method.NO_DATA, interval, 0, points)
    quantile = (1 + interval) / 2
    if n < MIN_HISTORY_DAYS:
        mean = sum(values) / n
        deviation = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        spread = max(deviation, FALLBACK_SPREAD * mean)
        half = NormalDist().inv_cdf(quantile) * spread * math.sqrt(1 + 1 / n)
        return Forecast(Method.MEAN, interval, n, [_clamped(d, mean, half) for d in ahead])
    first = last - timedelta(days=n - 1)
    # Time in units of the fitted span, centred: keeps X'X well conditioned.
    centre = (n - 1) / 2

    def scaled(i: int) -> float:
        return (i - centre) / n

    rows = [_row(first + timedelta(days=i), scaled(i)) for i in range(n)]
    xtx = [[0.0] * PARAMETERS for _ in range(PARAMETERS)]
    xty = [0.0] * PARAMETERS
    for r, y in zip(rows, values, strict=True):
        # A row has at most three non-zero entries: intercept, trend, its weekday.
        used = [(i, x) for i, x in enumerate(r) if x]
        for i, xi in used:
            xty[i] += xi * y
            for j, xj in used:
                xtx[i][j] += xi * xj
    inverse = _inverse(xtx)
    assert inverse is not None  # >= 14 consecutive days: every weekday twice, full rank
    beta = [sum(inverse[i][j] * xty[j] for j in range(PARAMETERS)) for i in range(PARAMETERS)]

    def fitted(row: list[float]) -> float:
        return sum(b * x for b, x in zip(beta, row, strict=True))

    df = n - PARAMETERS
    sse = sum((y - fitted(r)) ** 2 for r, y in zip(rows, values, strict=True))
    s = math.sqrt(sse / df)
    t = student_t(quantile, df)
    points = []
    for h, day in enumerate(ahead, start=1):
        x0 = _row(day, scaled(n - 1 + h))
        used = [(i, x) for i, x in enumerate(x0) if x]
        leverage = sum(xi * inverse[i][j] * xj for i, xi in used for j, xj in used)
        points.append(_clamped(day, fitted(x0), t * s * math.sqrt(1 + leverage)))
    return Forecast(Method.TREND_WEEKLY, interval, n, points)
