"""Cost anomalies: each component's newest days against its own trailing weeks, robustly.

For a day D of a component, the baseline is the `window_days` days before D (default 28: four
whole weeks, so every weekday weighs the same). Costs follow the week (batch jobs on Mondays,
quiet weekends), so the expected cost of D is the median of the baseline's days that fall on
D's weekday; with too little history for that (fewer than two of each weekday) it is the median
of the whole baseline. The spread is the median absolute deviation (MAD) of the baseline's
residuals (each day minus its own weekday's median), scaled by 1.4826 so it estimates a standard
deviation for normal noise while one spike in the baseline cannot inflate it. The score is
(actual - expected) / spread; D is an anomaly when |score| >= min_score AND the absolute change
is at least min_cost AND the relative change is at least min_change, so a component going from
3 cents to 9 never pages anyone. A perfectly flat or perfectly weekly baseline has MAD 0: the
spread is floored at 1% of the expected cost (and at 0.01), so the score stays finite.

The resource that drove it is the breakdown delta: each resource column's actual minus its own
expected value (the same weekday medians), the largest change in the anomaly's direction.

Reads go through the range engine (explorer.daily_sums), a bounded batch of components per
statement, never one statement per component.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median

from finops_gql.costs import explorer
from finops_gql.costs.explorer import COLUMNS, RESOURCES, TOTAL, Subject
from finops_gql.costs.windows import money
from finops_gql.db.models import Component
from finops_gql.db.setup import SqlParams, connection

MAD_SCALE = 1.4826  # MAD -> standard deviation under normal noise
# Components per statement: 500 components x 31 days is 15,500 rows, each statement bounded.
BATCH_COMPONENTS = 500
# The spread's floor, relative to the expected cost and absolute (a flat baseline has MAD 0).
MIN_SPREAD_RATIO = 0.01
MIN_SPREAD = 0.01
WEEK = 7
# Days of each weekday the baseline needs before the weekly profile is used.
MIN_PER_WEEKDAY = 2


@dataclass(frozen=True)
class AnomalySettings:
    """ANOMALY_* settings (config.py documents each)."""

    window_days: int = 28
    check_days: int = 3
    min_history_days: int = 14
    min_score: float = 3.5
    min_cost: float = 5.0
    min_change: float = 0.3


@dataclass(frozen=True)
class Anomaly:
    day: date
    actual: float
    expected: float
    score: float
    resource: str  # the API's resource name (cpu, memory, pv, ...) with the largest change
    resource_delta: float
    deltas: dict[str, float]  # every resource's actual - expected
    weekly: bool  # whether the weekday profile was used

    @property
    def change(self) -> float:
        return self.actual - self.expected

    def as_details(self) -> dict[str, object]:
        return {
            "day": self.day.isoformat(),
            "actual": money(self.actual),
            "expected": money(self.expected),
            "score": round(self.score, 3),
            "resource": self.resource,
            "resourceDelta": money(self.resource_delta),
            "deltas": {k: money(v) for k, v in self.deltas.items()},
            "weekly": self.weekly,
        }


def _mad(values: Sequence[float]) -> float:
    center = median(values)
    return median(abs(v - center) for v in values)


@dataclass(frozen=True)
class Score:
    """A day judged anomalous on its total; `attribute` adds the resource that drove it."""

    day: date
    actual: float
    expected: float
    score: float
    weekly: bool


def _baseline(days: Mapping[date, object], day: date, window_days: int) -> list[date]:
    return [d for i in range(1, window_days + 1) if (d := day - timedelta(days=i)) in days]


def _weekly(baseline: Sequence[date]) -> bool:
    """Whether the baseline has at least MIN_PER_WEEKDAY days of every weekday."""
    counts = [0] * WEEK
    for d in baseline:
        counts[d.weekday()] += 1
    return min(counts) >= MIN_PER_WEEKDAY


def _expected(
    values: Mapping[date, float], baseline: Sequence[date], weekday: int, weekly: bool
) -> float:
    """The median of the baseline's days on `weekday` (weekly) or of all of them."""
    return median(values[d] for d in baseline if not weekly or d.weekday() == weekday)


def score_day(totals: Mapping[date, float], day: date, settings: AnomalySettings) -> Score | None:
    """Whether `day` (which must be in `totals`) is an anomaly against the days before it.

    `totals` maps a day to its total cost; days without records are absent (no record is no
    data, not a zero). The cheap gates (history, minimum cost and change) come before the MAD."""
    baseline = _baseline(totals, day, settings.window_days)
    if len(baseline) < settings.min_history_days:
        return None
    weekly = _weekly(baseline)
    # The day's own expected cost first: most days fail the cheap gates and stop here.
    expected = _expected(totals, baseline, day.weekday(), weekly)
    actual = totals[day]
    change = actual - expected
    if abs(change) < settings.min_cost:
        return None
    if expected > 0 and abs(change) / expected < settings.min_change:
        return None
    weekdays = {d.weekday() for d in baseline} if weekly else {day.weekday()}
    profile = {w: _expected(totals, baseline, w, weekly) for w in weekdays}
    residuals = [totals[d] - profile[d.weekday() if weekly else day.weekday()] for d in baseline]
    spread = max(MAD_SCALE * _mad(residuals), MIN_SPREAD_RATIO * abs(expected), MIN_SPREAD)
    score = change / spread
    if abs(score) < settings.min_score:
        return None
    return Score(day, actual, expected, score, weekly)


