"""The arq worker against a real Redis (REDIS_URL_TEST; its database is flushed by these tests)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC

import httpx
import pytest
import redis.asyncio as aioredis

from finops_gql.config import Settings
from finops_gql.db.models import CostRecord, SyncRun
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.events import BUDGET_CHANNEL
from finops_gql.services import Services
from finops_gql.worker import worker_settings
from tests.conftest import gql, make_component, make_team, run_worker, token, wire


@pytest.fixture
def worker_config(settings: Settings, redis_url: str) -> Settings:
    return settings.with_(redis_url=redis_url)


async def test_trigger_then_worker_runs_one_sync(
    worker_config: Settings, services: Services, fake: FakeOpenCost
) -> None:
    services.settings = worker_config
    team = await make_team()
    await make_component(team, "checkout", budget_usd=1.0)
    await make_component(team, "search")
    app_client = await _client(worker_config, services)
    admin = {"Authorization": f"Bearer {token(worker_config, 'admin')}"}
    mutation = "mutation { triggerCostSync { jobId status } }"
    first = await gql(app_client, mutation, headers=admin)
    second = await gql(app_client, mutation, headers=admin)
    assert first["data"]["triggerCostSync"]["status"] == "queued"
    assert second["data"]["triggerCostSync"] == {
        "jobId": first["data"]["triggerCostSync"]["jobId"],
        "status": "already_queued",
    }
    forbidden = await gql(app_client, mutation)
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    subscriber = aioredis.from_url(worker_config.redis_url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(wire(BUDGET_CHANNEL))
    await run_worker(worker_config)

    runs = await SyncRun.all()
    assert [(r.status, r.trigger, r.days) for r in runs] == [("succeeded", "manual", 30)]
    assert await CostRecord.all().count() == 60
    assert len(fake.requests) == 1

    message = None
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            break
    assert message is not None, "no budget event was published"
    event = json.loads(message["data"])
    assert event["name"] == "checkout"
    assert event["budgetUsd"] == 1.0
    await pubsub.aclose()
    await subscriber.aclose()

    # the id is free again once the run is done: a new trigger queues a new run
    third = await gql(app_client, mutation, headers=admin)
    assert third["data"]["triggerCostSync"]["status"] == "queued"
    await app_client.aclose()


async def test_concurrent_triggers_produce_one_run(
    worker_config: Settings, services: Services, fake: FakeOpenCost
) -> None:
    services.settings = worker_config
    await make_component(await make_team(), "checkout")
    results = await asyncio.gather(*(services.enqueue_sync() for _ in range(5)))
    assert sorted(status for _, status in results) == ["already_queued"] * 4 + ["queued"]
    await run_worker(worker_config)
    assert await SyncRun.all().count() == 1


async def test_trigger_without_redis_is_a_clear_error(services: Services) -> None:
    services.settings = services.settings.with_(redis_url="redis://127.0.0.1:1")
    app_client = await _client(services.settings, services)
    body = await gql(
        app_client,
        "mutation { triggerCostSync { jobId } }",
        headers={"Authorization": f"Bearer {token(services.settings, 'admin')}"},
    )
    await app_client.aclose()
    assert body["errors"][0]["extensions"]["code"] == "QUEUE_UNAVAILABLE"
    assert "Redis" in body["errors"][0]["message"]


async def _client(settings: Settings, services: Services) -> httpx.AsyncClient:
    from finops_gql.app import create_app

    app = create_app(settings, services)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    http.headers["Authorization"] = f"Bearer {token(settings)}"
    return http


def test_invalid_cron_stops_the_worker_at_start() -> None:
    from finops_gql.cron import CronError

    with pytest.raises(CronError, match="hour field"):
        worker_settings(Settings(cost_sync_cron="0 25 * * *"))


def test_cron_is_utc() -> None:
    assert worker_settings(Settings())["timezone"] == UTC
