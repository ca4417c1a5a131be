"""The showback export: GET /api/v1/cost/export.csv and `finops-gql export`, parsed back by the
csv module, on SQLite and PostgreSQL (the CLI on a fresh SQLite file, as a user runs it)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from finops_gql.app import create_app
from finops_gql.config import Settings
from finops_gql.costs.export import HEADER, showback_csv
from finops_gql.db.models import Component, CostRecord, System, Team
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from tests.conftest import QueryCounter, make_component, make_team, today, token
from tests.proc import EXAMPLE, cli
from tests.test_authz import client_as
from tests.test_cli import env  # noqa: F401 (the CLI's environment fixture)

pytestmark = pytest.mark.usefixtures("services")

QUOTED = 'shop, "EU"'
MULTILINE = "two\nlines"


def last_month() -> date:
    return (today().replace(day=1) - timedelta(days=1)).replace(day=1)


async def record(component: Component, day: date, **money: float) -> None:
    await CostRecord.create(
        component=component,
        day=day,
        currency="USD",
        synced_at=datetime.now(UTC).replace(microsecond=0),
        total_cost=sum(money.values()),
        **money,
    )


async def catalog() -> dict[str, Any]:
    """Last month: checkout 0.1 + 0.2 cpu and 1.23456789012 memory (two days); an EU component
    with a comma and quotes in its name (in a sub-team); one with a line break (another team);
    one with cost only outside the month; one with no cost at all."""
    payments, search = await make_team("payments"), await make_team("search")
    eu = await make_team("payments-eu")
    eu.parent_id = str(payments.id)
    await eu.save()
    shop = await System.create(id=uuid.uuid4(), name="Shop", slug="shop")
    checkout = await make_component(payments, "checkout", system=shop)
    quoted = await make_component(eu, QUOTED, system=shop)
    multiline = await make_component(search, MULTILINE)
    outside = await make_component(payments, "outside")
    await make_component(payments, "idle")
    month = last_month()
    await record(checkout, month, cpu_cost=0.1, ram_cost=1.23456789012)
    await record(checkout, month + timedelta(days=1), cpu_cost=0.2)
    await record(quoted, month + timedelta(days=5), gpu_cost=7.5, shared_cost=0.25)
    await record(multiline, month + timedelta(days=27), network_cost=3.0)
    await record(outside, month - timedelta(days=1), cpu_cost=9.0)
    await record(outside, month + timedelta(days=31 + 1), cpu_cost=9.0)  # the next month
    return {"payments": payments, "search": search, "checkout": checkout}


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


async def export(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get("/api/v1/cost/export.csv", params=params)


async def test_one_row_per_component_with_cost_at_the_precision_stored(
    client: httpx.AsyncClient,
) -> None:
    c = await catalog()
    month = last_month().strftime("%Y-%m")
    response = await export(client, month=month)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="showback-{month}.csv"' in response.headers["content-disposition"]
    rows = parse(response.text)
    assert rows[0] == HEADER
    by_name = {row[2]: dict(zip(HEADER, row, strict=True)) for row in rows[1:]}
    # By name; no row for the component without cost in the month, nor the idle one.
    assert [row[2] for row in rows[1:]] == ["checkout", QUOTED, MULTILINE]
    checkout = by_name["checkout"]
    assert checkout["month"] == month
    assert checkout["component_id"] == str(c["checkout"].id)
    assert (checkout["team"], checkout["system"], checkout["currency"]) == (
        "payments",
        "shop",
        "USD",
    )
    # Sums as the database adds them, written with repr: nothing rounded.
    assert checkout["cpu_cost"] == repr(0.1 + 0.2) == "0.30000000000000004"
    assert checkout["memory_cost"] == "1.23456789012"
    assert float(checkout["total_cost"]) == pytest.approx(0.1 + 1.23456789012 + 0.2)
    assert checkout["gpu_cost"] == "0.0"
    eu = by_name[QUOTED]
    assert (eu["team"], eu["system"], eu["gpu_cost"], eu["total_cost"]) == (
        "payments-eu",
        "shop",
        "7.5",
        "7.75",
    )
    assert (by_name[MULTILINE]["system"], by_name[MULTILINE]["network_cost"]) == ("", "3.0")


async def test_rfc_4180_quoting_and_line_ends(client: httpx.AsyncClient) -> None:
    await catalog()
    body = (await export(client, month=last_month().strftime("%Y-%m"))).content.decode()
    assert body.startswith(",".join(HEADER) + "\r\n")
    assert body.endswith("\r\n")
    assert ',"shop, ""EU""",' in body
    assert ',"two\nlines",' in body
    assert body.count("\r\n") == 4  # the header and three rows; the name's \n is quoted


