"""db/inline.py: short reads in the loop's thread on SQLite give what the driver gives."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from finops_gql.db import inline
from finops_gql.db.setup import SqlParams, connection, dialect
from tests.conftest import make_component, make_team

pytestmark = pytest.mark.usefixtures("services")


def _sql() -> tuple[str, list[object]]:
    mark = SqlParams()
    where = f"cost_30d >= {mark(0)}"
    return f"SELECT name, cost_30d FROM component WHERE {where} ORDER BY name", mark.values  # noqa: S608


async def _driver_rows() -> list[tuple[Any, ...]]:
    sql, values = _sql()
    _, rows = await connection().execute_query(sql, values)
    return [tuple(row) for row in rows]


async def test_rows_equal_the_drivers_by_position_and_by_name() -> None:
    team = await make_team()
    await make_component(team, "b", cost_30d=2.5)
    await make_component(team, "a", cost_30d=71.30000000000001)
    sql, values = _sql()
    rows = await inline.fetch_rows(sql, values)
    assert (
        [tuple(row) for row in rows]
        == await _driver_rows()
        == [
            ("a", 71.30000000000001),
            ("b", 2.5),
        ]
    )
    named = await inline.fetch_rows(sql, values, named=True)
    assert [(row["name"], row["cost_30d"]) for row in named] == [
        ("a", 71.30000000000001),
        ("b", 2.5),
    ]
    if dialect() == "sqlite":
        assert inline._READERS  # read in the loop's thread, not through the driver


async def test_inside_a_transaction_the_read_sees_its_uncommitted_writes() -> None:
    team = await make_team()
    async with in_transaction():
        await make_component(team, "pending", cost_30d=1.0)
        sql, values = _sql()
        assert [tuple(row) for row in await inline.fetch_rows(sql, values)] == [("pending", 1.0)]


async def test_a_busy_reader_falls_back_to_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    await make_component(await make_team(), "c", cost_30d=3.0)

    def busy(filename: str) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(inline, "reader", busy)
    sql, values = _sql()
    assert [tuple(row) for row in await inline.fetch_rows(sql, values)] == [("c", 3.0)]


async def test_close_forgets_the_readers() -> None:
    sql, values = _sql()
    await inline.fetch_rows(sql, values)
    inline.close()
    assert not inline._READERS
    await inline.fetch_rows(sql, values)  # opens again
