"""Sync faults (issue 13): a killed sync loses its lease instead of blocking every sync for an hour;
many aggregates go out a few at a time, transient failures are retried, and the aggregates that
still fail are recorded (a `partial` run) while the others commit; the next run fetches exactly
their missing days. On SQLite and PostgreSQL, against OpenCost stand-ins over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tortoise.migrations.api.migrate import migrate as tortoise_migrate

from finops_gql.config import ConfigError, Settings
from finops_gql.costs.sync import ABANDONED, SyncAlreadyRunning, SyncLeaseLost
from finops_gql.db.models import Component, CostRecord, SyncProgress, SyncRun
from finops_gql.db.setup import close_db, connection, init_db, tortoise_config
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from finops_gql.worker import cost_sync_job
from tests.conftest import gql, make_component, make_team
from tests.proc import cli
from tests.sync_standin import StandIn, sync_service

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
FIRST, LAST = date(2026, 2, 13), date(2026, 3, 14)  # the 30 days a first run at NOW fetches


def aggregate(i: int) -> str:
    return f"label:team{i:03}"


async def catalog_of(count: int) -> list[Component]:
    """`count` components, each alone in its own aggregate (key `checkout` in each)."""
    team = await make_team()
    return [
        await make_component(
            team, f"svc-{i:03}", opencost_aggregate=aggregate(i), opencost_key="checkout"
        )
        for i in range(count)
    ]


def window(first: date, last: date) -> str:
    return f"{first}T00:00:00Z,{last + timedelta(days=1)}T00:00:00Z"


# -- partial runs, retries, bounded fan-out ---------------------------------------------------------


async def test_101_aggregates_one_failing_is_a_partial_run(
    services: Services, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    components = await catalog_of(101)
    broken = aggregate(50)
    # An OpenCost that refuses more than 4 requests at once: all 101 at once failed every run.
    standin = StandIn(keys=["checkout"], now=NOW, failures={broken: -1}, capacity=4)
    async with standin.serve() as url:
        run = await sync_service(services, url, now=NOW, concurrency=4, retries=3).run()

    assert run.status == "partial"
    assert standin.max_inflight <= 4
    assert await CostRecord.all().count() == 100 * 30
    assert await CostRecord.filter(component=components[50]).count() == 0
    assert run.records == 3000
    assert run.components == 100
    assert standin.per_aggregate[broken] == 4  # 1 + SYNC_RETRIES, then given up
    assert all(n == 1 for a, n in standin.per_aggregate.items() if a != broken)
    assert run.opencost_requests == 100 + 4
    assert run.error is not None
    assert run.error.startswith(f"1 of 101 aggregates failed: {broken}: ")
    assert "HTTP 500" in run.error
    progress = {p.aggregate: p.last_day for p in await SyncProgress.all()}
    assert len(progress) == 100
    assert broken not in progress
    assert set(progress.values()) == {LAST}
    assert any(
        r.levelname == "WARNING" and "partial" in r.getMessage() and broken in r.getMessage()
        for r in caplog.records
    )

    stored = await SyncRun.get(id=run.id)
    assert stored.status == "partial"
    body = await gql(
        client,
        "{ syncRuns(limit: 1) { status error failedAggregates "
        "{ aggregate error attempts firstDay lastDay } } }",
    )
    [shown] = body["data"]["syncRuns"]
    assert shown["status"] == "partial"
    [failure] = shown["failedAggregates"]
    assert failure["aggregate"] == broken
    assert failure["attempts"] == 4
    assert "HTTP 500" in failure["error"]
    assert (failure["firstDay"], failure["lastDay"]) == (str(FIRST), str(LAST))


async def test_flaky_aggregate_succeeds_after_retries(services: Services) -> None:
    await catalog_of(3)
    standin = StandIn(keys=["checkout"], now=NOW, failures={aggregate(1): 2})
    async with standin.serve() as url:
        run = await sync_service(services, url, now=NOW, retries=3).run()
    assert run.status == "succeeded"
    assert run.failed_aggregates is None
    assert run.error is None
    assert standin.per_aggregate[aggregate(1)] == 3
    assert run.opencost_requests == 5
    assert await CostRecord.all().count() == 90


@pytest.mark.parametrize("status", [400, 404])
async def test_client_errors_are_not_retried(services: Services, status: int) -> None:
    await catalog_of(2)
    standin = StandIn(keys=["checkout"], now=NOW, failures={aggregate(0): -1}, fail_status=status)
    async with standin.serve() as url:
        run = await sync_service(services, url, now=NOW, retries=3).run()
    assert run.status == "partial"
    assert standin.per_aggregate[aggregate(0)] == 1
    assert [f["attempts"] for f in run.failed_aggregates or []] == [1]


async def test_retries_are_bounded_by_the_setting(services: Services) -> None:
    await catalog_of(2)
    standin = StandIn(keys=["checkout"], now=NOW, failures={aggregate(0): -1}, fail_status=503)
    async with standin.serve() as url:
        run = await sync_service(services, url, now=NOW, retries=1).run()
    assert run.status == "partial"
    assert standin.per_aggregate[aggregate(0)] == 2


async def test_concurrent_requests_never_exceed_the_setting(services: Services) -> None:
    await catalog_of(12)
    # Each request waits until 3 are in flight: the bound is reached, and never passed.
    standin = StandIn(keys=["checkout"], now=NOW, hold_until=3)
    async with standin.serve() as url:
        run = await sync_service(services, url, now=NOW, concurrency=3).run()
    assert run.status == "succeeded"
    assert len(standin.requests) == 12
    assert standin.max_inflight == 3


async def test_every_aggregate_failing_writes_nothing(services: Services) -> None:
    await catalog_of(2)
    standin = StandIn(
        keys=["checkout"], now=NOW, failures={aggregate(0): -1, aggregate(1): -1}, fail_status=500
    )
    async with standin.serve() as url:
        with pytest.raises(Exception, match="2 of 2 aggregates failed"):
            await sync_service(services, url, now=NOW, retries=0).run()
    assert await CostRecord.all().count() == 0
    assert await SyncProgress.all().count() == 0
    failed = await SyncRun.get()
    assert failed.status == "failed"
    assert len(failed.failed_aggregates or []) == 2


# -- healing: the next run fetches exactly the failed aggregates' missing days ---------------------


async def test_next_run_heals_only_the_failed_aggregate(services: Services) -> None:
    components = await catalog_of(3)
    broken = aggregate(1)
    standin = StandIn(keys=["checkout"], now=NOW, failures={broken: -1})
    async with standin.serve() as url:
        assert (await sync_service(services, url, now=NOW, retries=0).run()).status == "partial"
        standin.failures.clear()
        before = dict(standin.per_aggregate)
        healed = await sync_service(services, url, now=NOW).run()
    assert healed.status == "succeeded"
    requested = {a: n - before.get(a, 0) for a, n in standin.per_aggregate.items()}
    assert {a: n for a, n in requested.items() if n} == {broken: 1}
    assert standin.requests[-1]["window"] == window(FIRST, LAST)
    assert (healed.first_day, healed.last_day, healed.records) == (FIRST, LAST, 30)
    for component in components:
        assert await CostRecord.filter(component=component).count() == 30


async def test_broken_aggregate_does_not_make_the_others_refetch(services: Services) -> None:
    await catalog_of(3)
    broken = aggregate(2)
    day = timedelta(days=1)
    standin = StandIn(keys=["checkout"], now=NOW)
    async with standin.serve() as url:
        assert (await sync_service(services, url, now=NOW).run()).status == "succeeded"
        # Next night the aggregate breaks; it misses LAST+1 ...
        standin.failures[broken] = -1
        await sync_service(services, url, now=NOW + day, retries=0).run()
        # ... and two nights later it still fails: the others fetch only their two new days.
        standin.requests.clear()
        run = await sync_service(services, url, now=NOW + 3 * day, retries=0).run()
        assert run.status == "partial"
        windows = {r["aggregate"]: r["window"] for r in standin.requests}
        assert windows == {
            aggregate(0): window(LAST + 2 * day, LAST + 3 * day),
            aggregate(1): window(LAST + 2 * day, LAST + 3 * day),
            broken: window(LAST + day, LAST + 3 * day),
        }
        # It answers again: it alone fetches, exactly the three days it misses, in one request.
        standin.failures.clear()
        standin.requests.clear()
        healed = await sync_service(services, url, now=NOW + 3 * day).run()
    assert healed.status == "succeeded"
    assert [(r["aggregate"], r["window"]) for r in standin.requests] == [
        (broken, window(LAST + day, LAST + 3 * day))
    ]
    assert (healed.days, healed.records) == (3, 3)
    assert await CostRecord.all().count() == 3 * 33


# -- the lease ------------------------------------------------------------------------------------


async def test_stalled_run_that_lost_its_lease_writes_nothing(services: Services) -> None:
    await catalog_of(2)
    hung = StandIn(keys=["checkout"], now=NOW, gate=asyncio.Event())
    answering = StandIn(keys=["checkout"], now=NOW)
    async with hung.serve() as hung_url, answering.serve() as url:
        stalled = asyncio.create_task(sync_service(services, hung_url, now=NOW).run())
        await asyncio.wait_for(hung.arrived.wait(), 30)
        # Two minutes later by the other process's clock: no heartbeat for longer than the lease
        # (this one renews every 15 s, so its heartbeat stayed at NOW).
        successor = sync_service(services, url, now=NOW + timedelta(minutes=2))
        took_over = await successor.run()
        assert took_over.status == "succeeded"
        assert hung.gate is not None
        hung.gate.set()
        with pytest.raises(SyncLeaseLost, match="lost its lease"):
            await asyncio.wait_for(stalled, 30)
    runs = await SyncRun.all().order_by("id")
    assert [(r.status, r.error) for r in runs] == [("failed", ABANDONED), ("succeeded", None)]
    assert await CostRecord.all().count() == 60


async def test_cancelled_run_releases_the_lease(services: Services) -> None:
    await catalog_of(1)
    hung = StandIn(keys=["checkout"], now=NOW, gate=asyncio.Event())
    async with hung.serve() as url:
        sync = sync_service(services, url, now=NOW)
        task = asyncio.create_task(sync.run())
        await asyncio.wait_for(hung.arrived.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run = await SyncRun.get()
    assert run.status == "failed"
    assert "cancelled" in (run.error or "")


async def test_sigkilled_sync_is_abandoned_once_its_lease_expires(
    services: Services, settings: Settings
) -> None:
    await catalog_of(3)
    hung = StandIn(keys=["checkout"], gate=asyncio.Event())
    answering = StandIn(keys=["checkout"])
    async with hung.serve() as hung_url, answering.serve() as url:
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "OPENCOST_URL": hung_url,
            "OPENCOST_TIMEOUT_SECONDS": "300",
            "SYNC_HEARTBEAT_SECONDS": "0.5",
            "SYNC_LEASE_SECONDS": "5",
            "LOG_LEVEL": "WARNING",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "finops_gql.cli",
            "sync",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(hung.arrived.wait(), 60)  # mid-run, OpenCost hanging
            doomed = await SyncRun.get(status="running")
            # The lease is renewed while it waits.
            for _ in range(300):
                row = await SyncRun.get(id=doomed.id)
                if row.heartbeat_at is not None and row.heartbeat_at > doomed.started_at:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the running sync never renewed its heartbeat")
            successor = sync_service(services, url, heartbeat_s=1, lease_s=5)
            with pytest.raises(SyncAlreadyRunning, match=f"sync run {doomed.id} is in progress"):
                await successor.run()
        finally:
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 30)
        assert process.returncode == -signal.SIGKILL
        assert (await SyncRun.get(id=doomed.id)).status == "running"

        # The next sync proceeds once the heartbeat is older than the lease (5 s here).
        run = None
        for _ in range(600):
            try:
                run = await successor.run()
                break
            except SyncAlreadyRunning:
                await asyncio.sleep(0.1)
        assert run is not None, "the dead run was never abandoned"
    assert run.status == "succeeded"
    assert run.records == 90
    dead = await SyncRun.get(id=doomed.id)
    assert (dead.status, dead.error) == ("failed", ABANDONED)
    assert dead.finished_at is not None
    assert await SyncRun.filter(status="running").count() == 0


async def test_paused_cli_sync_that_lost_its_lease_writes_nothing(
    services: Services, settings: Settings
) -> None:
    """A process frozen past its lease (SIGSTOP: a paused VM, a long GC) is abandoned; when it
    wakes up it must not write over its successor's run."""
    await catalog_of(2)
    hung = StandIn(keys=["checkout"], gate=asyncio.Event())
    answering = StandIn(keys=["checkout"])
    async with hung.serve() as hung_url, answering.serve() as url:
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "OPENCOST_URL": hung_url,
            "SYNC_HEARTBEAT_SECONDS": "0.5",
            "SYNC_LEASE_SECONDS": "2",
            "LOG_LEVEL": "ERROR",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "finops_gql.cli",
            "sync",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(hung.arrived.wait(), 60)
            process.send_signal(signal.SIGSTOP)
            successor = sync_service(services, url, heartbeat_s=0.5, lease_s=2)
            run = None
            for _ in range(600):
                try:
                    run = await successor.run()
                    break
                except SyncAlreadyRunning:
                    await asyncio.sleep(0.1)
            assert run is not None, "the frozen run was never abandoned"
            assert run.status == "succeeded"
        finally:
            process.send_signal(signal.SIGCONT)
        assert hung.gate is not None
        hung.gate.set()
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1, err
    assert b"lost its lease" in err
    assert b"nothing was written" in err
    assert b"Traceback" not in err
    runs = await SyncRun.all().order_by("id")
    assert [(r.status, r.error) for r in runs] == [("failed", ABANDONED), ("succeeded", None)]
    assert await CostRecord.all().count() == 60


