"""Redis pub/sub channels: what the worker (and API replicas) announce, and what GraphQL
subscriptions and other consumers listen to. Every message is one JSON object (UTF-8).

This module is the contract between publishers and consumers: each channel's payload is described
here, and the parsers below are what the API's subscriptions accept. A message a parser refuses is
logged and skipped by the relay (finops_gql/eventhub.py), never delivered half-read.

BUDGET_CHANNEL (`finops_gql:budget_exceeded`, kept for current consumers), one message per
component over its budget after each sync (costs/sync.py)::

    {"componentId": "<uuid>", "name": "checkout", "cost30d": 71.3, "budgetUsd": 50.0,
     "currency": "USD"}

ALERTS_CHANNEL (`finops_gql:alerts`), one message when an alert is created ("raised") or when its
status changes ("changed": acknowledged, snoozed, reopened, resolved)::

    {"event": "raised" | "changed",
     "alert": {
        "id": "<alert id, a string>",                      required
        "kind": "BUDGET_THRESHOLD" | "BUDGET_FORECAST" | "COST_ANOMALY" | "SYNC_FAILED",
                                                           required (a string, passed through)
        "status": "OPEN" | "ACKNOWLEDGED" | "SNOOZED" | "RESOLVED",
                                                           required (a string, passed through)
        "teamId": "<team uuid>" | null,                    the owning team (null: platform-wide,
                                                           e.g. SYNC_FAILED); absent = null
        "componentId": "<component uuid>" | null,          absent = null
        "title": "checkout is at 82% of its budget",       optional, null when absent
        "raisedAt": "2026-05-02T03:00:12Z"                 optional, ISO 8601 with an offset
     }}

    Other keys in "alert" are ignored, so publishers may add fields; `subscription alertRaised`
    and `alertChanged` expose exactly the ones above (graphql/live.py, AlertEvent).

SYNC_FINISHED_CHANNEL (`finops_gql:sync_finished`), one message at the end of every sync run that
created a SyncRun row, whatever its outcome (costs/sync.py)::

    {"syncRunId": 42, "status": "succeeded" | "partial" | "failed",
     "trigger": "cron" | "manual" | "cli",
     "startedAt": "2026-05-02T03:00:00+00:00", "finishedAt": "2026-05-02T03:00:12+00:00",
     "days": 1, "components": 120, "records": 120, "opencostRequests": 2,
     "failedAggregates": 0, "error": null}

    `failedAggregates` is a count (the run's list is on `syncRuns`); `error` is the run's summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

# The names below are the channels' names under the default REDIS_CHANNEL_PREFIX; another prefix
# replaces their `finops_gql` part on the wire (see on_wire), because Redis pub/sub ignores the
# database number: two deployments sharing one Redis server would otherwise hear each other.
DEFAULT_CHANNEL_PREFIX = "finops_gql"
BUDGET_CHANNEL = "finops_gql:budget_exceeded"
ALERTS_CHANNEL = "finops_gql:alerts"
SYNC_FINISHED_CHANNEL = "finops_gql:sync_finished"

ALERT_EVENTS = ("raised", "changed")


def on_wire(channel: str, prefix: str) -> str:
    """The Redis channel a logical channel (one of the constants above) uses under `prefix`."""
    return prefix + channel.removeprefix(DEFAULT_CHANNEL_PREFIX)


SYNC_STATUSES = ("succeeded", "partial", "failed")


class BadEvent(ValueError):
    """A message that does not follow its channel's contract."""


def _string(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadEvent(f"{key} must be a non-empty string, got {value!r}")
    return value


def _uuid(data: Mapping[str, Any], key: str) -> str | None:
    text = _string(data, key, required=False)
    if text is None:
        return None
    try:
        return str(UUID(text))  # one spelling, so filters compare equal
    except ValueError:
        raise BadEvent(f"{key} must be a UUID, got {text!r}") from None


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadEvent(f"{key} must be an integer, got {value!r}")
    return value


def _time(data: Mapping[str, Any], key: str, *, required: bool = True) -> datetime | None:
    text = _string(data, key, required=required)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadEvent(f"{key} must be an ISO 8601 time, got {text!r}") from None
    if value.tzinfo is None:
        raise BadEvent(f"{key} must carry a UTC offset, got {text!r}")
    return value


@dataclass(frozen=True)
class AlertMessage:
    event: str  # raised | changed
    id: str
    kind: str
    status: str
    team_id: str | None
    component_id: str | None
    title: str | None
    raised_at: datetime | None


def parse_alert(data: Mapping[str, Any]) -> AlertMessage:
    event = data.get("event")
    if event not in ALERT_EVENTS:
        raise BadEvent(f"event must be one of {', '.join(ALERT_EVENTS)}, got {event!r}")
    alert = data.get("alert")
    if not isinstance(alert, Mapping):
        raise BadEvent("alert must be an object")
    return AlertMessage(
        event=str(event),
        id=str(_string(alert, "id")),
        kind=str(_string(alert, "kind")),
        status=str(_string(alert, "status")),
        team_id=_uuid(alert, "teamId"),
        component_id=_uuid(alert, "componentId"),
        title=_string(alert, "title", required=False),
        raised_at=_time(alert, "raisedAt", required=False),
    )


@dataclass(frozen=True)
class SyncFinishedMessage:
    sync_run_id: int
    status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    days: int
    components: int
    records: int
    opencost_requests: int
    failed_aggregate_count: int  # "failedAggregates" on the wire
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "syncRunId": self.sync_run_id,
            "status": self.status,
            "trigger": self.trigger,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "days": self.days,
            "components": self.components,
            "records": self.records,
            "opencostRequests": self.opencost_requests,
            "failedAggregates": self.failed_aggregate_count,
            "error": self.error,
        }


def parse_sync_finished(data: Mapping[str, Any]) -> SyncFinishedMessage:
    status = data.get("status")
    if status not in SYNC_STATUSES:
        raise BadEvent(f"status must be one of {', '.join(SYNC_STATUSES)}, got {status!r}")
    started_at = _time(data, "startedAt")
    assert started_at is not None
    return SyncFinishedMessage(
        sync_run_id=_int(data, "syncRunId"),
        status=str(status),
        trigger=str(_string(data, "trigger")),
        started_at=started_at,
        finished_at=_time(data, "finishedAt", required=False),
        days=_int(data, "days"),
        components=_int(data, "components"),
        records=_int(data, "records"),
        opencost_requests=_int(data, "opencostRequests"),
        failed_aggregate_count=_int(data, "failedAggregates"),
        error=_string(data, "error", required=False),
    )


# What the API relays to subscriptions, and how each channel's messages are read.
PARSERS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    ALERTS_CHANNEL: parse_alert,
    SYNC_FINISHED_CHANNEL: parse_sync_finished,
}
