"""Alerts: the evaluator that turns conditions into persisted alerts, their lifecycle, and reads.

Evaluation (after every sync run, in its own transaction, see costs/sync.py): every source says
which conditions of its kinds hold now; for each, the one unresolved alert of its (kind, subject,
period) is refreshed, or raised when there is none; a SNOOZED alert whose time has passed opens
again if its condition still holds; an unresolved alert whose condition is gone is resolved by
"system". Evaluation reads the state, not what changed, so it is idempotent: running it twice
changes nothing the second time, and a run that never happened (a crash between the sync's commit
and the evaluation) is made up by the next. Events are published and webhooks queued only after
the commit, and their failures are logged, never raised.

People act through acknowledge / snooze / resolve: admins, and members of the owning team or of
any team above it (Principal.teams, from JWT_TEAMS_CLAIM). Every change is an AlertEvent.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from finops_gql.access import EVERYTHING, Scope
from finops_gql.alerts.conditions import (
    AlertKind,
    AlertStatus,
    Condition,
    ConditionSource,
    Key,
)
from finops_gql.auth import Principal
from finops_gql.catalog import tree
from finops_gql.catalog.service import Page, check_first
from finops_gql.db import dataversion
from finops_gql.db.models import SLUG_MAX, Alert, AlertEvent
from finops_gql.db.setup import connection, placeholders, sql_value
from finops_gql.errors import Conflict, Forbidden, InvalidInput, NotFound
from finops_gql.events import ALERTS_CHANNEL
from finops_gql.jsonjs import js_date
from finops_gql.validation import decode_cursor, encode_cursor, fits_column, shown

log = logging.getLogger(__name__)

SYSTEM = "system"
OPEN, ACKNOWLEDGED, SNOOZED, RESOLVED = (s.value for s in AlertStatus)
UNRESOLVED = (OPEN, ACKNOWLEDGED, SNOOZED)
MAX_SNOOZE = timedelta(days=90)
EVENTS_DEFAULT = 20
EVENTS_MAX = 100
MAX_ID = 2**63 - 1
# Undelivered webhooks re-queued per evaluation (a lost queue entry is retried by the next).
WEBHOOK_REQUEUE_LIMIT = 100
BATCH = 500  # ids per statement when many alerts change at once

Publisher = Callable[[str, str], Awaitable[object]]
Enqueuer = Callable[[Sequence[int]], Awaitable[None]]


@dataclass(frozen=True)
class AlertFilter:
    status: AlertStatus | None = None
    kind: AlertKind | None = None
    team_id: uuid.UUID | None = None
    component_id: uuid.UUID | None = None
    include_sub_teams: bool = True  # team_id: the team's alerts and its sub-teams'


@dataclass
class Evaluation:
    raised: list[Alert] = field(default_factory=list)
    changed: list[Alert] = field(default_factory=list)  # reopened or resolved
    refreshed: int = 0
    failed_sources: list[str] = field(default_factory=list)


def parse_alert_id(value: object) -> int:
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise InvalidInput(f"id must be an alert id (a positive integer), got {shown(text)}")
    return int(text)


def alert_payload(a: Alert) -> dict[str, Any]:
    """The alert as ALERTS_CHANNEL messages and the webhook carry it (camelCase, ISO times)."""

    def when(value: datetime | None) -> str | None:
        return js_date(value) if value is not None else None

    return {
        "id": str(a.id),
        "kind": a.kind,
        "status": a.status,
        "subject": a.subject,
        "period": a.period,
        "title": a.title,
        "teamId": str(a.team_id) if a.team_id is not None else None,
        "componentId": str(a.component_id) if a.component_id is not None else None,
        "raisedAt": when(a.raised_at),
        "updatedAt": when(a.updated_at),
        "snoozedUntil": when(a.snoozed_until),
        "details": a.details,
    }


def _transition(
    alert: Alert, now: datetime, actor: str, action: str, to: str, note: str | None = None
) -> AlertEvent:
    event = AlertEvent(
        alert_id=alert.id,
        at=now,
        actor=actor,
        action=action,
        from_status=alert.status,
        to_status=to,
        note=note,
    )
    alert.status = to
    alert.updated_at = now
    return event


async def _system_change(
    alert: Alert, now: datetime, action: str, to: str, note: str, events: list[AlertEvent]
) -> bool:
    """The evaluator's own transition, conditional on the status it read: a person's change
    made meanwhile (a resolve, a new snooze) wins, and the evaluator leaves the alert alone."""
    before, until = alert.status, alert.snoozed_until
    changes: dict[str, Any] = {"status": to, "updated_at": now, "snoozed_until": None}
    if to == RESOLVED:
        changes.update(resolved_at=now, resolved_by=SYSTEM)
    same = {"snoozed_until": until} if until is not None else {"snoozed_until__isnull": True}
    updated = await Alert.filter(id=alert.id, status=before, **same).update(**changes)
    if not updated:
        return False
    events.append(_transition(alert, now, SYSTEM, action, to, note))
    for name, value in changes.items():
        setattr(alert, name, value)
    return True


class AlertService:
    def __init__(
        self,
        sources: Sequence[ConditionSource],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish: Publisher | None = None,
        webhook: bool = False,
        enqueue_webhooks: Enqueuer | None = None,
    ) -> None:
        self.sources = list(sources)
        self.clock = clock
        self.publish = publish
        self.webhook = webhook  # whether ALERT_WEBHOOK_URL is set: new alerts are pending
        self.enqueue_webhooks = enqueue_webhooks

    # -- evaluation ------------------------------------------------------------------------------

    async def evaluate(self) -> Evaluation:
        now = self.clock()
        conditions: dict[Key, Condition] = {}
        covered: set[str] = set()
        failed: list[str] = []
        for source in self.sources:
            try:
                found = await source.conditions(now)
            except Exception:  # one source's bug must not resolve, or hide, the others' alerts
                log.exception("alert source %s failed; its alerts are left as they are", source)
                failed.append(type(source).__name__)
                continue
            covered.update(k.value for k in source.kinds)
            for c in found:
                conditions[c.key] = c
        try:
            result = await self._apply(now, conditions, covered)
        except IntegrityError:
            # Another evaluation (a CLI sync beside the worker) raised the same alert first: the
            # unique index kept one; evaluate again against what it wrote.
            log.info("alert evaluation raced another one; evaluating again")
            result = await self._apply(now, conditions, covered)
        result.failed_sources = failed
        log.info(
            "alerts evaluated: %s raised, %s changed, %s refreshed%s",
            len(result.raised),
            len(result.changed),
            result.refreshed,
            f"; sources failed: {', '.join(failed)}" if failed else "",
        )
        await self._announce_all(
            [("raised", a) for a in result.raised] + [("changed", a) for a in result.changed]
        )
        await self._queue_webhooks()
        return result

    async def evaluate_quietly(self) -> Evaluation | None:
        """evaluate(), logging instead of raising: the caller's work (a sync) is committed."""
        try:
            return await self.evaluate()
        except Exception:
            log.exception("alert evaluation failed; the next sync run evaluates again")
            return None

    async def wake_snoozed(self) -> Evaluation | None:
        """Evaluate now if a snooze has ended since the last evaluation, rather than at the next
        sync (a day later with the default schedule): the alert opens again when its condition
        still holds, or is resolved. Otherwise one indexed query and no evaluation (None)."""
        ended = Alert.filter(status=SNOOZED, snoozed_until__lte=self.clock())
        if not await ended.exists():
            return None
        return await self.evaluate_quietly()

    async def _apply(
        self, now: datetime, conditions: dict[Key, Condition], covered: set[str]
    ) -> Evaluation:
        result = Evaluation()
        async with in_transaction():
            unresolved = (
                await Alert.filter(kind__in=sorted(covered), status__in=UNRESOLVED)
                if covered
                else []
            )
            existing = {(a.kind, a.subject, a.period): a for a in unresolved}
            events: list[AlertEvent] = []
            seen: list[int] = []
            for key, c in conditions.items():
                alert = existing.pop(key, None)
                if alert is None:
                    alert = await Alert.create(
                        kind=c.kind.value,
                        status=OPEN,
                        subject=c.subject,
                        period=c.period,
                        team_id=c.team_id,
                        component_id=c.component_id,
                        title=c.title[:500],
                        details=c.details,
                        raised_at=now,
                        updated_at=now,
                        last_seen_at=now,
                        webhook_status="pending" if self.webhook else None,
                    )
                    events.append(
                        AlertEvent(
                            alert_id=alert.id, at=now, actor=SYSTEM, action="raised", to_status=OPEN
                        )
                    )
                    result.raised.append(alert)
                    continue
                seen.append(alert.id)
                until = alert.snoozed_until
                reopen = alert.status == SNOOZED and until is not None and until <= now
                title = c.title[:500]
                same = (
                    alert.title == title
                    and alert.details == c.details
                    and str(alert.team_id) == str(c.team_id)
                    and str(alert.component_id) == str(c.component_id)
                )
                if same and not reopen:
                    result.refreshed += 1  # last_seen_at below, one statement for all
                    continue
                alert.title, alert.details = title, c.details
                alert.team_id, alert.component_id = c.team_id, c.component_id
                await alert.save(update_fields=["title", "details", "team_id", "component_id"])
                note = "the snooze ended and the condition still holds"
                if reopen and await _system_change(alert, now, "reopened", OPEN, note, events):
                    result.changed.append(alert)
                else:
                    result.refreshed += 1
            for start in range(0, len(seen), BATCH):
                await Alert.filter(id__in=seen[start : start + BATCH]).update(last_seen_at=now)
            for alert in existing.values():  # the condition is gone
                note = "the condition cleared"
                if await _system_change(alert, now, "resolved", RESOLVED, note, events):
                    result.changed.append(alert)
            if events:
                await AlertEvent.bulk_create(events)
            await dataversion.bump()  # last_seen_at moved at least
        return result

    async def _announce(self, event: str, alert: Alert) -> bool:
        if self.publish is None:
            return True
        message = json.dumps({"event": event, "alert": alert_payload(alert)})
        try:
            await self.publish(ALERTS_CHANNEL, message)
        except Exception as exc:  # best effort: the alert is committed, readers see it anyway
            log.warning("could not publish alert %s %s: %s", alert.id, event, exc)
            return False
        return True

    async def _announce_all(self, events: list[tuple[str, Alert]]) -> None:
        """Publish in order; after a failure the rest are skipped (Redis is down or slow: each
        attempt may wait for its connect timeout), and counted in one line."""
        for done, (event, alert) in enumerate(events):
            if not await self._announce(event, alert):
                if len(events) > done + 1:
                    log.warning("%s more alert event(s) not published", len(events) - done - 1)
                return

    async def _queue_webhooks(self) -> None:
        if not self.webhook or self.enqueue_webhooks is None:
            return
        pending = (
            await Alert.filter(webhook_status="pending")
            .order_by("id")
            .limit(WEBHOOK_REQUEUE_LIMIT)
            .values_list("id", flat=True)
        )
        if not pending:
            return
        try:
            await self.enqueue_webhooks([int(i) for i in pending])  # type: ignore[call-overload]
        except Exception as exc:  # the next evaluation queues them again
            log.warning("could not queue %s alert webhook(s): %s", len(pending), exc)

    # -- people acting on alerts -----------------------------------------------------------------

    async def may_act(self, alert: Alert, principal: Principal) -> bool:
        """Admins, and members of the alert's team or of a team above it (whatever AUTHZ_MODE:
        seeing an alert is not being allowed to act on it)."""
        if principal.is_admin:
            return True
        if alert.team_id is None or not principal.teams:
            return False
        slugs = {s for s in principal.teams if fits_column(s, SLUG_MAX)}
        return uuid.UUID(str(alert.team_id)) in await tree.slug_subtrees(slugs)

    async def _act(
        self,
        alert_id: int,
        principal: Principal,
        scope: Scope,
        action: str,
        to: str,
        allowed: tuple[str, ...],
        **changes: Any,
    ) -> Alert:
        alert = await Alert.get_or_none(id=alert_id)
        if alert is None or not scope.can_see_team(alert.team_id):
            raise NotFound("alert", alert_id)  # an alert the principal cannot see does not exist
        if not await self.may_act(alert, principal):
            raise Forbidden(
                f"only admins and members of the alert's team (or of a team above it) may "
                f"{action.removesuffix('d').removesuffix('e')} alert {alert_id}"
            )
        if alert.status not in allowed:
            raise Conflict(
                f"alert {alert_id} is {alert.status}: it cannot be {action} "
                f"(only an alert that is {' or '.join(allowed)} can)"
            )
        now = self.clock()
        before = alert.status
        event = _transition(
            alert, now, principal.subject[:200], action, to, changes.pop("note", None)
        )
        for name, value in changes.items():
            setattr(alert, name, value)
        async with in_transaction():
            # Conditional on the status read: a concurrent change wins, this one is refused.
            updated = await Alert.filter(id=alert_id, status=before).update(
                status=to, updated_at=now, **changes
            )
            if not updated:
                raise Conflict(f"alert {alert_id} changed meanwhile; read it again")
            await event.save()
            await dataversion.bump()
        await self._announce("changed", alert)
        return alert

    async def acknowledge(
        self, alert_id: int, principal: Principal, scope: Scope = EVERYTHING
    ) -> Alert:
        return await self._act(
            alert_id,
            principal,
            scope,
            "acknowledged",
            ACKNOWLEDGED,
            (OPEN, SNOOZED),
            acknowledged_at=self.clock(),
            acknowledged_by=principal.subject[:200],
            snoozed_until=None,
        )

    async def snooze(
        self, alert_id: int, until: datetime, principal: Principal, scope: Scope = EVERYTHING
    ) -> Alert:
        now = self.clock()
        if until.tzinfo is None:
            raise InvalidInput("until must carry a UTC offset or Z")
        if until <= now:
            raise InvalidInput(f"until must be in the future, got {until.isoformat()}")
        if until > now + MAX_SNOOZE:
            raise InvalidInput(
                f"until must be at most {MAX_SNOOZE.days} days ahead, got {until.isoformat()}"
            )
        return await self._act(
            alert_id,
            principal,
            scope,
            "snoozed",
            SNOOZED,
            UNRESOLVED,
            snoozed_until=until.astimezone(UTC),
            note=f"until {js_date(until)}",
        )

    async def resolve(
        self, alert_id: int, principal: Principal, scope: Scope = EVERYTHING
    ) -> Alert:
        return await self._act(
            alert_id,
            principal,
            scope,
            "resolved",
            RESOLVED,
            UNRESOLVED,
            resolved_at=self.clock(),
            resolved_by=principal.subject[:200],
            snoozed_until=None,
        )

    # -- reads -----------------------------------------------------------------------------------

    async def alerts_by_ids(
        self, ids: Sequence[int], scope: Scope = EVERYTHING
    ) -> dict[int, Alert]:
        return {a.id: a for a in await Alert.filter(scope.q(), id__in=list(ids))}

    async def _where(self, filters: AlertFilter) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if filters.status is not None:
            where["status"] = filters.status.value
        if filters.kind is not None:
            where["kind"] = filters.kind.value
        if filters.component_id is not None:
            where["component_id"] = filters.component_id
        if filters.team_id is not None and not filters.include_sub_teams:
            where["team_id"] = filters.team_id
        elif filters.team_id is not None:
            subtree = (await tree.team_subtrees([filters.team_id]))[filters.team_id]
            where["team_id__in"] = subtree
        return where

    async def list_alerts(
        self,
        filters: AlertFilter,
        first: int,
        after: str | None = None,
        scope: Scope = EVERYTHING,
    ) -> Page[Alert]:
        """Newest first (by id), `first` at a time, of the alerts `scope` sees (an alert without
        a team, SYNC_FAILED, only when it sees everything)."""
        check_first(first)
        where = await self._where(filters)
        if after is not None:
            where["id__lt"] = _cursor_id(after)
        rows = await Alert.filter(scope.q(), **where).order_by("-id").limit(first + 1)
        return _page(rows, first)

    async def count_alerts(self, filters: AlertFilter, scope: Scope = EVERYTHING) -> int:
        return await Alert.filter(scope.q(), **await self._where(filters)).count()

    async def owner_alert_pages(
        self,
        column: str,
        owner_ids: Sequence[uuid.UUID],
        first: int,
        after: str | None,
        status: AlertStatus | None,
        include_sub_teams: bool = False,
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, Page[Alert]]:
        """One page of alerts per component (column "component_id") or team ("team_id", with
        its sub-teams when asked), newest first: one statement for the ids, one for the rows."""
        check_first(first)
        if not owner_ids:
            return {}
        values: list[object] = []

        def p(value: object) -> str:
            values.append(sql_value(value))
            return placeholders(1, start=len(values))[0]

        owners = ", ".join(p(o) for o in owner_ids)
        if column == "team_id" and include_sub_teams:
            source = tree.subtree_cte(owners) + " "
            join, root = " JOIN tree ON a.team_id = tree.id", "tree.root"
            where = []
        else:
            source, join, root = "", "", f"a.{column}"
            where = [f"a.{column} IN ({owners})"]
        where.extend(scope.teams_sql("a.team_id", p))
        if status is not None:
            where.append(f"a.status = {p(status.value)}")
        if after is not None:
            where.append(f"a.id < {p(_cursor_id(after))}")
        sql = (
            f"{source}SELECT id, owner FROM (SELECT a.id AS id, {root} AS owner, "  # noqa: S608 (placeholders only)
            f"ROW_NUMBER() OVER (PARTITION BY {root} ORDER BY a.id DESC) AS rn FROM alert a{join}"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}) ranked "
            f"WHERE rn <= {p(first + 1)} ORDER BY owner, rn"
        )
        rows = await connection().execute_query_dict(sql, values)
        found = await self.alerts_by_ids(list({int(r["id"]) for r in rows}))
        pages: dict[uuid.UUID, list[Alert]] = {o: [] for o in owner_ids}
        for r in rows:
            pages[uuid.UUID(str(r["owner"]))].append(found[int(r["id"])])
        return {o: _page(items, first) for o, items in pages.items()}

    async def events_of(self, alert_ids: Sequence[int], first: int) -> dict[int, list[AlertEvent]]:
        """The newest `first` events of each alert, newest first, in one statement."""
        check_first(first, EVENTS_MAX)
        found: dict[int, list[AlertEvent]] = {i: [] for i in alert_ids}
        if not alert_ids:
            return found
        marks = placeholders(len(found) + 1)
        columns = "id, alert_id, at, actor, action, from_status, to_status, note"
        sql = (
            f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER "  # noqa: S608 (placeholders only)
            f"(PARTITION BY alert_id ORDER BY id DESC) AS rn FROM alert_event "
            f"WHERE alert_id IN ({', '.join(marks[:-1])})) ranked WHERE rn <= {marks[-1]} "
            "ORDER BY alert_id, rn"
        )
        for row in await connection().execute_query_dict(sql, [*found, first]):
            found[int(row["alert_id"])].append(AlertEvent._init_from_db(**row))
        return found


def _cursor_id(after: str) -> int:
    (text,) = decode_cursor(after, 1)
    try:
        return parse_alert_id(text)
    except InvalidInput:
        raise InvalidInput("after: not a cursor this API issued") from None


def _page(rows: list[Alert], first: int) -> Page[Alert]:
    items = rows[:first]
    more = len(rows) > first
    return Page(items, encode_cursor(str(items[-1].id)) if items else None, more)