def attribute(
    days: Mapping[date, Sequence[float]], found: Score, settings: AnomalySettings
) -> Anomaly:
    """The breakdown delta of a scored day: each resource's actual minus its own expected value
    (the same medians), and the resource with the largest change in the anomaly's direction."""
    baseline = _baseline(days, found.day, settings.window_days)
    deltas = {}
    for column, name in RESOURCES.items():
        i = COLUMNS.index(column)
        values = {d: days[d][i] for d in baseline}
        expected = _expected(values, baseline, found.day.weekday(), found.weekly)
        deltas[name] = days[found.day][i] - expected
    direction = 1.0 if found.actual >= found.expected else -1.0
    resource = max(deltas, key=lambda name: deltas[name] * direction)
    return Anomaly(
        day=found.day,
        actual=found.actual,
        expected=found.expected,
        score=found.score,
        resource=resource,
        resource_delta=deltas[resource],
        deltas=deltas,
        weekly=found.weekly,
    )


def detect(
    days: Mapping[date, Sequence[float]], day: date, settings: AnomalySettings
) -> Anomaly | None:
    """score_day on the totals of `days` (sums in explorer.COLUMNS order), then attribute."""
    found = score_day({d: row[TOTAL] for d, row in days.items()}, day, settings)
    return attribute(days, found, settings) if found is not None else None


@dataclass(frozen=True)
class ComponentAnomaly:
    component_id: uuid.UUID
    name: str
    team_id: uuid.UUID
    anomaly: Anomaly


# A component's daily totals over the days judged and their baselines: the largest change any
# of its days can show against any baseline's median is their spread (max - min). The slack
# (relative to the totals' size) keeps rounding differences between SQL's sums and the
# range engine's on the side of judging a component.
_SPREAD = (
    "SELECT component_id FROM (SELECT component_id, day, SUM(total_cost) AS total "
    "FROM cost_record WHERE day >= {first} AND day <= {last} GROUP BY component_id, day) AS d "
    "GROUP BY component_id HAVING MAX(total) - MIN(total) "
    "+ 1e-9 * (ABS(MAX(total)) + ABS(MIN(total)) + 1) >= {min_cost}"
)


async def _may_change_enough(first: date, last: date, min_cost: float) -> set[str]:
    """The components whose daily totals over first..last spread at least `min_cost`: the
    only ones that can have an anomaly (`min_cost` is a gate of score_day, and a day's expected
    cost is a median of days in the same range). One statement, one row per such component."""
    p = SqlParams()
    sql = _SPREAD.format(first=p.day(first), last=p.day(last), min_cost=p(min_cost))
    return {
        str(uuid.UUID(str(row["component_id"])))
        for row in await connection().execute_query_dict(sql, p.values)
    }


async def find_anomalies(
    last_day: date,
    settings: AnomalySettings,
    batch: int = BATCH_COMPONENTS,
    *,
    prefilter: bool = True,
) -> list[ComponentAnomaly]:
    """Anomalies on the `check_days` days ending `last_day` (the newest complete day), for
    every component: per `batch` components, one range-engine statement for their daily
    totals, and one for the breakdowns of those with an anomaly (usually none).

    `prefilter` (the default) first leaves out, in one statement, the components whose days
    cannot change by `min_cost` (_may_change_enough): most of a catalog on a quiet day, whose
    days are then neither read into Python nor scored. The anomalies are the same."""
    first_checked = last_day - timedelta(days=settings.check_days - 1)
    first = first_checked - timedelta(days=settings.window_days)
    checked = [first_checked + timedelta(days=i) for i in range(settings.check_days)]
    components = await Component.all().order_by("id").values_list("id", "name", "team_id")
    if prefilter:
        judged = await _may_change_enough(first, last_day, settings.min_cost)
        components = [c for c in components if str(uuid.UUID(str(c[0]))) in judged]
    found: list[ComponentAnomaly] = []
    for start in range(0, len(components), batch):
        chunk = {uuid.UUID(str(c[0])): c for c in components[start : start + batch]}
        totals = await explorer.daily_sums(
            Subject.COMPONENT, list(chunk), first, last_day, columns=("total_cost",)
        )
        scored: dict[uuid.UUID, list[Score]] = {}
        for component_id in chunk:
            days = {d: row[0] for d, row in totals.get(str(component_id), {}).items()}
            for day in checked:
                if day in days and (score := score_day(days, day, settings)) is not None:
                    scored.setdefault(component_id, []).append(score)
        if not scored:
            continue
        rows = await explorer.daily_sums(Subject.COMPONENT, list(scored), first, last_day)
        for component_id, scores in scored.items():
            _, name, team_id = chunk[component_id]
            for score in scores:
                anomaly = attribute(rows[str(component_id)], score, settings)
                found.append(
                    ComponentAnomaly(component_id, str(name), uuid.UUID(str(team_id)), anomaly)
                )
    return found
