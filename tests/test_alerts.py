"""Alerts: the evaluator (dedup, idempotence, auto-resolve, snooze expiry, the sync hook), the
lifecycle and its permissions through GraphQL, lists, publishing, and the webhook."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from tortoise.exceptions import IntegrityError

from finops_gql.alerts.conditions import Condition
from finops_gql.alerts.webhook import WebhookSettings, deliver
from finops_gql.auth import Principal, mint_token
from finops_gql.config import ConfigError, Settings
from finops_gql.costs.windows import money
from finops_gql.db.models import Alert, AlertEvent, Component, Team
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.events import ALERTS_CHANNEL
from finops_gql.services import WEBHOOK_JOB_PREFIX, Services
from finops_gql.worker import snooze_check_cron, worker_settings
from tests.conftest import (
    QueryCounter,
    gql,
    make_component,
    make_records,
    make_team,
    run_worker,
    served,
    wire,
)

ALERT = """
  id kind status title period subject snoozedUntil resolvedBy acknowledgedBy
  team { slug } component { name }
  budget { period amount spent threshold forecastSpend }
  events(first: 10) { actor action fromStatus toStatus note }
"""
LIST = f"""query($filter: AlertFilter, $first: Int!, $after: String) {{
  alerts(filter: $filter, first: $first, after: $after) {{
    totalCount pageInfo {{ endCursor hasNextPage }} nodes {{ {ALERT} }}
  }}
}}"""
ACK = f"mutation($id: ID!) {{ acknowledgeAlert(id: $id) {{ {ALERT} }} }}"
SNOOZE = (
    f"mutation($id: ID!, $until: DateTime!) {{ snoozeAlert(id: $id, until: $until) {{ {ALERT} }} }}"
)
RESOLVE = f"mutation($id: ID!) {{ resolveAlert(id: $id) {{ {ALERT} }} }}"


def as_user(services: Services, *roles: str, teams: list[str] | None = None) -> dict[str, str]:
    jwt = mint_token(services.settings, "alice", list(roles), timedelta(hours=1), teams=teams)
    return {"Authorization": f"Bearer {jwt}"}


async def over_budget(
    services: Services,
    team: Team | None = None,
    name: str = "checkout",
    budget: float = 10.0,
    daily: list[float] | None = None,
) -> Component:
    """A component whose 30-day cost (30 x 1.0 by default) is over its budget (a rolling
    budget with the one threshold 1.0, so each breach is one alert)."""
    component = await make_component(team or await make_team(), name)
    await set_budget(services, component, budget)
    await make_records(component, daily or [1.0] * 30)
    await services.costs.refresh_rollups()
    return component


async def set_budget(services: Services, component: Component, budget: float) -> None:
    spec = services.budgets.spec(budget, thresholds=[1.0])
    await services.budgets.set_component_budget(component.id, spec)


async def unresolved() -> list[Alert]:
    return await Alert.exclude(status="RESOLVED").order_by("id")


# -- evaluation ------------------------------------------------------------------------------------


async def test_a_budget_breach_raises_one_alert_however_often_evaluated(
    services: Services,
) -> None:
    component = await over_budget(services)
    first = await services.alerts.evaluate()
    assert [a.kind for a in first.raised] == ["BUDGET_THRESHOLD"]
    again = await services.alerts.evaluate()
    assert (again.raised, again.changed, again.refreshed) == ([], [], 1)
    (alert,) = await Alert.all()
    assert (alert.status, alert.subject, alert.period) == (
        "OPEN",
        f"component:{component.id}",
        "rolling-30d@1",
    )
    assert alert.team_id == component.team_id
    assert alert.details["spent"] == 30.0
    assert [e.action for e in await AlertEvent.all()] == ["raised"]

    await set_budget(services, component, 100.0)  # the condition clears
    cleared = await services.alerts.evaluate()
    assert [a.id for a in cleared.changed] == [alert.id]
    await alert.refresh_from_db()
    assert (alert.status, alert.resolved_by) == ("RESOLVED", "system")
    events = await AlertEvent.filter(alert_id=alert.id).order_by("id")
    assert [(e.action, e.from_status, e.to_status, e.actor) for e in events] == [
        ("raised", None, "OPEN", "system"),
        ("resolved", "OPEN", "RESOLVED", "system"),
    ]
    assert (await services.alerts.evaluate()).changed == []

    await set_budget(
        services, component, 10.0
    )  # breached again: a new alert, the old one stays history
    assert len((await services.alerts.evaluate()).raised) == 1
    assert await Alert.all().count() == 2
    assert len(await unresolved()) == 1


async def test_a_forecast_over_budget_raises_budget_forecast(services: Services) -> None:
    # 23 days at 0.5 and 7 at 2.0: 25.5 spent of 30, but the trend runs far past 30 in the next
    # 30 days (the budgets' forecast, costs/forecast.py).
    component = await over_budget(services, budget=30.0, daily=[0.5] * 23 + [2.0] * 7)
    await services.alerts.evaluate()
    (alert,) = await unresolved()
    assert (alert.kind, alert.period) == ("BUDGET_FORECAST", "rolling-30d")
    status = (await services.budgets.component_statuses([component.id]))[component.id]
    assert status is not None
    assert status.forecast_spend > 30.0
    assert alert.details["forecastSpend"] == money(status.forecast_spend)
    await set_budget(services, component, 20.0)  # now over: the threshold replaces the forecast
    await services.alerts.evaluate()
    assert [(a.kind, a.period) for a in await unresolved()] == [
        ("BUDGET_THRESHOLD", "rolling-30d@1")
    ]


async def test_one_unresolved_alert_per_kind_subject_and_period(services: Services) -> None:
    now = datetime.now(UTC)
    row = {
        "kind": "SYNC_FAILED",
        "subject": "sync:default",
        "period": "latest",
        "title": "t",
        "raised_at": now,
        "updated_at": now,
        "last_seen_at": now,
    }
    await Alert.create(status="RESOLVED", **row)
    await Alert.create(status="RESOLVED", **row)  # history may repeat
    await Alert.create(status="SNOOZED", **row)
    with pytest.raises(IntegrityError):
        await Alert.create(status="OPEN", **row)


async def test_snooze_expiry_reopens_a_true_condition_and_resolves_a_cleared_one(
    services: Services, client: httpx.AsyncClient
) -> None:
    team = await make_team()
    still = await over_budget(services, team, "checkout")
    cleared = await over_budget(services, team, "search")
    await services.alerts.evaluate()
    alerts = await unresolved()
    admin = as_user(services, "admin")
    until = datetime.now(UTC) + timedelta(hours=1)
    for a in alerts:
        body = await gql(client, SNOOZE, {"id": str(a.id), "until": until.isoformat()}, admin)
        assert body["data"]["snoozeAlert"]["status"] == "SNOOZED"
    await services.alerts.evaluate()  # before the time: still snoozed
    assert {a.status for a in await unresolved()} == {"SNOOZED"}

    await set_budget(services, cleared, 100.0)
    later = datetime.now(UTC) + timedelta(hours=2)
    services.costs.clock = lambda: later
    result = await services.alerts.evaluate()
    assert len(result.changed) == 2
    by_component = {a.component_id: a for a in await Alert.all()}
    reopened, resolved = by_component[still.id], by_component[cleared.id]
    assert (reopened.status, reopened.snoozed_until) == ("OPEN", None)
    assert resolved.status == "RESOLVED"
    actions = (
        await AlertEvent.filter(alert_id=reopened.id).order_by("id").values_list("action", "actor")
    )
    assert actions == [("raised", "system"), ("snoozed", "alice"), ("reopened", "system")]


async def test_the_worker_opens_an_ended_snooze_without_waiting_for_a_sync(
    services: Services, client: httpx.AsyncClient
) -> None:
    await over_budget(services, await make_team(), "checkout")
    await services.alerts.evaluate()
    snoozed = await unresolved()
    until = datetime.now(UTC) + timedelta(hours=1)
    for a in snoozed:
        variables = {"id": str(a.id), "until": until.isoformat()}
        body = await gql(client, SNOOZE, variables, as_user(services, "admin"))
        assert body["data"]["snoozeAlert"]["status"] == "SNOOZED"
    ctx: dict[str, Any] = {"services": services}
    assert await snooze_check_cron(ctx) == {"status": "nothing ended"}

    later = datetime.now(UTC) + timedelta(hours=2)
    services.costs.clock = lambda: later
    assert await snooze_check_cron(ctx) == {
        "status": "evaluated",
        "changed": len(snoozed),
        "raised": 0,
    }
    assert {a.status for a in await unresolved()} == {"OPEN"}
    assert await snooze_check_cron(ctx) == {"status": "nothing ended"}  # nothing left to wake
    # The worker runs it every 5 minutes.
    jobs = worker_settings(services.settings)["cron_jobs"]
    (check,) = [j for j in jobs if j.name == "cron:snooze_check"]
    assert check.minute == set(range(0, 60, 5))


async def test_a_persons_change_made_during_an_evaluation_wins(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    component = await over_budget(services)
    await services.alerts.evaluate()
    (alert,) = await Alert.all()
    await set_budget(services, component, 100.0)  # cleared: the evaluation will resolve it...
    original = Alert.filter

    def filter_then_snooze(*args: Any, **kwargs: Any) -> Any:
        # ...but between its read and its write a person snoozes it.
        query = original(*args, **kwargs)
        if kwargs.get("status__in"):
            until = datetime.now(UTC) + timedelta(days=1)

            async def read_then_snooze() -> list[Alert]:
                found = await query
                await original(id=alert.id).update(status="SNOOZED", snoozed_until=until)
                return list(found)

            return read_then_snooze()
        return query

    monkeypatch.setattr(Alert, "filter", filter_then_snooze)
    result = await services.alerts.evaluate()
    monkeypatch.undo()
    assert result.changed == []
    await alert.refresh_from_db()
    assert alert.status == "SNOOZED"  # the next evaluation resolves it, as the condition says
    assert [a.status for a in (await services.alerts.evaluate()).changed] == ["RESOLVED"]


async def test_a_failing_source_resolves_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await over_budget(services)
    await services.alerts.evaluate()

    async def broken(self: object, now: datetime) -> list[Condition]:
        raise RuntimeError("bug in a source")

    source = services.alerts.sources[0]
    monkeypatch.setattr(type(source), "conditions", broken)
    result = await services.alerts.evaluate()
    assert result.failed_sources == ["BudgetSource"]
    assert [a.status for a in await Alert.all()] == ["OPEN"]


async def test_alerts_are_published_when_raised_and_changed_and_a_broken_publisher_is_harmless(
    services: Services, client: httpx.AsyncClient
) -> None:
    messages: list[tuple[str, dict[str, Any]]] = []

    async def publish(channel: str, message: str) -> None:
        messages.append((channel, json.loads(message)))

    services.alerts.publish = publish
    component = await over_budget(services)
    await services.alerts.evaluate()
    ((channel, raised),) = messages
    assert channel == ALERTS_CHANNEL
    assert raised["event"] == "raised"
    assert raised["alert"]["kind"] == "BUDGET_THRESHOLD"
    assert raised["alert"]["componentId"] == str(component.id)
    assert raised["alert"]["teamId"] == str(component.team_id)
    await gql(client, ACK, {"id": raised["alert"]["id"]}, as_user(services, "admin"))
    assert [(m["event"], m["alert"]["status"]) for _, m in messages[1:]] == [
        ("changed", "ACKNOWLEDGED")
    ]

    async def down(channel: str, message: str) -> None:
        raise ConnectionError("redis is down")

    services.alerts.publish = down
    await set_budget(services, component, 100.0)
    second = await over_budget(services, await Team.get(id=component.team_id), "search")
    result = await services.alerts.evaluate()
    assert len(result.changed) == 1  # resolved all the same
    assert len(result.raised) == 1
    assert await Alert.filter(component_id=second.id, status="OPEN").count() == 1


async def test_concurrent_evaluations_raise_one_alert(services: Services) -> None:
    await over_budget(services)
    results = await asyncio.gather(services.alerts.evaluate(), services.alerts.evaluate())
    assert sum(len(r.raised) for r in results) == 1
    assert await Alert.all().count() == 1


# -- the sync hook -----------------------------------------------------------------------------------


def at(services: Services, fake: FakeOpenCost, now: datetime) -> None:
    services.costs.clock = lambda: now
    fake.now = now


NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)


async def test_sync_failed_is_raised_by_a_failed_run_and_resolved_by_the_next_success(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    await make_component(await make_team(), "checkout")
    fake.fail = "500"
    with pytest.raises(Exception, match="aggregates failed"):
        await services.sync.run()
    (alert,) = await unresolved()
    assert (alert.kind, alert.subject, alert.status) == ("SYNC_FAILED", "sync:default", "OPEN")
    assert alert.details["status"] == "failed"
    with pytest.raises(Exception, match="aggregates failed"):
        await services.sync.run()  # still failing: the same alert
    assert await Alert.all().count() == 1
    fake.fail = None
    await services.sync.run()
    await alert.refresh_from_db()
    assert (alert.status, alert.resolved_by) == ("RESOLVED", "system")


async def test_a_partial_run_raises_sync_failed(services: Services, fake: FakeOpenCost) -> None:
    at(services, fake, NOW)
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search", opencost_aggregate="namespace")
    services.sync.concurrency = 1
    fake.fail = "after_first"
    run = await services.sync.run()
    assert run.status == "partial"
    (alert,) = await unresolved()
    assert alert.kind == "SYNC_FAILED"
    assert alert.details["failedAggregates"] == ["namespace"]


async def test_a_crash_between_sync_and_evaluation_is_made_up_by_the_next_run(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    await set_budget(services, await make_component(await make_team(), "checkout"), 1.0)
    evaluate = services.sync.after_run
    services.sync.after_run = None  # the process died right after the sync's commit
    run = await services.sync.run()
    assert run.status == "succeeded"
    assert await Alert.all().count() == 0
    services.sync.after_run = evaluate  # restarted: the next run (nothing new to fetch)
    again = await services.sync.run()
    assert again.records == 0
    assert [a.kind for a in await unresolved()] == ["BUDGET_THRESHOLD"]
    await services.sync.run()  # and re-running never duplicates
    assert await Alert.all().count() == 1


async def test_an_evaluation_that_fails_does_not_fail_the_sync(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(services, fake, NOW)
    await set_budget(services, await make_component(await make_team(), "checkout"), 1.0)

    async def crash(self: object, *args: object) -> None:
        raise RuntimeError("database went away mid-evaluation")

    monkeypatch.setattr(type(services.alerts), "_apply", crash)
    assert (await services.sync.run()).status == "succeeded"
    assert await Alert.all().count() == 0


async def test_an_anomaly_raises_cost_anomaly_and_clears_when_its_day_leaves_the_window(
    services: Services, client: httpx.AsyncClient
) -> None:
    component = await make_component(await make_team(), "checkout")
    totals = [100.0 + (i % 5) for i in range(35)]
    totals[-1] = 400.0  # yesterday
    yesterday = (await make_records(component, totals))[0]  # newest first
    yesterday.cpu_cost, yesterday.ram_cost = 60.0, 330.0
    await yesterday.save()
    await services.alerts.evaluate()
    query = """{ alerts(filter: {kind: COST_ANOMALY}, first: 5) { nodes {
        kind period title component { name }
        anomaly { day actualCost expectedCost score resource resourceDelta weekly } } } }"""
    body = await gql(client, query)
    (node,) = body["data"]["alerts"]["nodes"]
    day = yesterday.day.isoformat()
    assert node["period"] == day
    anomaly = node["anomaly"]
    assert anomaly["day"] == day
    assert anomaly["actualCost"] == 400.0
    assert 100.0 <= anomaly["expectedCost"] <= 104.0
    assert anomaly["score"] > 3.5
    assert anomaly["resource"] == "memory"
    assert anomaly["weekly"] is True
    assert "checkout" in node["title"]

    check_days = services.settings.anomaly_check_days
    later = datetime.now(UTC) + timedelta(days=check_days)
    services.costs.clock = lambda: later
    await services.alerts.evaluate()
    assert await unresolved() == []


# -- the lifecycle and who may act -----------------------------------------------------------------


async def test_the_lifecycle_and_its_illegal_transitions(
    services: Services, client: httpx.AsyncClient
) -> None:
    await over_budget(services)
    await services.alerts.evaluate()
    (alert,) = await Alert.all()
    admin = as_user(services, "admin")
    ids = {"id": str(alert.id)}

    def error(body: dict[str, Any]) -> tuple[str, str]:
        return body["errors"][0]["extensions"]["code"], body["errors"][0]["message"]

    acked = (await gql(client, ACK, ids, admin))["data"]["acknowledgeAlert"]
    assert (acked["status"], acked["acknowledgedBy"]) == ("ACKNOWLEDGED", "alice")
    code, message = error(await gql(client, ACK, ids, admin))
    assert code == "CONFLICT"
    assert "is ACKNOWLEDGED: it cannot be acknowledged" in message

    soon = datetime.now(UTC) + timedelta(days=1)
    snoozed = await gql(client, SNOOZE, {**ids, "until": soon.isoformat()}, admin)
    assert snoozed["data"]["snoozeAlert"]["status"] == "SNOOZED"
    for until, expected in (
        (datetime.now(UTC) - timedelta(minutes=1), "until must be in the future"),
        (datetime.now(UTC) + timedelta(days=91), "at most 90 days ahead"),
    ):
        code, message = error(await gql(client, SNOOZE, {**ids, "until": until.isoformat()}, admin))
        assert code == "BAD_USER_INPUT"
        assert expected in message
    naive = await gql(client, SNOOZE, {**ids, "until": "2030-01-01T00:00:00"}, admin)
    assert naive["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    literal = f'mutation {{ snoozeAlert(id: "{alert.id}", until: "soon") {{ status }} }}'
    code, message = error(await gql(client, literal, None, admin))
    assert code == "BAD_USER_INPUT"
    assert "DateTime must be ISO 8601" in message

    resolved = (await gql(client, RESOLVE, ids, admin))["data"]["resolveAlert"]
    assert (resolved["status"], resolved["resolvedBy"], resolved["snoozedUntil"]) == (
        "RESOLVED",
        "alice",
        None,
    )
    assert [(e["action"], e["fromStatus"], e["toStatus"]) for e in resolved["events"]] == [
        ("resolved", "SNOOZED", "RESOLVED"),
        ("snoozed", "ACKNOWLEDGED", "SNOOZED"),
        ("acknowledged", "OPEN", "ACKNOWLEDGED"),
        ("raised", None, "OPEN"),
    ]
    for mutation in (RESOLVE, ACK):
        code, message = error(await gql(client, mutation, ids, admin))
        assert code == "CONFLICT"
        assert "is RESOLVED" in message
    code, _ = error(await gql(client, SNOOZE, {**ids, "until": soon.isoformat()}, admin))
    assert code == "CONFLICT"

    for bad, code in (("abc", "BAD_USER_INPUT"), ("-1", "BAD_USER_INPUT"), ("999999", "NOT_FOUND")):
        assert error(await gql(client, RESOLVE, {"id": bad}, admin))[0] == code
    lookup = "query($id: ID!) { alert(id: $id) { id } }"
    assert error(await gql(client, lookup, {"id": "9" * 30}))[0] == "BAD_USER_INPUT"
    assert (await gql(client, lookup, {"id": "999999"}))["data"]["alert"] is None
    # A person's resolve holds: the next evaluation raises a new alert, it does not reopen it.
    await services.alerts.evaluate()
    assert await Alert.all().count() == 2


async def test_who_may_act_admins_and_members_of_the_team_or_a_team_above_it(
    services: Services, client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    parent = await make_team("platform")
    child = await make_team("payments")
    await Team.filter(id=child.id).update(parent_id=parent.id)
    await make_team("search")
    await over_budget(services, child)
    await services.alerts.evaluate()
    (alert,) = await Alert.all()
    ids = {"id": str(alert.id)}
    refused = [
        as_user(services, teams=["search"]),  # an outsider
        as_user(services),  # no team at all
        as_user(services, teams=["x" * 500, "nope"]),  # nothing matching (and too long)
    ]
    for headers in refused:
        body = await gql(client, ACK, ids, headers)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "members of the alert's team" in body["errors"][0]["message"]
    assert (await Alert.get(id=alert.id)).status == "OPEN"
    member = await gql(client, ACK, ids, as_user(services, teams=["payments"]))
    assert member["data"]["acknowledgeAlert"]["status"] == "ACKNOWLEDGED"
    until = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    above = await gql(
        client, SNOOZE, {**ids, "until": until}, as_user(services, teams=["platform"])
    )
    assert above["data"]["snoozeAlert"]["status"] == "SNOOZED"
    admin = await gql(client, RESOLVE, ids, as_user(services, "admin"))
    assert admin["data"]["resolveAlert"]["status"] == "RESOLVED"

    # An alert without a team (a failed sync) is for admins only.
    at(services, fake, NOW)
    fake.fail = "500"
    with pytest.raises(Exception, match="aggregates failed"):
        await services.sync.run()
    (failed,) = await Alert.filter(kind="SYNC_FAILED")
    body = await gql(client, ACK, {"id": str(failed.id)}, as_user(services, teams=["platform"]))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await gql(client, ACK, {"id": str(failed.id)}, as_user(services, "admin"))
    assert body["data"]["acknowledgeAlert"]["status"] == "ACKNOWLEDGED"


# -- lists -----------------------------------------------------------------------------------------


async def test_alerts_filtered_paged_and_counted(
    services: Services, client: httpx.AsyncClient
) -> None:
    parent = await make_team("platform")
    child = await make_team("payments")
    await Team.filter(id=child.id).update(parent_id=parent.id)
    other = await make_team("search")
    made = [await over_budget(services, child, f"pay-{i}") for i in range(3)]
    made.append(await over_budget(services, other, "indexer"))
    await services.alerts.evaluate()
    first = await Alert.get(component_id=made[0].id)
    await services.alerts.resolve(first.id, Principal("root", frozenset({"admin"})))

    seen: list[str] = []
    after = None
    while True:
        body = await gql(client, LIST, {"first": 3, "after": after})
        page = body["data"]["alerts"]
        assert page["totalCount"] == 4
        seen += [n["component"]["name"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    by_id = {a.id: a for a in await Alert.all()}
    names_of = {c.id: c.name for c in made}
    newest_first = [names_of[by_id[i].component_id] for i in sorted(by_id, reverse=True)]
    assert seen == newest_first

    async def names(filter: dict[str, Any]) -> tuple[int, list[str]]:
        page = (await gql(client, LIST, {"filter": filter, "first": 10}))["data"]["alerts"]
        return page["totalCount"], [n["component"]["name"] for n in page["nodes"]]

    assert await names({"status": "OPEN"}) == (3, [n for n in newest_first if n != "pay-0"])
    assert await names({"kind": "COST_ANOMALY"}) == (0, [])
    in_child = [n for n in newest_first if n.startswith("pay-")]
    assert await names({"teamId": str(parent.id)}) == (3, in_child)  # its sub-team's
    assert await names({"teamId": str(other.id), "status": "OPEN"}) == (1, ["indexer"])
    assert await names({"componentId": str(made[1].id)}) == (1, ["pay-1"])

    for variables, expected in (
        ({"first": 0}, "first must be between 1 and 100"),
        ({"first": 101}, "first must be between 1 and 100"),
        ({"first": 5, "after": "bm9wZQ=="}, "after: not a cursor this API issued"),
        ({"first": 5, "filter": {"teamId": "nope"}}, "teamId must be a UUID"),
        ({"first": 5, "filter": {"componentId": "nope"}}, "componentId must be a UUID"),
    ):
        body = await gql(client, LIST, variables)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert expected in body["errors"][0]["message"]


async def test_team_and_component_alerts_are_batched(
    services: Services, client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    parent = await make_team("platform")
    child = await make_team("payments")
    await Team.filter(id=child.id).update(parent_id=parent.id)
    for team in (parent, child):
        for i in range(2):
            await over_budget(services, team, f"{team.slug}-{i}")
    await services.alerts.evaluate()
    query = """{ teams(first: 10) { nodes { slug
        alerts(first: 5) { totalCount nodes { period } }
        own: alerts(first: 5, includeSubTeams: false) { totalCount nodes { id } }
        components(first: 10) { nodes { name alerts(first: 1, status: OPEN) {
          totalCount nodes { events(first: 2) { action } } } } } } } }"""
    sql_counter.statements.clear()
    body = await gql(client, query)
    teams = {t["slug"]: t for t in body["data"]["teams"]["nodes"]}
    assert teams["platform"]["alerts"]["totalCount"] == 4
    assert len(teams["platform"]["alerts"]["nodes"]) == 4
    assert teams["platform"]["own"]["totalCount"] == 2
    assert teams["payments"]["alerts"]["totalCount"] == 2
    for node in teams["payments"]["components"]["nodes"]:
        assert node["alerts"]["totalCount"] == 1
        assert node["alerts"]["nodes"][0]["events"] == [{"action": "raised"}]
    selects = [s for s in sql_counter.statements if "alert" in s and "COUNT" not in s.upper()]
    # team pages (ids + rows), own pages (ids + rows), component pages (ids + rows), events
    assert len(selects) <= 7, selects


# -- the webhook -----------------------------------------------------------------------------------


@dataclass
class Hook:
    """A local webhook receiver: answers each POST with the next status, or hangs."""

    statuses: list[int] = field(default_factory=lambda: [200])
    hang: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def receive(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            if self.hang:
                await asyncio.sleep(3600)
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return web.Response(status=status, text="ok")

        application = web.Application()
        application.router.add_post("/hook", receive)
        return application


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    receiver = Hook()
    async with served(receiver.app()) as url:
        yield receiver, f"{url}/hook"


FAST = {"timeout_s": 0.3, "max_attempts": 3, "backoff_s": 0.01, "max_seconds": 5.0}


async def pending_alert(services: Services) -> Alert:
    services.alerts.webhook = True
    await over_budget(services)
    (alert,) = (await services.alerts.evaluate()).raised
    assert alert.webhook_status == "pending"
    return alert


async def test_webhook_delivers_a_slack_compatible_body(
    services: Services, hook: tuple[Hook, str], client: httpx.AsyncClient
) -> None:
    receiver, url = hook
    alert = await pending_alert(services)
    status = await deliver(services.session, WebhookSettings(url, **FAST), alert.id)
    assert status == "delivered"
    (body,) = receiver.bodies
    assert body["text"].startswith("[BUDGET_THRESHOLD] Budget: checkout spent 30.00 of 10.00 USD")
    assert body["alert"]["id"] == str(alert.id)
    assert body["alert"]["kind"] == "BUDGET_THRESHOLD"
    query = (
        "query($id: ID!) { alert(id: $id) { webhook { status attempts deliveredAt lastError } } }"
    )
    webhook = (await gql(client, query, {"id": str(alert.id)}))["data"]["alert"]["webhook"]
    assert webhook["status"] == "delivered"
    assert webhook["attempts"] == 1
    assert webhook["deliveredAt"] is not None
    assert webhook["lastError"] is None
    # A duplicate job finds it delivered and sends nothing.
    assert await deliver(services.session, WebhookSettings(url, **FAST), alert.id) is None
    assert len(receiver.bodies) == 1


async def test_webhook_retries_failures_then_succeeds(
    services: Services, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    receiver.statuses = [503, 429, 200]
    alert = await pending_alert(services)
    assert await deliver(services.session, WebhookSettings(url, **FAST), alert.id) == "delivered"
    await alert.refresh_from_db()
    assert (alert.webhook_attempts, alert.webhook_error) == (3, None)


async def test_webhook_failing_every_time_is_recorded_as_failed(
    services: Services, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    receiver.statuses = [500]
    alert = await pending_alert(services)
    assert await deliver(services.session, WebhookSettings(url, **FAST), alert.id) == "failed"
    await alert.refresh_from_db()
    assert alert.webhook_status == "failed"
    assert alert.webhook_attempts == 3
    assert alert.webhook_error == "attempt 3: HTTP 500"
    assert len(receiver.bodies) == 3


async def test_webhook_refused_with_a_4xx_is_not_retried(
    services: Services, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    receiver.statuses = [404]
    alert = await pending_alert(services)
    assert await deliver(services.session, WebhookSettings(url, **FAST), alert.id) == "failed"
    await alert.refresh_from_db()
    assert (alert.webhook_attempts, alert.webhook_error) == (1, "attempt 1: HTTP 404")


async def test_webhook_that_hangs_times_out_within_its_deadline(
    services: Services, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    receiver.hang = True
    alert = await pending_alert(services)
    bounded = WebhookSettings(url, timeout_s=0.2, max_attempts=10, backoff_s=0.05, max_seconds=0.6)
    started = time.monotonic()
    assert await deliver(services.session, bounded, alert.id) == "failed"
    assert time.monotonic() - started < 1.5
    await alert.refresh_from_db()
    assert 1 < alert.webhook_attempts < 10  # the total deadline stopped it, not the attempts
    assert "no answer within" in (alert.webhook_error or "")


async def test_webhook_to_an_unreachable_host_fails_cleanly(services: Services) -> None:
    alert = await pending_alert(services)
    gone = WebhookSettings("http://127.0.0.1:1/hook", **FAST)
    assert await deliver(services.session, gone, alert.id) == "failed"
    await alert.refresh_from_db()
    assert alert.webhook_attempts == 3


# -- through the worker, with real Redis -----------------------------------------------------------


async def test_worker_sync_raises_publishes_and_delivers_the_webhook(
    services: Services, fake: FakeOpenCost, redis_url: str, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    config = services.settings.with_(redis_url=redis_url, alert_webhook_url=url)
    services.settings = config
    await set_budget(services, await make_component(await make_team(), "checkout"), 1.0)
    subscriber = aioredis.from_url(redis_url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(wire(ALERTS_CHANNEL))
    await services.enqueue_sync()
    worker = await run_worker(config)
    alerts = await Alert.all()
    # The sync, then one delivery per alert it raised (the stand-in's data may hold an anomaly).
    assert worker.jobs_complete == 1 + len(alerts)
    events = []
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            events.append(json.loads(message["data"]))
        elif len(events) == len(alerts):
            break
    await pubsub.aclose()
    await subscriber.aclose()
    assert sorted((e["event"], e["alert"]["id"]) for e in events) == sorted(
        ("raised", str(a.id)) for a in alerts
    )
    (budget,) = [a for a in alerts if a.kind == "BUDGET_THRESHOLD"]
    assert all(a.webhook_status == "delivered" for a in alerts)
    assert sorted(b["alert"]["id"] for b in receiver.bodies) == sorted(str(a.id) for a in alerts)
    assert str(budget.id) in {b["alert"]["id"] for b in receiver.bodies}


async def test_a_hanging_webhook_never_delays_the_sync(
    services: Services, fake: FakeOpenCost, redis_url: str, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    receiver.hang = True
    config = services.settings.with_(
        redis_url=redis_url,
        alert_webhook_url=url,
        alert_webhook_timeout_s=0.2,
        alert_webhook_max_attempts=2,
        alert_webhook_backoff_s=0.05,
    )
    services.settings = config
    services.alerts.webhook = True
    await set_budget(services, await make_component(await make_team(), "checkout"), 1.0)
    started = time.monotonic()
    await services.sync.run()
    assert time.monotonic() - started < 5  # the delivery is queued, not awaited
    (alert,) = await Alert.all()
    assert (alert.webhook_status, alert.webhook_attempts) == ("pending", 0)
    queued = aioredis.from_url(redis_url)
    assert await queued.exists(f"arq:job:{WEBHOOK_JOB_PREFIX}{alert.id}") == 1
    await queued.aclose()
    await services.alerts.evaluate()  # re-queued under the same job id: still one job
    await run_worker(config)
    await alert.refresh_from_db()
    assert (alert.webhook_status, alert.webhook_attempts) == ("failed", 2)
    assert len(receiver.bodies) == 2


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_WEBHOOK_URL": "ftp://hooks.example/x"}, "ALERT_WEBHOOK_URL must be an http"),
        ({"ALERT_WEBHOOK_URL": "http://"}, "ALERT_WEBHOOK_URL must be an http"),
        ({"ALERT_WEBHOOK_URL": "http://h:99999/"}, "ALERT_WEBHOOK_URL is malformed"),
        ({"ALERT_WEBHOOK_TIMEOUT_SECONDS": "0"}, "ALERT_WEBHOOK_TIMEOUT_SECONDS must be > 0"),
        ({"ALERT_WEBHOOK_MAX_ATTEMPTS": "0"}, "ALERT_WEBHOOK_MAX_ATTEMPTS must be >= 1"),
        ({"ALERT_WEBHOOK_MAX_ATTEMPTS": "50"}, "ALERT_WEBHOOK_MAX_ATTEMPTS must be <= 20"),
        ({"ALERT_WEBHOOK_MAX_SECONDS": "inf"}, "ALERT_WEBHOOK_MAX_SECONDS must be <= 3600"),
        (
            {"ALERT_WEBHOOK_BACKOFF_SECONDS": "nan"},
            "ALERT_WEBHOOK_BACKOFF_SECONDS must be a finite",
        ),
        ({"ANOMALY_WINDOW_DAYS": "3"}, "ANOMALY_WINDOW_DAYS must be >= 7"),
        ({"ANOMALY_WINDOW_DAYS": "400"}, "ANOMALY_WINDOW_DAYS must be <= 90"),
        ({"ANOMALY_CHECK_DAYS": "0"}, "ANOMALY_CHECK_DAYS must be >= 1"),
        ({"ANOMALY_MIN_HISTORY_DAYS": "40"}, "must be at most ANOMALY_WINDOW_DAYS"),
        ({"ANOMALY_MIN_SCORE": "-1"}, "ANOMALY_MIN_SCORE must be >= 0"),
        ({"ANOMALY_MIN_COST": "cheap"}, "ANOMALY_MIN_COST must be a number"),
        ({"ANOMALY_MIN_CHANGE": "inf"}, "ANOMALY_MIN_CHANGE must be a finite"),
    ],
)
def test_bad_alert_settings_are_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_alert_settings_defaults_and_a_valid_webhook() -> None:
    s = Settings.from_env({"ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"})
    assert s.alert_webhook_url == "https://hooks.slack.com/services/T/B/x"
    assert (s.anomaly_window_days, s.anomaly_min_score, s.anomaly_min_cost) == (28, 3.5, 5.0)
    assert Settings.from_env({}).alert_webhook_url is None
