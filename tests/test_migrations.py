"""Migrations build exactly the schema the models declare, indexes included, on both databases."""

from __future__ import annotations

import pytest
from tortoise.exceptions import IntegrityError

from finops_gql.db.setup import connection, dialect
from finops_gql.services import Services
from tests.conftest import make_component, make_records, make_team

pytestmark = pytest.mark.usefixtures("services")

EXPECTED = {
    "component_cost_30d_idx",
    "component_team_cost_idx",
    "component_name_id_idx",
    "cost_record_day_idx",
    "component_cost_desc_idx",  # 0008 replaced 0003's component_top_idx
    "component_team_cost_desc_idx",
    "component_cost_asc_idx",
    "component_team_cost_asc_idx",
    "component_team_name_idx",
    "sync_run_one_running",
    "alert_one_unresolved",
    "alert_status_id_idx",
    "alert_team_id_idx",
    "alert_component_id_idx",
    "alert_event_alert_idx",
    "team_system_daily_team_day_idx",  # 0013: the SYSTEM / DOMAIN breakdowns' cube
    "team_system_daily_system_day_idx",
    "team_cost_desc_idx",  # 0013: teams(orderBy: COST_30D_*)
    "team_cost_asc_idx",
    "system_daily_system_day_idx",  # 0015: the platform's SYSTEM / DOMAIN breakdowns
}


async def test_declared_indexes_exist_after_migrations(services: Services) -> None:
    # A table rebuild on SQLite (AlterField) once dropped indexes silently; the read paths
    # depend on them, so check the migrated schema itself.
    if dialect() == "postgres":
        rows = await connection().execute_query_dict(
            "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'"
        )
    else:
        rows = await connection().execute_query_dict(
            "SELECT name FROM sqlite_master WHERE type = 'index'"
        )
    names = {row["name"] for row in rows}
    assert names >= EXPECTED, EXPECTED - names


async def test_one_record_per_component_and_day(services: Services) -> None:
    component = await make_component(await make_team())
    await make_records(component, [1.0])
    with pytest.raises(IntegrityError):
        await make_records(component, [2.0])
