"""system_daily_cost, the platform SYSTEM / DOMAIN breakdowns' pre-aggregate, stays equal to the
figures summed from cost_record directly: after a sync, a partial re-sync of some days, retention,
a component moved or deleted, a catalog import that moves components between systems; on both
databases, with a real sync from the OpenCost stand-in over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from finops_gql.costs import explorer
from finops_gql.costs.windows import money
from finops_gql.db.models import Component, CostRecord, System, Team
from finops_gql.db.setup import connection
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from tests.conftest import gql, make_component, make_team

pytestmark = pytest.mark.usefixtures("services")

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
LAST = date(2026, 3, 14)  # the last complete day at NOW
EXAMPLE = (Path(__file__).parent.parent / "examples" / "catalog-info.yaml").read_text()

Key = tuple[str | None, date]


def _key(system_id: object, day: object) -> Key:
    system = None if system_id is None else str(uuid.UUID(str(system_id)))
    return system, day if isinstance(day, date) else date.fromisoformat(str(day))


async def from_records() -> dict[Key, tuple[float, ...]]:
    """Each (system, day)'s column sums, from cost_record and the components' systems."""
    sums = ", ".join(f"SUM(r.{c}) AS {c}" for c in explorer.COLUMNS)
    rows = await connection().execute_query_dict(
        f"SELECT c.system_id AS system_id, r.day AS day, {sums} FROM cost_record r "  # noqa: S608
        "JOIN component c ON c.id = r.component_id GROUP BY c.system_id, r.day"
    )
    return {
        _key(r["system_id"], r["day"]): tuple(round(r[c], 6) for c in explorer.COLUMNS)
        for r in rows
    }


async def stored() -> dict[Key, tuple[float, ...]]:
    columns = ", ".join(explorer.COLUMNS)
    rows = await connection().execute_query_dict(
        f"SELECT system_id, day, {columns} FROM system_daily_cost"  # noqa: S608
    )
    found: dict[Key, tuple[float, ...]] = {}
    for r in rows:
        key = _key(r["system_id"], r["day"])
        assert key not in found, f"two rows for {key}"
        found[key] = tuple(round(r[c], 6) for c in explorer.COLUMNS)
    return found


async def assert_true_to_records() -> dict[Key, tuple[float, ...]]:
    want = await from_records()
    assert await stored() == want
    return want


def at(services: Services, fake: FakeOpenCost, now: datetime) -> None:
    services.costs.clock = lambda: now
    fake.now = now


async def catalog() -> tuple[Team, Team, System, System]:
    """payments (checkout, payments-api in shop), search (search in engine, cron in none)."""
    payments, search = await make_team("payments"), await make_team("search")
    shop = await System.create(id=uuid.uuid4(), name="Shop", slug="shop", owner=payments)
    engine = await System.create(id=uuid.uuid4(), name="Engine", slug="engine", owner=search)
    await make_component(payments, "checkout", system=shop)
    await make_component(payments, "payments-api", system=shop)
    await make_component(search, "search", system=engine)
    await make_component(search, "cron")
    return payments, search, shop, engine


async def test_sync_resync_and_retention_keep_the_system_totals(
    services: Services, fake: FakeOpenCost
) -> None:
    at(services, fake, NOW)
    _, search, shop, engine = await catalog()
    fake.keys[:] = ["checkout", "payments-api", "search", "cron", "indexer"]
    run = await services.sync.run("cli")
    assert run.status == "succeeded", run.error
    first = await assert_true_to_records()
    assert {s for s, _ in first} == {str(shop.id), str(engine.id), None}
    assert len(first) == 3 * 30

    # A partial re-sync: a component new in shop (owned by search) gets the 5 days re-synced,
    # the other 25 days of shop stay as they were.
    await make_component(search, "indexer", system=shop)
    run = await services.sync.run("cli", backfill_days=5)
    assert run.status == "succeeded", run.error
    again = await assert_true_to_records()
    changed = {day for (s, day), sums in again.items() if first[s, day] != sums}
    assert changed == {LAST - timedelta(days=i) for i in range(5)}

    # Retention: the days before the cutoff go, with their system totals.
    services.sync.retention_days = 10
    at(services, fake, NOW + timedelta(days=1))
    run = await services.sync.run("cli")
    assert run.status == "succeeded", run.error
    kept = await assert_true_to_records()
    cutoff = LAST + timedelta(days=1) - timedelta(days=10)
    assert min(day for _, day in kept) == cutoff


async def test_moves_and_deletions_keep_the_system_totals(
    services: Services, fake: FakeOpenCost, client: httpx.AsyncClient
) -> None:
    at(services, fake, NOW)
    _, search, shop, _ = await catalog()
    fake.keys[:] = ["checkout", "payments-api", "search", "cron"]
    assert (await services.sync.run("cli")).status == "succeeded"
    await assert_true_to_records()
    checkout = await Component.get(name="checkout")
    # To another team: the system totals are unchanged, and still true.
    before = await stored()
    await services.catalog.update_component(checkout.id, team_id=search.id)
    assert await assert_true_to_records() == before
    # Deleted: its days leave shop.
    await services.catalog.delete_component(checkout.id)
    after = await assert_true_to_records()
    assert sum(v[-1] for (s, _), v in after.items() if s == str(shop.id)) < sum(
        v[-1] for (s, _), v in before.items() if s == str(shop.id)
    )
    # The platform breakdown by system reads them: its total is every record's.
    body = await gql(
        client,
        """query ($r: DateRange!) { costBreakdown(range: $r, groupBy: SYSTEM) {
             total nodes { key total } } }""",
        {"r": {"from": "2026-02-13", "to": "2026-03-14"}},
    )
    assert "errors" not in body, body
    nodes = {n["key"]: n["total"] for n in body["data"]["costBreakdown"]["nodes"]}
    by_system: dict[str, float] = {}
    for (s, _), v in after.items():
        name = s or explorer.UNASSIGNED
        by_system[name] = by_system.get(name, 0.0) + v[-1]
    assert nodes == {k: money(v) for k, v in by_system.items()}


async def test_catalog_import_that_moves_components_between_systems(services: Services) -> None:
    from finops_gql.catalog.backstage import import_catalog

    await import_catalog(EXAMPLE, "example")
    checkout = await Component.get(name="checkout")
    assert checkout.system_id is not None  # type: ignore[attr-defined]
    at_days = [LAST - timedelta(days=i) for i in range(3)]
    synced = datetime.now(UTC).replace(microsecond=0)
    for day in at_days:
        await CostRecord.create(
            component=checkout,
            day=day,
            cpu_cost=1.0,
            total_cost=1.0,
            currency="USD",
            synced_at=synced,
        )
    await explorer.refresh_daily_totals()
    before = await assert_true_to_records()
    # checkout leaves its system: the import rewrites its team's cube and both systems' days.
    moved = _without_system(EXAMPLE, "checkout")
    assert moved != EXAMPLE
    await import_catalog(moved, "example")
    assert (await Component.get(name="checkout")).system_id is None  # type: ignore[attr-defined]
    after = await assert_true_to_records()
    assert after != before


def _without_system(text: str, component: str) -> str:
    """The catalog with `component`'s spec.system line removed."""
    documents = text.split("\n---")
    for i, document in enumerate(documents):
        if "kind: Component" in document and f"  name: {component}\n" in document:
            lines = [line for line in document.split("\n") if not line.startswith("  system:")]
            documents[i] = "\n".join(lines)
    return "\n---".join(documents)
