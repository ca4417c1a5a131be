"""Coverage (platformCost.coverage, platformCost.unmappedKeys): what OpenCost reported that no
catalog component explains, kept by a real sync from the OpenCost stand-in over HTTP, on both
databases. Expected figures are summed here from the stand-in's own answer."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType, GraphQLSchema, parse

from finops_gql.costs.windows import money
from finops_gql.db.models import CostRecord, CoverageDaily, PlatformDailyCost, UnmappedCost
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.graphql.cost import document_cost
from finops_gql.graphql.schema import schema as strawberry_schema
from finops_gql.services import Services
from tests.conftest import FIXTURES, QueryCounter, gql, make_component, make_team
from tests.sync_standin import StandIn, sync_service

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
SCHEMA: GraphQLSchema = strawberry_schema._schema
FIRST, LAST = date(2026, 2, 13), date(2026, 3, 14)  # the 30 days a first sync at NOW stores
MAPPED = ("checkout", "search")
UNMAPPED = ("payments-api", "nightly-batch", "legacy-reports")

PLATFORM = """
query ($range: DateRange!, $first: Int = 20) {
  platformCost(range: $range) {
    total
    coverage {
      catalogCost clusterCost unmappedCost unallocatedCost idleCost unmountedCost ratio
      reportedDays currency
    }
    unmappedKeys(first: $first) { aggregate key total share }
  }
}
"""


def at(services: Services, fake: FakeOpenCost, now: datetime) -> None:
    services.costs.clock = lambda: now
    fake.now = now


def span(first: date = FIRST, last: date = LAST) -> dict[str, Any]:
    return {"range": {"from": first.isoformat(), "to": last.isoformat()}}


def answer_sums(fake: FakeOpenCost, params: dict[str, str]) -> dict[str, float]:
    """The stand-in's answer to `params`, summed per key over its steps (raw JSON, not parsed)."""
    sums: dict[str, float] = defaultdict(float)
    for step in fake.allocations(params):
        for key, allocation in step.items():
            sums[key] += allocation["totalCost"]
    return sums


async def synced(services: Services, fake: FakeOpenCost) -> dict[str, float]:
    """Catalog MAPPED, the stand-in answering MAPPED + UNMAPPED and every synthetic key; one sync
    at NOW. Returns the stand-in's sums per key."""
    at(services, fake, NOW)
    fake.keys[:] = [*MAPPED, *UNMAPPED]
    fake.unmounted_cost = 0.25
    team = await make_team()
    for name in MAPPED:
        await make_component(team, name)
    run = await services.sync.run("cli")
    assert run.status == "succeeded", run.error
    (request,) = fake.requests
    return answer_sums(fake, request)


async def platform(client: httpx.AsyncClient, **variables: Any) -> dict[str, Any]:
    body = await gql(client, PLATFORM, {**span(), **variables})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["platformCost"]
    return result


async def test_coverage_figures_are_the_stand_ins_sums(
    services: Services, fake: FakeOpenCost, client: httpx.AsyncClient
) -> None:
    sums = await synced(services, fake)
    catalog = money(sum(sums[k] for k in MAPPED))
    unmapped = money(sum(sums[k] for k in UNMAPPED))
    cluster = money(sum(sums.values()))
    assert sums["__idle__"] == pytest.approx(5.0 * 30)  # the stand-in really sent them
    assert sums["__unallocated__"] == pytest.approx(0.5 * 30)
    assert sums["__unmounted__"] == pytest.approx(0.25 * 30)

    found = await platform(client)
    coverage = found["coverage"]
    assert found["total"] == catalog == coverage["catalogCost"]
    assert coverage == {
        "catalogCost": catalog,
        "clusterCost": cluster,
        "unmappedCost": unmapped,
        "unallocatedCost": money(sums["__unallocated__"]),
        "idleCost": money(sums["__idle__"]),
        "unmountedCost": money(sums["__unmounted__"]),
        "ratio": catalog / cluster,
        "reportedDays": 30,
        "currency": "USD",
    }
    # One aggregate: the parts add up to the cluster's cost.
    parts = ("catalogCost", "unmappedCost", "unallocatedCost", "idleCost", "unmountedCost")
    assert money(sum(coverage[p] for p in parts)) == cluster

    # Largest first, each with its exact total and share of the cluster's cost.
    expected = sorted(UNMAPPED, key=lambda k: -sums[k])
    assert found["unmappedKeys"] == [
        {
            "aggregate": "label:app",
            "key": key,
            "total": money(sums[key]),
            "share": money(sums[key]) / cluster,
        }
        for key in expected
    ]
    top = await platform(client, first=1)
    assert [k["key"] for k in top["unmappedKeys"]] == expected[:1]

    # A sub-range reads only its days.
    day = await platform(client, **span(LAST, LAST))
    assert day["coverage"]["idleCost"] == 5.0
    assert day["coverage"]["reportedDays"] == 1