async def test_metrics_show_running_stale_abandoned_and_partial_runs(
    services: Services, client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search", opencost_aggregate="namespace")
    client.headers.pop("Authorization")

    def gauges(text: str) -> dict[str, float]:
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name.startswith("finops_gql_sync_")
        }

    now = datetime.now(UTC)
    other = await SyncRun.create(started_at=now, heartbeat_at=now, status="running", trigger="cron")
    shown = gauges((await client.get("/metrics")).text)
    assert shown["finops_gql_sync_running"] == 1
    assert shown["finops_gql_sync_running_stale"] == 0

    other.heartbeat_at = now - timedelta(minutes=5)  # its process died
    await other.save()
    shown = gauges((await client.get("/metrics")).text)
    assert shown["finops_gql_sync_running"] == 0
    assert shown["finops_gql_sync_running_stale"] == 1
    assert shown["finops_gql_sync_abandoned_runs"] == 0

    services.sync.concurrency = 1  # in order: label:app answers, then namespace fails
    fake.fail = "after_first"
    run = await services.sync.run()
    assert run.status == "partial"
    shown = gauges((await client.get("/metrics")).text)
    assert shown["finops_gql_sync_running"] == 0
    assert shown["finops_gql_sync_running_stale"] == 0
    assert shown["finops_gql_sync_abandoned_runs"] == 1
    assert shown["finops_gql_sync_last_success"] == 0
    assert shown["finops_gql_sync_last_failed_aggregates"] == 1


