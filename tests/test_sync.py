"""The cost sync against a real database and the OpenCost stand-in over HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from finops_gql.costs.service import CostService
from finops_gql.costs.sync import SyncAlreadyRunning
from finops_gql.db.models import Component, CostRecord, SyncRun
from finops_gql.dev.opencost_fake import FakeOpenCost, daily_total
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.services import Services
from tests.conftest import gql, make_component, make_records, make_team
from tests.sync_standin import StandIn, sync_service

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)


def at(services: Services, fake: FakeOpenCost, now: datetime) -> None:
    services.costs.clock = lambda: now
    fake.now = now


async def catalog() -> list[Component]:
    team = await make_team()
    return [await make_component(team, name) for name in ("checkout", "search", "payments-api")]


async def test_first_run_backfills_30_days_with_one_request(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    components = await catalog()
    ghost = await make_component(await make_team("other"), "not-in-opencost")
    run = await services.sync.run("cli")
    assert run.status == "succeeded"
    assert (run.first_day, run.last_day, run.days) == (date(2026, 2, 13), date(2026, 3, 14), 30)
    assert run.opencost_requests == 1
    assert len(fake.requests) == 1
    assert fake.requests[0]["step"] == "1d"
    assert fake.requests[0]["window"] == "2026-02-13T00:00:00Z,2026-03-15T00:00:00Z"
    assert run.records == 90
    assert run.components == 3
    assert await CostRecord.filter(component=ghost).count() == 0
    checkout = await Component.get(id=components[0].id)
    expected = sum(
        daily_total("checkout", date(2026, 2, 13) + timedelta(days=i)) for i in range(30)
    )
    assert checkout.cost_30d == pytest.approx(expected, abs=1e-3)
    assert checkout.cost_synced_at is not None
    record = await CostRecord.get(component=checkout, day=date(2026, 3, 14))
    assert record.ram_cost > 0
    assert record.currency == "USD"
    assert record.total_cost == pytest.approx(daily_total("checkout", date(2026, 3, 14)), abs=1e-4)


async def test_second_run_same_day_writes_nothing_new(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    await catalog()
    await services.sync.run()
    again = await services.sync.run()
    assert again.status == "succeeded"
    assert again.records == 0
    assert again.days == 0
    assert again.opencost_requests == 0
    assert len(fake.requests) == 1
    assert await CostRecord.all().count() == 90


async def test_gap_of_two_days_fills_exactly_two(services: Services, fake: FakeOpenCost) -> None:
    at(services, fake, NOW)
    await catalog()
    await services.sync.run()
    at(services, fake, NOW + timedelta(days=2))
    run = await services.sync.run()
    assert (run.first_day, run.last_day, run.days, run.records) == (
        date(2026, 3, 15),
        date(2026, 3, 16),
        2,
        6,
    )
    assert fake.requests[-1]["window"] == "2026-03-15T00:00:00Z,2026-03-17T00:00:00Z"
    assert await CostRecord.all().count() == 96


async def test_one_request_per_aggregate_not_per_component(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    team = await make_team()
    for i in range(20):
        await make_component(team, f"svc-{i}")
    await make_component(
        team, "by-namespace", opencost_aggregate="namespace", opencost_key="checkout"
    )
    run = await services.sync.run()
    assert run.opencost_requests == 2
    assert sorted(r["aggregate"] for r in fake.requests) == ["label:app", "namespace"]


async def test_opencost_failing_on_the_second_aggregate_commits_the_first(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    services.sync.concurrency = 1  # requests in order: label:app answers, namespace fails
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search", opencost_aggregate="namespace")
    fake.fail = "after_first"
    partial = await services.sync.run()
    assert partial.status == "partial"
    assert await CostRecord.filter(component__name="checkout").count() == 30
    assert await CostRecord.filter(component__name="search").count() == 0
    assert [f["aggregate"] for f in partial.failed_aggregates or []] == ["namespace"]
    assert "OpenCost" in (partial.error or "")
    assert partial.finished_at is not None
    fake.fail = None
    healed = await services.sync.run()
    assert healed.status == "succeeded"
    assert healed.days == 30
    assert healed.records == 30
    assert [r["aggregate"] for r in fake.requests[-healed.opencost_requests :]] == ["namespace"]


async def test_opencost_failing_everywhere_leaves_no_rows(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search", opencost_aggregate="namespace")
    fake.fail = "500"
    with pytest.raises(OpenCostUnavailable):
        await services.sync.run()
    assert await CostRecord.all().count() == 0
    failed = await SyncRun.get()
    assert failed.status == "failed"
    assert "2 of 2 aggregates failed" in (failed.error or "")
    assert failed.finished_at is not None
    fake.fail = None
    healed = await services.sync.run()
    assert healed.days == 30
    assert healed.records == 60


async def test_failure_during_write_rolls_back(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(services, fake, NOW)
    await catalog()

    async def crash(self: CostService, component_ids: object = None) -> None:
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(CostService, "refresh_rollups", crash)
    with pytest.raises(RuntimeError):
        await services.sync.run()
    assert await CostRecord.all().count() == 0
    assert (await SyncRun.get()).status == "failed"


async def test_concurrent_runs_in_one_process_produce_one(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    await catalog()
    results = await asyncio.gather(services.sync.run(), services.sync.run(), return_exceptions=True)
    assert sum(isinstance(r, SyncRun) for r in results) == 1
    assert sum(isinstance(r, SyncAlreadyRunning) for r in results) == 1
    assert await SyncRun.all().count() == 1


async def test_two_processes_cannot_both_run(services: Services) -> None:
    """Two SyncService instances stand for two processes: no shared in-process lock. The first
    is held mid-run by a hung OpenCost while the second tries."""
    await catalog()
    standin = StandIn(keys=["checkout", "search", "payments-api"], now=NOW, gate=asyncio.Event())
    async with standin.serve() as url:
        first = sync_service(services, url, now=NOW)
        second = sync_service(services, url, now=NOW)
        running = asyncio.create_task(first.run())
        await asyncio.wait_for(standin.arrived.wait(), 30)
        with pytest.raises(SyncAlreadyRunning):
            await second.run()
        assert standin.gate is not None
        standin.gate.set()
        run = await asyncio.wait_for(running, 30)
    assert run.status == "succeeded"
    assert await SyncRun.all().count() == 1
    assert await CostRecord.all().count() == 90


async def test_running_row_blocks_and_goes_stale(services: Services, fake: FakeOpenCost) -> None:
    at(services, fake, NOW)
    await catalog()
    other = await SyncRun.create(
        started_at=NOW - timedelta(hours=5),
        heartbeat_at=NOW - timedelta(seconds=30),
        status="running",
        trigger="cron",
    )
    with pytest.raises(SyncAlreadyRunning, match=f"sync run {other.id} is in progress"):
        await services.sync.run()
    other.heartbeat_at = NOW - timedelta(minutes=2)
    await other.save()
    assert (await services.sync.run()).status == "succeeded"
    abandoned = await SyncRun.get(id=other.id)
    assert (abandoned.status, abandoned.error) == ("failed", "abandoned: heartbeat lost")


async def test_retention_deletes_old_records(services: Services, fake: FakeOpenCost) -> None:
    at(services, fake, NOW)
    [checkout, *_] = await catalog()
    old_day = NOW.date() - timedelta(days=500)
    await make_records(checkout, [1.0], end=old_day)
    await make_records(checkout, [1.0], end=NOW.date() - timedelta(days=100))
    await services.sync.run()
    assert not await CostRecord.filter(day=old_day).exists()
    assert await CostRecord.filter(day=NOW.date() - timedelta(days=100)).exists()


async def test_backfill_rewrites_recent_days(services: Services, fake: FakeOpenCost) -> None:
    at(services, fake, NOW)
    await catalog()
    await services.sync.run()
    run = await services.sync.run(backfill_days=3)
    assert run.days == 3
    assert run.records == 9
    assert await CostRecord.all().count() == 90  # upserted, not duplicated


async def test_budget_breaches_are_logged_and_published(
    services: Services, fake: FakeOpenCost, caplog: pytest.LogCaptureFixture
) -> None:
    at(services, fake, NOW)
    team = await make_team()
    await make_component(team, "checkout", budget_usd=1.0)
    await make_component(team, "search", budget_usd=10_000.0)
    published: list[tuple[str, str]] = []

    async def publish(channel: str, message: str) -> int:
        published.append((channel, message))
        return 1

    services.sync.publish = publish
    await services.sync.run()
    # the run's end is announced first (costSyncFinished), then each breach
    assert [channel for channel, _ in published] == [
        "finops_gql:sync_finished",
        "finops_gql:budget_exceeded",
    ]
    assert '"name": "checkout"' in published[1][1]
    assert any("budget exceeded: component=checkout" in r.getMessage() for r in caplog.records)


async def test_sync_runs_visible_in_graphql(
    services: Services, fake: FakeOpenCost, client: httpx.AsyncClient
) -> None:
    at(services, fake, NOW)
    await catalog()
    await services.sync.run("cli")
    body = await gql(
        client, "{ syncRuns(limit: 5) { status trigger days records opencostRequests error } }"
    )
    assert body["data"]["syncRuns"] == [
        {
            "status": "succeeded",
            "trigger": "cli",
            "days": 30,
            "records": 90,
            "opencostRequests": 1,
            "error": None,
        }
    ]