async def test_sync_asks_for_idle_without_sharing_it(
    services: Services, fake: FakeOpenCost
) -> None:
    await synced(services, fake)
    (request,) = fake.requests
    assert request["includeIdle"] == "true"
    assert request["shareIdle"] == "false"
    # Component figures are those of an answer without idle: nothing of __idle__ was shared in.
    without_idle = {k: v for k, v in request.items() if k not in ("includeIdle", "shareIdle")}
    plain = answer_sums(fake, without_idle)
    assert "__idle__" not in plain
    for name in MAPPED:
        stored = await CostRecord.filter(component__name=name).values_list("total_cost", flat=True)
        assert money(sum(stored)) == money(plain[name])
    # (Had the sync shared idle, the stand-in would have spread it into the keys.)
    shared = answer_sums(fake, {**request, "shareIdle": "true"})
    assert money(shared["checkout"]) > money(plain["checkout"])
    assert "__idle__" not in shared


async def test_resync_replaces_its_days(
    services: Services, fake: FakeOpenCost, client: httpx.AsyncClient
) -> None:
    await synced(services, fake)
    before = await platform(client)
    assert await CoverageDaily.all().count() == 30
    assert await UnmappedCost.all().count() == 30 * len(UNMAPPED)
    run = await services.sync.run("cli", backfill_days=10)
    assert run.status == "succeeded"
    assert await CoverageDaily.all().count() == 30
    assert await UnmappedCost.all().count() == 30 * len(UNMAPPED)
    assert await platform(client) == before