async def test_team_filter_includes_sub_teams(client: httpx.AsyncClient) -> None:
    c = await catalog()
    month = last_month().strftime("%Y-%m")
    rows = parse((await export(client, month=month, teamId=str(c["payments"].id))).text)
    assert [(row[2], row[3]) for row in rows[1:]] == [
        ("checkout", "payments"),
        (QUOTED, "payments-eu"),
    ]
    rows = parse((await export(client, month=month, teamId=str(c["search"].id))).text)
    assert [row[2] for row in rows[1:]] == [MULTILINE]


async def test_a_month_without_data_is_the_header_alone(client: httpx.AsyncClient) -> None:
    await catalog()
    for month in ("2001-02", (last_month() - timedelta(days=40)).strftime("%Y-%m")):
        response = await export(client, month=month)
        assert response.status_code == 200
        assert parse(response.text) == [HEADER]


async def test_the_current_month_runs_to_yesterday(client: httpx.AsyncClient) -> None:
    team = await make_team()
    component = await make_component(team)
    yesterday = today() - timedelta(days=1)
    await record(component, yesterday, cpu_cost=2.0)
    rows = parse((await export(client, month=yesterday.strftime("%Y-%m"))).text)
    assert [row[-2] for row in rows[1:]] == ["2.0"]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 400, "month is required, as YYYY-MM"),
        ({"month": ""}, 400, "month is required"),
        ({"month": "2026-13"}, 400, "is not a month"),
        ({"month": "2026-00"}, 400, "is not a month"),
        ({"month": "2026-1"}, 400, "is not a month"),
        ({"month": "0000-01"}, 400, "is not a month"),
        ({"month": "\uff12\uff10\uff12\uff16-01"}, 400, "is not a month"),  # fullwidth digits
        ({"month": "2026-01-01"}, 400, "is not a month"),
        ({"month": "9999-12"}, 400, "has no complete day yet"),
        ({"month": "2026-01", "teamId": "nope"}, 400, "teamId"),
        ({"month": "2026-01", "teamId": str(uuid.UUID(int=7))}, 404, "not found"),
    ],
)
async def test_bad_input(
    client: httpx.AsyncClient, params: dict[str, str], status: int, message: str
) -> None:
    response = await export(client, **params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    assert body["error"] == ("Bad Request" if status == 400 else "Not Found")
    assert message in body["message"]


async def test_the_month_that_has_not_begun_yet(client: httpx.AsyncClient) -> None:
    following = (today().replace(day=28) + timedelta(days=4)).strftime("%Y-%m")
    response = await export(client, month=following)
    assert response.status_code == 400
    assert "has no complete day yet" in response.json()["message"]


async def test_a_token_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/cost/export.csv", params={"month": "2026-01"}, headers={"Authorization": ""}
    )
    assert response.status_code == 401


async def test_rows_are_read_in_batches_after_the_header(sql_counter: QueryCounter) -> None:
    team = await make_team()
    month = last_month()
    for i in range(5):
        component = await make_component(team, f"c{i}")
        await record(component, month, cpu_cost=float(i + 1))
    sql_counter.statements.clear()
    chunks = await showback_csv(month.strftime("%Y-%m"), None, today(), batch=2)
    assert sql_counter.statements == []  # nothing read before it is asked for
    header = await anext(chunks)
    assert parse(header) == [HEADER]
    assert sql_counter.statements == []
    rest = [chunk async for chunk in chunks]
    # Five components, two per statement: three batches, each one chunk of its rows.
    assert [len(parse(chunk)) for chunk in rest] == [2, 2, 1]
    assert len([s for s in sql_counter.statements if "cost_record" in s]) == 3
    assert [row[2] for chunk in rest for row in parse(chunk)] == [f"c{i}" for i in range(5)]


