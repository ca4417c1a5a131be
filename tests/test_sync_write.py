"""The sync's write on PostgreSQL: its COPY keeps the foreign key check's plan (plan_cache_mode
auto: planned for each row, 300,000 rows took twice as long); a write that fails in the middle of
its rows leaves nothing of them, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from finops_gql.costs import sync
from finops_gql.costs.explorer import COLUMNS
from finops_gql.db.models import CostRecord, SyncRun
from finops_gql.db.setup import connection, dialect
from finops_gql.dev import opencost_fake
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from tests.conftest import make_component, make_team, sync_catalog

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)


async def catalog(services: Services, fake: FakeOpenCost) -> None:
    await sync_catalog(services, fake, NOW)


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


async def test_the_copy_keeps_plans(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths (a first run's COPY straight in, a backfill's stage and upsert) COPY with
    plan_cache_mode auto: under force_custom_plan, PostgreSQL planned the foreign key check's
    saved query again for each row (db/setup.py, SERVER_SETTINGS)."""
    if dialect() != "postgres":
        pytest.skip("plan_cache_mode is PostgreSQL's")
    during: list[str] = []
    copy = asyncpg.Connection.copy_records_to_table

    async def spied(self: asyncpg.Connection, table: str, **kwargs: Any) -> Any:
        during.append(await self.fetchval("SELECT current_setting('plan_cache_mode')"))
        return await copy(self, table, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", spied)
    await catalog(services, fake)
    first = await services.sync.run("cli")
    again = await services.sync.run("cli", backfill_days=30)
    assert (first.status, first.records) == ("succeeded", 60)
    assert (again.status, again.records) == ("succeeded", 60)
    assert during == ["auto", "auto"]


@pytest.mark.parametrize("path", ["first run", "backfill"])
async def test_a_write_failing_mid_rows_leaves_nothing_of_them(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The rows fail half-way through the write (on PostgreSQL: inside the COPY, straight into
    cost_record on a first run, into the stage on a backfill): the run fails, the records are
    those from before the run, no progress or totals moved."""
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
    # And the next run writes everything.
    monkeypatch.setattr(sync.Answer, "records", records)
    healed = await services.sync.run("cli", backfill_days=30 if path == "backfill" else None)
    assert healed.status == "succeeded"
    assert len(await stored()) == 60


CORRELATED = (
    "SELECT c.id AS id, COALESCE((SELECT SUM(r.total_cost) FROM cost_record r "
    "WHERE r.component_id = c.id AND r.day >= {0} AND r.day <= {1}), 0) AS cost_30d, "
    "(SELECT MAX(r.synced_at) FROM cost_record r WHERE r.component_id = c.id) AS synced "
    "FROM component c ORDER BY c.id"
)


async def rollups() -> list[tuple[str, float, object]]:
    rows = await connection().execute_query_dict(
        "SELECT id, cost_30d, cost_synced_at FROM component ORDER BY id"
    )
    return [(str(r["id"]), r["cost_30d"], r["cost_synced_at"]) for r in rows]


async def test_rollups_are_the_correlated_sums_on_both_databases(services: Services) -> None:
    """refresh_rollups (PostgreSQL: one grouped pass over the records) gives each component
    what the per-component subqueries say: its 30 days' sum, 0 with records only outside them
    or none, the newest synced_at of any record (None without records); a chosen subset
    changes those components only."""
    from finops_gql.costs.windows import rollup_range
    from finops_gql.db.setup import placeholders, sql_value
    from tests.conftest import make_records

    team = await make_team()
    inside = await make_component(team, "inside")
    edges = await make_component(team, "edges")
    old = await make_component(team, "old")
    await make_component(team, "none")
    start, end = rollup_range(services.costs.clock())
    await make_records(inside, [1.25, 2.5, 3.75])
    # One record the day before the 30 days, the first and the last of them.
    await make_records(edges, [100.0, 0.5, *([0.0] * 28), 0.25], end=end)
    await make_records(old, [7.0, 8.0], end=start - timedelta(days=3))
    marks = placeholders(2)
    expected = await connection().execute_query_dict(
        CORRELATED.format(*marks), [sql_value(start), sql_value(end)]
    )
    await services.costs.refresh_rollups()
    found = await rollups()
    assert [(r[0], r[1], r[2]) for r in found] == [
        (str(e["id"]), e["cost_30d"], e["synced"]) for e in expected
    ]
    by_id = {r[0]: r for r in found}
    assert by_id[str(edges.id)][1] == pytest.approx(0.75)
    assert by_id[str(old.id)][1] == 0
    assert by_id[str(old.id)][2] is not None

    # A subset: the others keep what they had (here: zeroed by hand), the chosen are refreshed.
    await connection().execute_query("UPDATE component SET cost_30d = 0, cost_synced_at = NULL")
    await services.costs.refresh_rollups([inside.id, old.id])
    after = {r[0]: r for r in await rollups()}
    assert after[str(inside.id)] == by_id[str(inside.id)]
    assert after[str(old.id)] == by_id[str(old.id)]
    assert after[str(edges.id)][1:] == (0, None)
    await services.costs.refresh_rollups([])  # nothing chosen: nothing changes
    assert {r[0]: r for r in await rollups()} == after