async def test_coverage_and_unmapped_keys_read_the_sums_once(
    services: Services, fake: FakeOpenCost, client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    await synced(services, fake)
    alone = await platform(client)
    sql_counter.statements.clear()
    assert await platform(client) == alone
    reads = [s for s in sql_counter.statements if "coverage_daily" in s]
    # One for the figures (coverage, and unmappedKeys' shares), one for the keys.
    assert len(reads) == 2, reads
    assert sum("unmapped_cost u" in s for s in reads) == 1
    assert alone["unmappedKeys"]
    assert alone["unmappedKeys"][0]["share"] is not None


async def test_empty_range_has_null_ratio(services: Services, client: httpx.AsyncClient) -> None:
    services.costs.clock = lambda: NOW
    found = await platform(client)
    assert found["coverage"] == {
        "catalogCost": 0.0,
        "clusterCost": 0.0,
        "unmappedCost": 0.0,
        "unallocatedCost": 0.0,
        "idleCost": 0.0,
        "unmountedCost": 0.0,
        "ratio": None,
        "reportedDays": 0,
        "currency": "USD",
    }
    assert found["unmappedKeys"] == []


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_unmapped_keys_first_is_bounded(
    services: Services, client: httpx.AsyncClient, first: int
) -> None:
    services.costs.clock = lambda: NOW
    body = await gql(client, PLATFORM, {**span(), "first": first})
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "first must be between 1 and 100" in error["message"]


def test_unmapped_keys_cost_counts_first() -> None:
    query = "{ platformCost(range: {preset: LAST_7_DAYS}) { unmappedKeys(first: %d) { key } } }"
    assert document_cost(SCHEMA, parse(query % 100)) == 1 + 100
    assert document_cost(SCHEMA, parse(query % 5)) == 1 + 5
    # The default (20) counts too; coverage is one object.
    default = (
        "{ platformCost(range: {preset: LAST_7_DAYS}) { coverage { ratio } unmappedKeys { key } } }"
    )
    assert document_cost(SCHEMA, parse(default)) == 1 + 1 + 20


def test_only_the_platform_series_has_coverage() -> None:
    series = SCHEMA.type_map["CostSeries"]
    platform_series = SCHEMA.type_map["PlatformCostSeries"]
    assert isinstance(series, GraphQLObjectType)
    assert isinstance(platform_series, GraphQLObjectType)
    assert "coverage" not in series.fields
    assert {"coverage", "unmappedKeys"} <= set(platform_series.fields)
    assert set(series.fields) < set(platform_series.fields)


async def test_retention_drops_coverage_with_the_records(
    services: Services, fake: FakeOpenCost
) -> None:
    await synced(services, fake)
    services.sync.retention_days = 10
    at(services, fake, NOW + timedelta(days=1))
    run = await services.sync.run("cli")
    assert run.status == "succeeded"
    cutoff = LAST + timedelta(days=1) - timedelta(days=10)
    for model in (CoverageDaily, UnmappedCost, CostRecord, PlatformDailyCost):
        days = await model.all().values_list("day", flat=True)
        assert min(days) == cutoff, model


# -- several aggregates -------------------------------------------------------------------------


async def two_aggregates(services: Services) -> None:
    """label:app components checkout and search; a namespace component kube-system."""
    team = await make_team()
    for name in MAPPED:
        await make_component(team, name)
    await make_component(team, "kube-system", opencost_aggregate="namespace")


async def test_several_aggregates_count_the_cluster_once(
    services: Services, fake: FakeOpenCost, client: httpx.AsyncClient
) -> None:
    at(services, fake, NOW)
    fake.keys[:] = [*MAPPED, "kube-system", "payments-api"]
    await two_aggregates(services)
    run = await services.sync.run("cli")
    assert run.status == "succeeded"
    assert len(fake.requests) == 2  # one per aggregate
    by_aggregate = {r["aggregate"]: answer_sums(fake, r) for r in fake.requests}
    app, namespace = by_aggregate["label:app"], by_aggregate["namespace"]
    # The view read is the aggregate whose components explain the most: label:app here.
    assert app["checkout"] + app["search"] > namespace["kube-system"]
    cluster = money(sum(app.values()))
    assert cluster == money(sum(namespace.values()))  # each view holds the whole cluster

    found = await platform(client)
    coverage = found["coverage"]
    catalog = money(app["checkout"] + app["search"] + namespace["kube-system"])
    assert coverage["catalogCost"] == catalog == found["total"]
    assert coverage["clusterCost"] == cluster  # once, not once per aggregate
    assert coverage["ratio"] == catalog / cluster
    assert coverage["idleCost"] == money(app["__idle__"])
    # label:app's view: kube-system (a namespace component) is one of its unmapped keys.
    assert coverage["unmappedCost"] == money(app["payments-api"] + app["kube-system"])
    assert {(k["aggregate"], k["key"]) for k in found["unmappedKeys"]} == {
        ("label:app", "payments-api"),
        ("label:app", "kube-system"),
    }


async def test_failed_aggregate_writes_no_coverage(services: Services) -> None:
    await two_aggregates(services)
    keys = [*MAPPED, "kube-system", "payments-api"]
    standin = StandIn(keys=keys, now=NOW, failures={"namespace": -1})
    async with standin.serve() as url:
        run = await sync_service(services, url, now=NOW, retries=0).run()
    assert run.status == "partial"
    for model in (CoverageDaily, UnmappedCost):
        assert set(await model.all().values_list("aggregate", flat=True)) == {"label:app"}

    # Once both answered, a failing re-sync of namespace leaves its rows as they were.
    standin = StandIn(keys=keys, now=NOW)
    async with standin.serve() as url:
        assert (await sync_service(services, url, now=NOW).run()).status == "succeeded"
    kept = await CoverageDaily.filter(aggregate="namespace").order_by("id").values()
    kept_keys = await UnmappedCost.filter(aggregate="namespace").order_by("id").values()
    assert len(kept) == 30
    assert len(kept_keys) == 30 * 3  # checkout, search and payments-api: no namespace component
    standin = StandIn(keys=["checkout"], now=NOW, failures={"namespace": -1})
    async with standin.serve() as url:
        again = await sync_service(services, url, now=NOW, retries=0).run("cli", backfill_days=5)
    assert again.status == "partial"
    assert await CoverageDaily.filter(aggregate="namespace").order_by("id").values() == kept
    assert await UnmappedCost.filter(aggregate="namespace").order_by("id").values() == kept_keys
    # label:app's last 5 days were replaced by the new answer (only checkout, mapped); the
    # days before keep kube-system and payments-api.
    last_day = await CoverageDaily.get(aggregate="label:app", day=LAST)
    assert (last_day.unmapped_cost, last_day.idle_cost, last_day.unallocated_cost) == (0, 5, 0.5)
    app = UnmappedCost.filter(aggregate="label:app")
    assert not await app.filter(day__gt=LAST - timedelta(days=5)).exists()
    assert await app.filter(day=LAST - timedelta(days=5)).count() == 2


# -- the stand-in's shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sample",
    [
        "allocation-aggregate-label-app-legacy-keys.json",
        "allocation-aggregate-namespace-window-2d.json",
    ],
)
def test_stand_in_synthetic_entries_have_opencosts_shape(sample: str) -> None:
    real = next(iter(json.loads((FIXTURES / sample).read_text())["data"][0].values()))
    fake = FakeOpenCost(keys=["checkout"], now=NOW, unmounted_cost=0.1)
    (step,) = fake.allocations({"window": "1d", "aggregate": "label:app", "includeIdle": "true"})
    assert set(step) == {"checkout", "__idle__", "__unallocated__", "__unmounted__"}
    for key in ("__idle__", "__unallocated__", "__unmounted__"):
        entry = step[key]
        assert entry["name"] == key
        missing = set(real) - set(entry)
        assert not missing, (key, missing)
        for field, value in real.items():
            if isinstance(value, float | int) and not isinstance(value, bool):
                assert isinstance(entry[field], float | int), (key, field)
    # Without includeIdle (OpenCost's default) there is no __idle__.
    (plain,) = fake.allocations({"window": "1d", "aggregate": "label:app"})
    assert "__idle__" not in plain