async def test_the_route_streams_its_body(settings: Settings, services: Services) -> None:
    """Through the real app, as an ASGI server sees it: the body comes in several messages."""
    from finops_gql.costs import export as export_module

    team = await make_team()
    month = last_month()
    for i in range(5):
        await record(await make_component(team, f"c{i}"), month, cpu_cost=1.0)
    app = create_app(settings, services)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/cost/export.csv",
        "raw_path": b"/api/v1/cost/export.csv",
        "query_string": f"month={month:%Y-%m}".encode(),
        "headers": [
            (b"host", b"gateway"),
            (b"authorization", f"Bearer {token(settings)}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("gateway", 80),
        "root_path": "",
    }
    messages: list[dict[str, Any]] = []
    requested, done = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays until the response is over
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    batch = export_module.EXPORT_BATCH
    export_module.EXPORT_BATCH = 2
    try:
        await app(scope, receive, send)
    finally:
        export_module.EXPORT_BATCH = batch
    assert messages[0]["status"] == 200
    bodies = [m["body"] for m in messages if m["type"] == "http.response.body" and m["body"]]
    assert len(bodies) == 4  # the header, then three batches
    rows = parse(b"".join(bodies).decode())
    assert rows[0] == HEADER
    assert len(rows) == 6


# -- the command line ----------------------------------------------------------------------------


async def test_cli_export_to_a_file_and_to_stdout(
    env: dict[str, str],  # noqa: F811 (the fixture imported above)
    opencost: tuple[FakeOpenCost, str],
    tmp_path: Path,
) -> None:
    opencost[0].keys = ["checkout", "payments-api", "ledger-v2", "search", "recommendations"]
    for args in (("migrate",), ("catalog", "import", str(EXAMPLE)), ("sync",)):
        code, _, err = await cli(*args, env=env)
        assert code == 0, err
    month = (today() - timedelta(days=1)).strftime("%Y-%m")
    out = tmp_path / "showback.csv"
    code, stdout, err = await cli("export", "--month", month, "-o", str(out), env=env)
    assert code == 0, err
    assert stdout == ""
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == HEADER
    assert {row[2] for row in rows[1:]} == {
        "checkout",
        "ledger",
        "payments-api",
        "recommendations",
        "search",
    }
    assert all(float(row[HEADER.index("total_cost")]) > 0 for row in rows[1:])
    code, stdout, err = await cli("export", "--month", month, "--team", "payments", env=env)
    assert code == 0, err
    team_rows = parse(stdout)
    assert {(row[2], row[3], row[4]) for row in team_rows[1:]} == {
        ("checkout", "payments", "storefront"),
        ("ledger", "payments", "storefront"),
        ("payments-api", "payments", "storefront"),
    }
    # The same rows as the whole export's, byte for byte.
    assert [r for r in rows if r[3] == "payments"] == team_rows[1:]


async def test_cli_export_bad_input_writes_nothing(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    await cli("migrate", env=env)
    out = tmp_path / "showback.csv"
    for args, message in (
        (("--month", "2026-13"), "is not a month"),
        (("--month", "2026-01", "--team", "ghost"), "no team with slug 'ghost'"),
    ):
        code, stdout, err = await cli("export", *args, "-o", str(out), env=env)
        assert code == 2, err
        assert message in err
        assert stdout == ""
        assert not out.exists()
    code, _, err = await cli(
        "export", "--month", "2026-01", "-o", str(tmp_path / "no" / "dir.csv"), env=env
    )
    assert code == 2
    assert "cannot write" in err
    code, _, err = await cli("export", env=env)
    assert code == 2
    assert "--month" in err


async def test_export_of_a_team_with_no_components(client: httpx.AsyncClient) -> None:
    team = await Team.create(id=uuid.uuid4(), name="Empty", slug="empty")
    response = await export(client, month="2026-01", teamId=str(team.id))
    assert response.status_code == 200
    assert parse(response.text) == [HEADER]


async def test_a_members_export_holds_only_its_teams_components(services: Services) -> None:
    """AUTHZ_MODE=team: the route exports what the caller sees (a member of payments: payments
    and payments-eu), and another team is a 404 like an unknown one."""
    c = await catalog()
    month = last_month().strftime("%Y-%m")
    async with client_as(services, "member") as member:
        rows = parse((await export(member, month=month)).text)
        assert rows[0] == HEADER
        assert [(r[2], r[3], r[4]) for r in rows[1:]] == [
            ("checkout", "payments", "shop"),
            (QUOTED, "payments-eu", "shop"),
        ]
        assert parse((await export(member, month=month, teamId=str(c["payments"].id))).text) == rows
        hidden = await export(member, month=month, teamId=str(c["search"].id))
        missing = await export(member, month=month, teamId=str(uuid.UUID(int=7)))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["message"] == missing.json()["message"].replace(
            str(uuid.UUID(int=7)), str(c["search"].id)
        )
