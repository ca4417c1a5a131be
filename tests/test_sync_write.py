"""The sync's write on PostgreSQL: its COPY keeps the foreign key check's plan (plan_cache_mode
auto, local to the transaction) and the service's setting is back for everything after it; a
write that fails in the middle of its rows leaves nothing of them, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from finops_gql.costs import explorer, sync
from finops_gql.costs.explorer import COLUMNS
from finops_gql.db.models import CostRecord, SyncRun
from finops_gql.db.setup import SERVER_SETTINGS, connection, dialect
from finops_gql.dev import opencost_fake
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from tests.conftest import make_component, make_team

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
SERVICE_MODE = SERVER_SETTINGS["plan_cache_mode"]


async def catalog(services: Services, fake: FakeOpenCost) -> None:
    services.costs.clock = lambda: NOW
    fake.now = NOW
    fake.keys = ["checkout", "search"]
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search")


async def stored() -> list[tuple[Any, ...]]:
    columns = ", ".join(COLUMNS)
    rows = await connection().execute_query_dict(
        f"SELECT component_id, day, cluster, {columns} FROM cost_record "  # noqa: S608 (constants)
        "ORDER BY component_id, day, cluster"
    )
    return [tuple(str(v) for v in row.values()) for row in rows]


async def kept() -> list[Any]:
    """What the write moves beside the records: progress, daily totals, 30-day totals."""
    found: list[Any] = []
    for sql in (
        "SELECT source, aggregate, last_day FROM sync_progress ORDER BY source, aggregate",
        "SELECT team_id, day, total_cost FROM team_daily_cost ORDER BY team_id, day",
        "SELECT id, cost_30d FROM component ORDER BY id",
    ):
        found.append(
            [tuple(map(str, r.values())) for r in await connection().execute_query_dict(sql)]
        )
    return found


async def plan_cache_mode() -> str:
    rows = await connection().execute_query_dict("SELECT current_setting('plan_cache_mode') AS m")
    return str(rows[0]["m"])


def postgres_only() -> None:
    if dialect() != "postgres":
        pytest.skip("plan_cache_mode is PostgreSQL's")


async def test_the_copy_keeps_plans_and_the_setting_comes_back(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths (a first run's COPY straight in, a backfill's stage and upsert) COPY with
    plan_cache_mode auto; what follows in the transaction (the daily totals) and every later
    use of the pool's connections run with the service's setting again."""
    postgres_only()
    during: list[str] = []
    after: list[str] = []
    copy = asyncpg.Connection.copy_records_to_table

    async def spied(self: asyncpg.Connection, table: str, **kwargs: Any) -> Any:
        during.append(await self.fetchval("SELECT current_setting('plan_cache_mode')"))
        return await copy(self, table, **kwargs)

    refresh = explorer.refresh_daily_totals

    async def totals(**kwargs: Any) -> None:
        after.append(await plan_cache_mode())
        await refresh(**kwargs)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", spied)
    monkeypatch.setattr(explorer, "refresh_daily_totals", totals)
    await catalog(services, fake)
    first = await services.sync.run("cli")
    again = await services.sync.run("cli", backfill_days=30)
    assert (first.status, first.records) == ("succeeded", 60)
    assert (again.status, again.records) == ("succeeded", 60)
    assert during == ["auto", "auto"]
    assert after == [SERVICE_MODE, SERVICE_MODE]
    # Every connection the pool hands out afterwards: the service's setting.
    modes = {await plan_cache_mode() for _ in range(5)}
    assert modes == {SERVICE_MODE}


@pytest.mark.parametrize("path", ["first run", "backfill"])
async def test_a_write_failing_mid_rows_leaves_nothing_of_them(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The rows fail half-way through the write (on PostgreSQL: inside the COPY, straight into
    cost_record on a first run, into the stage on a backfill): the run fails, the records are
    those from before the run, no progress or totals moved, and on PostgreSQL the pool's
    connections keep the service's plan_cache_mode."""
    await catalog(services, fake)
    if path == "backfill":
        assert (await services.sync.run("cli")).status == "succeeded"
        daily = opencost_fake.daily_total
        monkeypatch.setattr(opencost_fake, "daily_total", lambda key, day: 2 * daily(key, day))
    before = await stored()
    beside = await kept()
    runs = await SyncRun.all().count()
    records = sync.Answer.records

    def failing(self: sync.Answer, *args: Any) -> Iterator[list[Any]]:
        for n, row in enumerate(records(self, *args)):
            if n == 25:
                raise RuntimeError("killed mid-write")
            yield row

    monkeypatch.setattr(sync.Answer, "records", failing)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        await services.sync.run("cli", backfill_days=30 if path == "backfill" else None)
    assert await stored() == before
    assert await CostRecord.all().count() == len(before)
    assert await kept() == beside
    failed = await SyncRun.all().order_by("-started_at", "-id").first()
    assert failed is not None
    assert await SyncRun.all().count() == runs + 1
    assert failed.status == "failed"
    assert "killed mid-write" in (failed.error or "")
    if dialect() == "postgres":
        assert {await plan_cache_mode() for _ in range(5)} == {SERVICE_MODE}
    # And the next run writes everything.
    monkeypatch.setattr(sync.Answer, "records", records)
    healed = await services.sync.run("cli", backfill_days=30 if path == "backfill" else None)
    assert healed.status == "succeeded"
    assert len(await stored()) == 60
