"""The sync's streamed answer: the streaming parser against the whole-answer one, chunk by chunk,
and the streamed sync's rows against rows computed from the whole answer on both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import orjson
import pytest

from finops_gql.costs import coverage
from finops_gql.costs.explorer import COLUMNS
from finops_gql.db.models import COVERAGE_KEY_MAX, Component
from finops_gql.db.setup import connection
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.opencost.parse import (
    SYNTHETIC_KEYS,
    Allocation,
    parse_allocation_response,
    stream_allocation_steps,
)
from finops_gql.services import Services
from tests.conftest import make_component, make_team, sync_catalog

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
CHUNK_SIZES = [1, 7, 64, 1 << 20]


async def chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def streamed(
    body: bytes, aggregate: str, size: int, synthetic: bool = True
) -> list[dict[str, Allocation]]:
    return [
        step
        async for step in stream_allocation_steps(
            chunked(body, size), aggregate, synthetic=synthetic
        )
    ]


def whole(body: bytes, aggregate: str, synthetic: bool = True) -> list[dict[str, Allocation]]:
    return parse_allocation_response(orjson.loads(body), aggregate, synthetic=synthetic)


def fake_answer(keys: list[str], **options: Any) -> bytes:
    fake = FakeOpenCost(keys=keys, now=NOW, unmounted_cost=0.25, **options)
    params = {
        "window": "2026-03-10T00:00:00Z,2026-03-15T00:00:00Z",
        "aggregate": "label:app",
        "step": "1d",
        "includeIdle": "true",
    }
    return orjson.dumps({"code": 200, "status": "success", "data": fake.allocations(params)})


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("name", "aggregate"),
    [
        ("allocation-aggregate-label-app-legacy-keys.json", "label:app"),
        ("allocation-aggregate-namespace-window-2d.json", "namespace"),
    ],
)
async def test_real_answers_parse_alike_in_any_chunks(name: str, aggregate: str, size: int) -> None:
    body = (FIXTURES / name).read_bytes()
    for synthetic in (True, False):
        expected = whole(body, aggregate, synthetic)
        assert any(expected)
        assert await streamed(body, aggregate, size, synthetic) == expected


@pytest.mark.parametrize("size", CHUNK_SIZES)
async def test_stand_in_answer_with_both_key_forms_parses_alike(size: int) -> None:
    # Both label forms of one key in a step (the bare form wins), a legacy-only key, unicode
    # split across chunks, whitespace between tokens, a null step, a null value (NaN upstream).
    data = orjson.loads(fake_answer(["checkout", "søk-ünïcode"]))["data"]
    step = data[0]
    step["app=checkout"] = {**step["checkout"], "totalCost": 99.0}
    step["app=legacy-only"] = {**step["checkout"], "name": "app=legacy-only", "cpuCost": None}
    data.insert(1, None)
    body = json.dumps({"code": 200, "status": "success", "data": data}, indent=1).encode()
    expected = whole(body, "label:app")
    assert expected[0]["checkout"].total_cost != 99.0
    assert "legacy-only" in expected[0]
    assert expected[1] == {}
    assert await streamed(body, "label:app", size) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":200,"data":null}',
        b'{"data":[]}',
        b"{}",
        b'{"status":"success","data":[{},null],"warning":"x"}',
    ],
)
async def test_empty_answers_parse_alike(body: bytes) -> None:
    assert await streamed(body, "label:app", 3) == whole(body, "label:app")


GOOD = fake_answer(["checkout"])
ERRORS = [
    (GOOD[: len(GOOD) // 2], "OpenCost answered with a body that is not JSON"),
    (GOOD[:-1], "OpenCost answered with a body that is not JSON"),
    (GOOD + b"x", "OpenCost answered with a body that is not JSON"),
    (b"", "OpenCost answered with a body that is not JSON"),
    (b"<html>not json</html>", "OpenCost answered with a body that is not JSON"),
    (GOOD.replace(b'"cpuCost":', b'"cpuCost":NaN,"x":', 1), "not JSON"),
    (b'["data"]', "OpenCost answered with something other than a JSON object"),
    (b'{"code":500,"message":"Error: boom","data":[{}]}', "OpenCost answered code 500"),
    (b'{"data":[{}],"code":503}', "OpenCost answered code 503"),
    (b'{"code":"bad"}', "OpenCost answered code other than 200"),
    (b'{"data":{"checkout":{}}}', "OpenCost's allocation data is not a list of steps"),
    (b'{"data":[{}, 3]}', "an OpenCost allocation step is not an object"),
    (b'{"data":[{"checkout":[1]}]}', "an OpenCost allocation is not an object"),
    (
        GOOD.replace(b'"cpuCost":', b'"cpuCost":"12","x":', 1),
        "OpenCost sent a non-numeric cpuCost",
    ),
    (GOOD.replace(b"2026-03-10T00:00:00Z", b"yesterday", 1), "unreadable start time"),
]


@pytest.mark.parametrize(("body", "reason"), ERRORS)
async def test_malformed_answers_fail_alike(body: bytes, reason: str) -> None:
    try:
        whole(body, "label:app")
    except orjson.JSONDecodeError:
        expected = "OpenCost answered with a body that is not JSON"  # as the client says
    except OpenCostUnavailable as exc:
        expected = exc.reason
    else:
        pytest.fail("the whole-answer parser accepted it")
    assert reason in expected
    for size in (1, 5, 4096):
        with pytest.raises(OpenCostUnavailable) as raised:
            await streamed(body, "label:app", size)
        assert raised.value.reason == expected


async def test_a_value_past_the_pending_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from finops_gql.opencost import parse

    monkeypatch.setattr(parse, "MAX_PENDING_CHARS", 100)
    body = b'{"data":[{"checkout":{"name":"' + b"x" * 1000
    with pytest.raises(OpenCostUnavailable, match="not JSON"):
        await streamed(body + b'"}}]}', "label:app", 10)


# -- the streamed sync writes what the whole answer says -----------------------------------------


async def rows(sql: str) -> list[tuple[Any, ...]]:
    found = await connection().execute_query_dict(sql)
    return sorted(
        tuple(str(v) if isinstance(v, date | UUID) else v for v in r.values()) for r in found
    )


async def test_streamed_sync_writes_what_the_whole_answer_says(
    services: Services, fake: FakeOpenCost
) -> None:
    services.costs.clock = lambda: NOW
    fake.now = NOW
    fake.unmounted_cost = 0.25
    # Mapped keys, unmapped keys (one cut past COVERAGE_KEY_MAX
    # like another), a component OpenCost does not know, and a second aggregate.
    long_key = "u" * (COVERAGE_KEY_MAX + 20)
    fake.keys = ["checkout", "search", "orphan", long_key, long_key + "-other", "payments"]
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search")
    await make_component(team, "ghost")
    await make_component(team, "payments", opencost_aggregate="namespace")

    run = await services.sync.run("cli")
    assert run.status == "succeeded"
    assert len(fake.requests) == 2

    # The reference: the same answers decoded whole, rows computed independently of the sync.
    components = await Component.all()
    expected_records: dict[tuple[str, str], tuple[Any, ...]] = {}
    expected_daily: list[list[Any]] = []
    expected_unmapped: list[list[Any]] = []
    async with aiohttp.ClientSession() as session:
        for params in list(fake.requests):  # the reference requests are counted too
            async with session.get(
                services.settings.opencost_url + "/allocation", params=params
            ) as response:
                body = await response.read()
            aggregate = params["aggregate"]
            steps = whole(body, aggregate)
            keyed: dict[str, list[Component]] = {}
            for c in components:
                if c.opencost_aggregate == aggregate:
                    keyed.setdefault(c.selector_key, []).append(c)
            span = (run.first_day, run.last_day)
            assert None not in span
            for step in steps:
                for key, a in step.items():
                    if key in SYNTHETIC_KEYS:
                        continue
                    for c in keyed.get(key, ()):
                        expected_records[(str(c.id), str(a.start.date()))] = tuple(
                            getattr(a, column) for column in COLUMNS
                        )
            found = coverage.rows("default", aggregate, steps, span, keyed)
            expected_daily += found.daily
            expected_unmapped += found.unmapped

    columns = ", ".join(COLUMNS)
    records = await rows(f"SELECT component_id, day, {columns} FROM cost_record")  # noqa: S608
    assert len(records) == run.records == 30 * 3  # checkout, search; payments
    assert records == sorted(
        (component, day, *money) for (component, day), money in expected_records.items()
    )
    daily = await rows(
        f"SELECT {', '.join(coverage.DAILY_ROW)} FROM coverage_daily"  # noqa: S608
    )
    assert daily == sorted(
        tuple(str(v) if isinstance(v, date) else v for v in r) for r in expected_daily
    )
    unmapped = await rows(
        f"SELECT {', '.join(coverage.UNMAPPED_ROW)} FROM unmapped_cost"  # noqa: S608
    )
    assert unmapped == sorted(
        tuple(str(v) if isinstance(v, date) else v for v in r) for r in expected_unmapped
    )
    # The two long keys cut alike are one row per aggregate and day.
    cut = [r for r in unmapped if r[2].startswith("uuu")]
    assert len(cut) == len({(r[1], r[3]) for r in cut}) == 2 * 30
    assert {r[2] for r in cut} == {long_key[:COVERAGE_KEY_MAX]}
    assert sum(r[2] == "orphan" for r in unmapped) == 2 * 30


async def test_a_truncated_answer_fails_its_aggregate_and_writes_none_of_it(
    services: Services,
) -> None:
    """A stream cut mid-answer (after whole steps were parsed) fails that aggregate, naming it;
    none of its rows are written, while the other aggregate's are."""
    from aiohttp import web

    from tests.conftest import served
    from tests.sync_standin import sync_service

    shape = FakeOpenCost(keys=["checkout", "payments"], now=NOW)

    async def allocation(request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        body = orjson.dumps({"code": 200, "status": "success", "data": shape.allocations(params)})
        if params["aggregate"] == "label:app":
            body = body[: len(body) * 2 // 3]  # whole steps, then a cut
        return web.Response(body=body, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/allocation", allocation)
    team = await make_team()
    cut = await make_component(team, "checkout")
    kept = await make_component(team, "payments", opencost_aggregate="namespace")
    async with served(app) as url:
        run = await sync_service(services, url, NOW).run("cli")
    assert run.status == "partial"
    assert run.failed_aggregates is not None
    assert [f["aggregate"] for f in run.failed_aggregates] == ["label:app"]
    assert "OpenCost answered with a body that is not JSON" in (run.error or "")
    assert "label:app" in (run.error or "")
    counted = await connection().execute_query_dict(
        "SELECT component_id, COUNT(*) AS n FROM cost_record GROUP BY component_id"
    )
    assert {str(r["component_id"]): r["n"] for r in counted} == {str(kept.id): 30}
    assert str(cut.id) not in {str(r["component_id"]) for r in counted}
    assert run.records == 30


# -- batches: runs of whole members decoded by orjson at once --------------------------------------


def big_answer(keys: int = 300) -> bytes:
    """More than parse.BATCH_CHARS of members per step: the batched path runs."""
    return fake_answer([f"svc-{i:04d}" for i in range(keys)])


@pytest.mark.parametrize("size", [4096, 65536, 1 << 20, 1 << 24])
async def test_batched_members_parse_alike(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from finops_gql.opencost import parse

    body = big_answer()
    calls: list[int] = []
    loads = orjson.loads

    def counted(text: str) -> Any:
        calls.append(len(text))
        return loads(text)

    monkeypatch.setattr(parse.orjson, "loads", counted)
    got = await streamed(body, "label:app", size)
    monkeypatch.undo()
    assert got == whole(body, "label:app")
    # 300 keys, idle, unallocated, unmounted per day
    assert len(got) == 5
    assert all(len(step) == 303 for step in got)
    assert calls, "no batch was decoded by orjson"
    # Most members came in batches, not one at a time.
    assert sum(calls) > len(body) // 2


async def test_batches_refused_by_orjson_are_read_member_by_member() -> None:
    """A value orjson refuses and the standard library reads (a lone surrogate) makes its batch
    read one member at a time: the answer reads as the standard library reads it whole."""
    data = orjson.loads(big_answer())["data"]
    middle = data[2]["svc-0150"]
    middle["properties"]["node"] = "\ud800"
    body = json.dumps({"code": 200, "status": "success", "data": data}).encode()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    expected = parse_allocation_response(json.loads(body), "label:app", synthetic=True)
    for size in (4096, 1 << 20):
        assert await streamed(body, "label:app", size) == expected


async def test_lookalike_boundaries_inside_allocations_parse_alike() -> None:
    """Text inside allocations that looks like a boundary between members (a nested object
    that begins like an allocation, `},"` and `":{"name":` inside strings, keys with escaped
    quotes) never splits a member: a wrong batch is refused, never misread."""
    data = orjson.loads(big_answer())["data"]
    for n, step in enumerate(data):
        for i, (key, allocation) in enumerate(list(step.items())):
            if i % 7 == 0:
                allocation["properties"] = {"name": "x", "labels": {"name": key}}
            if i % 11 == 0:
                allocation["properties"]["note"] = '},"svc-0001":{"name":'
            if i % 13 == 0 and n % 2 == 0:
                step[key + '\\"},"q'] = step.pop(key)
    body = orjson.dumps({"code": 200, "status": "success", "data": data})
    expected = whole(body, "label:app")
    assert any('\\"},"q' in key for key in expected[0])
    for size in (997, 65536, 1 << 24):
        assert await streamed(body, "label:app", size) == expected


async def test_a_repeated_key_in_a_step_keeps_its_last_value_as_json_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = orjson.loads(big_answer())["data"]
    members = [orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in data[0].items()]
    again = data[0]["svc-0010"]
    # Early in the step (inside one batch), then once more after its last member.
    members.insert(20, b'"svc-0010":' + orjson.dumps({**again, "totalCost": 123.0}))
    members.append(b'"svc-0010":' + orjson.dumps({**again, "totalCost": 456.0}))
    steps = [b"{" + b",".join(members) + b"}", *(orjson.dumps(step) for step in data[1:])]
    body = b'{"code":200,"data":[' + b",".join(steps) + b"]}"
    expected = whole(body, "label:app")
    assert expected[0]["svc-0010"].total_cost == 456.0
    for size in (7, 4096, 1 << 24):
        with caplog.at_level("WARNING"):
            assert await streamed(body, "label:app", size) == expected
    assert "never summed both" not in caplog.text  # the same key twice is not two forms


# -- the benchmark's stand-in: steps encoded ahead ------------------------------------------------


def test_pregenerated_steps_are_the_bytes_the_stand_in_would_make(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finops_gql.dev.opencost_fake import SYNC_PARAMS

    fake = FakeOpenCost(keys=["checkout", "search"], now=NOW)
    params = {**SYNC_PARAMS, "window": "2026-03-12T00:00:00Z,2026-03-15T00:00:00Z", "step": "1d"}
    made = list(fake.encoded_steps(params))
    assert made == [orjson.dumps(step) for step in fake.steps(params)]
    fake.pregenerate(3, SYNC_PARAMS)
    assert len(fake.encoded) == 3

    def refuse(*args: Any) -> Any:
        raise AssertionError("a pregenerated step was made again")

    monkeypatch.setattr(fake, "_step", refuse)
    assert list(fake.encoded_steps(params)) == made
    # Another shape of step (idle shared) is not served from the steps made ahead.
    with pytest.raises(AssertionError, match="made again"):
        list(fake.encoded_steps({**params, "shareIdle": "true"}))


async def test_the_sync_reads_the_pregenerated_steps(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark's stand-in encodes the sync's steps ahead (--pregenerate-days): the sync's
    request must be the one it encoded them for, or the benchmark would time the stand-in."""
    from finops_gql.dev.opencost_fake import SYNC_PARAMS

    services.costs.clock = lambda: NOW
    fake.now = NOW
    fake.keys = ["checkout"]
    await make_component(await make_team(), "checkout")
    fake.pregenerate(30, SYNC_PARAMS)

    def refuse(*args: Any) -> Any:
        raise AssertionError("the sync asked for a step that was not pregenerated")

    monkeypatch.setattr(fake, "_step", refuse)
    run = await services.sync.run("cli")
    assert run.status == "succeeded", run.error
    assert run.records == 30


async def test_a_first_run_copies_straight_in_and_a_backfill_upserts_over_it(
    services: Services, fake: FakeOpenCost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a run whose clusters hold no record in its days COPYs into cost_record
    itself; one over stored days goes through the stage and its upsert. Both leave one record
    per component and day, with the newest figures."""
    from finops_gql.costs import sync
    from finops_gql.db.setup import dialect
    from finops_gql.dev import opencost_fake

    paths: list[bool] = []
    copy_upsert = sync._copy_upsert

    async def spied(db: Any, rows: Any, *, fresh: bool = False) -> None:
        paths.append(fresh)
        await copy_upsert(db, rows, fresh=fresh)

    monkeypatch.setattr(sync, "_copy_upsert", spied)
    await sync_catalog(services, fake, NOW)
    columns = ", ".join(COLUMNS)
    sql = f"SELECT component_id, day, cluster, {columns} FROM cost_record"  # noqa: S608

    first = await services.sync.run("cli")
    assert first.records == 60
    before = await rows(sql)
    assert len(before) == 60

    daily = opencost_fake.daily_total
    monkeypatch.setattr(opencost_fake, "daily_total", lambda key, day: 2 * daily(key, day))
    again = await services.sync.run("cli", backfill_days=30)
    assert again.records == 60
    after = await rows(sql)
    assert len(after) == 60  # upserted, not added
    assert [r[:3] for r in after] == [r[:3] for r in before]
    total = COLUMNS.index("total_cost") + 3
    assert all(
        a[total] == pytest.approx(2 * b[total], abs=1e-4)
        for a, b in zip(after, before, strict=True)
    )
    assert paths == ([True, False] if dialect() == "postgres" else [])
