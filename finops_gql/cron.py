"""Translate a standard 5-field cron expression into arq's cron fields (pure, table-tested).

arq's cron() takes sets of ints per field and ANDs them, with weekday 0 = Monday. Cron's Sunday is 0
and 7, and when both day-of-month and day-of-week are restricted (neither starts with `*`) cron ORs
them: that becomes two arq schedules sharing one job id.
"""

from __future__ import annotations

from dataclasses import dataclass

from finops_gql.config import ConfigError

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ConfigError):
    """An invalid cron expression; the message names the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: list[str] | None = None
    name_base: int = 0


FIELDS = [
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day-of-week", 0, 7, DAYS, 0),
]


@dataclass(frozen=True)
class ArqSchedule:
    """Keyword arguments for one arq cron(); None means every value."""

    minute: frozenset[int] | None
    hour: frozenset[int] | None
    day: frozenset[int] | None
    month: frozenset[int] | None
    weekday: frozenset[int] | None


def _value(text: str, field: _Field) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not text.isdigit():
        raise CronError(f"{field.name} field: {text!r} is not a number or name")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name} field: {value} is outside {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> set[int] | None:
    """The set of values a field allows, or None for `*` (every value)."""
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field.name} field: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field.name} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            start, _, end = base.partition("-")
            low, high = _value(start, field), _value(end, field)
            if low > high:
                raise CronError(f"{field.name} field: range {base!r} runs backwards")
        else:
            low = _value(base, field)
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    return values


def parse_cron(expression: str) -> list[ArqSchedule]:
    """One arq schedule, or two when day-of-month and day-of-week are OR-ed."""
    text = MACROS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"COST_SYNC_CRON needs 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)} in {expression!r}"
        )
    minute, hour, dom, month, dow = (
        _parse_field(part, field) for part, field in zip(parts, FIELDS, strict=True)
    )
    # Cron's Sunday is 0 and 7; arq's Monday is 0.
    weekday = None if dow is None else frozenset((d - 1) % 7 for d in dow)
    day = None if dom is None else frozenset(dom)
    if day is not None and day == frozenset(range(1, 32)):
        day = None
    if weekday is not None and weekday == frozenset(range(7)):
        weekday = None

    def schedule(d: frozenset[int] | None, w: frozenset[int] | None) -> ArqSchedule:
        return ArqSchedule(
            minute=None if minute is None else frozenset(minute),
            hour=None if hour is None else frozenset(hour),
            day=d,
            month=None if month is None else frozenset(month),
            weekday=w,
        )

    # Vixie cron: the OR applies only when neither field starts with `*`.
    if parts[2].startswith("*") or parts[4].startswith("*"):
        return [schedule(day, weekday)]
    if day is None or weekday is None:  # one side already allows every day
        return [schedule(None, None)]
    return [schedule(day, None), schedule(None, weekday)]
