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


def detect(
    days: Mapping[date, Sequence[float]], day: date, settings: AnomalySettings
) -> Anomaly | None:
    """Whether `day` (which must be in `days`) is an anomaly against the days before it.

    `days` maps a day to its sums in explorer.COLUMNS order; days without records are absent
    (no record is no data, not a zero)."""
    actual_row = days[day]
    baseline = [
        (d, days[d])
        for offset in range(1, settings.window_days + 1)
        if (d := day - timedelta(days=offset)) in days
    ]
    if len(baseline) < settings.min_history_days:
        return None
    by_weekday: dict[int, list[Sequence[float]]] = {}
    for d, row in baseline:
        by_weekday.setdefault(d.weekday(), []).append(row)
    weekly = len(by_weekday) == WEEK and all(
        len(rows) >= MIN_PER_WEEKDAY for rows in by_weekday.values()
    )

    def expected_of(weekday: int) -> list[float]:
        rows = by_weekday[weekday] if weekly else [row for _, row in baseline]
        return [median(row[i] for row in rows) for i in range(len(COLUMNS))]

    profile = {w: expected_of(w) for w in (by_weekday if weekly else (day.weekday(),))}
    expected_row = profile[day.weekday()]
    residuals = [
        row[TOTAL] - profile[d.weekday() if weekly else day.weekday()][TOTAL] for d, row in baseline
    ]
    expected = expected_row[TOTAL]
    actual = actual_row[TOTAL]
    change = actual - expected
    spread = max(MAD_SCALE * _mad(residuals), MIN_SPREAD_RATIO * abs(expected), MIN_SPREAD)
    score = change / spread
    if abs(score) < settings.min_score or abs(change) < settings.min_cost:
        return None
    if expected > 0 and abs(change) / expected < settings.min_change:
        return None
    deltas = {
        name: actual_row[COLUMNS.index(column)] - expected_row[COLUMNS.index(column)]
        for column, name in RESOURCES.items()
    }
    direction = 1.0 if change >= 0 else -1.0
    resource = max(deltas, key=lambda name: deltas[name] * direction)
    return Anomaly(
        day=day,
        actual=actual,
        expected=expected,
        score=score,
        resource=resource,
        resource_delta=deltas[resource],
        deltas=deltas,
        weekly=weekly,
    )


@dataclass(frozen=True)
class ComponentAnomaly:
    component_id: uuid.UUID
    name: str
    team_id: uuid.UUID
    anomaly: Anomaly


async def find_anomalies(
    last_day: date, settings: AnomalySettings, batch: int = BATCH_COMPONENTS
) -> list[ComponentAnomaly]:
    """Anomalies on the `check_days` days ending `last_day` (the newest complete day), for
    every component: one range-engine statement per `batch` components."""
    first_checked = last_day - timedelta(days=settings.check_days - 1)
    first = first_checked - timedelta(days=settings.window_days)
    components = await Component.all().order_by("id").values_list("id", "name", "team_id")
    found: list[ComponentAnomaly] = []
    for start in range(0, len(components), batch):
        chunk = components[start : start + batch]
        ids = [uuid.UUID(str(c[0])) for c in chunk]
        sums = await explorer.daily_sums(Subject.COMPONENT, ids, first, last_day)
        for (_, name, team_id), component_id in zip(chunk, ids, strict=True):
            days = sums.get(str(component_id))
            if not days:
                continue
            for offset in range(settings.check_days):
                day = first_checked + timedelta(days=offset)
                if day not in days:
                    continue
                anomaly = detect(days, day, settings)
                if anomaly is not None:
                    found.append(
                        ComponentAnomaly(component_id, str(name), uuid.UUID(str(team_id)), anomaly)
                    )
    return found