# -- the worker, the CLI, settings and the migration ----------------------------------------------


async def test_worker_job_reports_failed_aggregates(services: Services, fake: FakeOpenCost) -> None:
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search", opencost_aggregate="namespace")
    services.sync.concurrency = 1
    fake.fail = "after_first"
    result = await cost_sync_job({"services": services}, "cron")
    assert result["status"] == "partial"
    assert result["failedAggregates"] == ["namespace"]


async def test_cli_sync_partial_says_so_and_exits_1(services: Services, settings: Settings) -> None:
    await catalog_of(2)
    standin = StandIn(keys=["checkout"], failures={aggregate(1): -1}, fail_status=400)
    async with standin.serve() as url:
        env = {"DATABASE_URL": settings.database_url, "OPENCOST_URL": url, "LOG_LEVEL": "ERROR"}
        code, out, err = await cli("sync", env=env)
    assert code == 1, err
    assert "partial" in out
    assert "30 records for 1 components" in out
    assert f"{aggregate(1)}: OpenCost answered HTTP 400" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNC_CONCURRENCY": "0"}, "SYNC_CONCURRENCY must be >= 1"),
        ({"SYNC_CONCURRENCY": "1000"}, "SYNC_CONCURRENCY must be <= 64"),
        ({"SYNC_RETRIES": "-1"}, "SYNC_RETRIES must be >= 0"),
        ({"SYNC_RETRIES": "50"}, "SYNC_RETRIES must be <= 10"),
        ({"SYNC_RETRY_BACKOFF_SECONDS": "nan"}, "SYNC_RETRY_BACKOFF_SECONDS must be a finite"),
        ({"SYNC_HEARTBEAT_SECONDS": "0"}, "SYNC_HEARTBEAT_SECONDS must be > 0"),
        ({"SYNC_LEASE_SECONDS": "inf"}, "SYNC_LEASE_SECONDS must be a finite"),
        (
            {"SYNC_HEARTBEAT_SECONDS": "30", "SYNC_LEASE_SECONDS": "45"},
            r"SYNC_LEASE_SECONDS \(45.0\) must be at least twice SYNC_HEARTBEAT_SECONDS \(30.0\)",
        ),
    ],
)
def test_bad_sync_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_sync_settings_defaults_and_overrides() -> None:
    default = Settings.from_env({})
    assert (
        default.sync_concurrency,
        default.sync_retries,
        default.sync_retry_backoff_s,
        default.sync_heartbeat_s,
        default.sync_lease_s,
    ) == (4, 3, 1.0, 15.0, 60.0)
    changed = Settings.from_env(
        {
            "SYNC_CONCURRENCY": "8",
            "SYNC_RETRIES": "0",
            "SYNC_RETRY_BACKOFF_SECONDS": "0.5",
            "SYNC_HEARTBEAT_SECONDS": "5",
            "SYNC_LEASE_SECONDS": "20",
        }
    )
    assert (changed.sync_concurrency, changed.sync_retries, changed.sync_lease_s) == (8, 0, 20)


async def test_migration_seeds_progress_from_the_last_succeeded_run(tmp_path: Path) -> None:
    """Before 0005 every run was all-or-nothing: each aggregate of the catalog was stored up to the
    latest succeeded run's last day, and the first run after the upgrade must not re-fetch."""
    url = f"sqlite://{tmp_path / 'upgrade.sqlite3'}"
    config = tortoise_config(url)
    try:
        await tortoise_migrate(config=config, target="models.0004_one_running_sync")
        await close_db()
        await init_db(url)
        db = connection()
        await db.execute_script(
            "INSERT INTO team (id, name, slug, created_at, updated_at) VALUES "
            "('6d9b5c1e-0000-4000-8000-000000000001', 'P', 'p', '2026-01-01', '2026-01-01');"
            "INSERT INTO component (id, name, team_id, opencost_aggregate, cost_30d, "
            "created_at, updated_at) VALUES "
            "('6d9b5c1e-0000-4000-8000-000000000002', 'a', "
            "'6d9b5c1e-0000-4000-8000-000000000001', 'label:app', 0, '2026-01-01', '2026-01-01'),"
            "('6d9b5c1e-0000-4000-8000-000000000003', 'b', "
            "'6d9b5c1e-0000-4000-8000-000000000001', 'label:app', 0, '2026-01-01', '2026-01-01'),"
            "('6d9b5c1e-0000-4000-8000-000000000004', 'c', "
            "'6d9b5c1e-0000-4000-8000-000000000001', 'namespace', 0, '2026-01-01', '2026-01-01');"
            "INSERT INTO sync_run (started_at, status, trigger, last_day, days, components, "
            "records, opencost_requests) VALUES "
            "('2026-03-14 03:00:00+00:00', 'succeeded', 'cron', '2026-03-13', 1, 3, 3, 2),"
            "('2026-03-15 03:00:00+00:00', 'succeeded', 'cron', '2026-03-14', 1, 3, 3, 2),"
            "('2026-03-16 03:00:00+00:00', 'failed', 'cron', '2026-03-15', 0, 0, 0, 2);"
        )
        await close_db()
        await tortoise_migrate(config=config)
        await close_db()
        await init_db(url)
        rows = await connection().execute_query_dict(
            "SELECT source, aggregate, last_day FROM sync_progress ORDER BY aggregate"
        )
        assert [(r["source"], r["aggregate"], str(r["last_day"])) for r in rows] == [
            ("default", "label:app", "2026-03-14"),
            ("default", "namespace", "2026-03-14"),
        ]
    finally:
        await close_db()
