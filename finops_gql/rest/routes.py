"""Legacy REST routes under /api/v1/cost: parse input, call the cost service, shape the output.

Paths and field names are the NestJS service's, which old clients still call.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from finops_gql.access import Scope, scope_for
from finops_gql.costs.service import (
    TOP_DEFAULT,
    TOP_MAX,
    CostService,
    CostWindow,
    DailyCost,
    parse_uuid,
)
from finops_gql.errors import InvalidInput
from finops_gql.jsonjs import dumps_ready, js_date, js_floats, js_ready, raw
from finops_gql.rest.errors import json_response
from finops_gql.rest.openapi import openapi_document
from finops_gql.validation import shown

HISTORY_LIMIT = 30
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def _service(request: Request) -> CostService:
    service: CostService = request.app.state.services.costs
    return service


async def _scope(request: Request) -> Scope:
    """What the caller may see (access.scope_for); another team's component answers 404 like a
    missing one, and the summaries count only what it sees."""
    services = request.app.state.services
    return await scope_for(request.state.principal, services.settings)


def _window(window: CostWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    b = window.breakdown
    return {
        "cpuCost": b.cpu_cost,
        "memoryCost": b.memory_cost,
        "pvCost": b.pv_cost,
        "networkCost": b.network_cost,
        "totalCost": b.total_cost,
        "gpuCost": b.gpu_cost,
        "loadBalancerCost": b.load_balancer_cost,
        "sharedCost": b.shared_cost,
        "currency": window.currency,
        "start": window.start,
        "end": window.end,
    }


def _history_entry(record: DailyCost) -> dict[str, Any]:
    b = record.breakdown
    return {
        "cpuCost": b.cpu_cost,
        "memoryCost": b.memory_cost,
        "pvCost": b.pv_cost,
        "networkCost": b.network_cost,
        "totalCost": b.total_cost,
        "currency": record.currency,
        "syncedAt": record.synced_at,
        "day": record.day,
        "gpuCost": b.gpu_cost,
        "loadBalancerCost": b.load_balancer_cost,
        "sharedCost": b.shared_cost,
    }


async def component_actual(request: Request) -> Response:
    service = _service(request)
    component_id = parse_uuid(request.path_params["id"], "id")
    component = await service.component(component_id, await _scope(request))
    actual = await service.actual_cost(component)
    return json_response(
        {
            "componentId": str(actual.component_id),
            "sevenDay": _window(actual.seven_day),
            "thirtyDay": _window(actual.thirty_day),
        }
    )


async def component_history(request: Request) -> Response:
    service = _service(request)
    component_id = parse_uuid(request.path_params["id"], "id")
    records = await service.history(component_id, HISTORY_LIMIT, await _scope(request))
    return json_response([_history_entry(r) for r in records])


async def team_summary(request: Request) -> Response:
    team_id = parse_uuid(request.path_params["id"], "id")
    summary = await _service(request).team_cost_columns(team_id, await _scope(request))
    # Hundreds of rows: written from the service's columns in one orjson call, without
    # dumps' walk over every row (the same bytes: tests/test_rest.py compares them).
    components = [
        {"componentId": component_id, "totalCost": total, "window": "30d"}
        for component_id, total in zip(
            summary.component_ids, js_floats(summary.totals), strict=True
        )
    ]
    return json_response(
        {
            "teamId": str(summary.team_id),
            "totalCost": summary.total_cost,
            "currency": summary.currency,
            "components": raw(dumps_ready(components)),
        }
    )


# ASCII digits only, a few of them: str.isdigit() and int() also accept superscripts and other
# scripts' digits, and int() raises on a string of thousands of digits.
LIMIT_RE = re.compile(r"[0-9]{1,6}")


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return TOP_DEFAULT
    if not LIMIT_RE.fullmatch(raw):
        raise InvalidInput(f"limit must be an integer between 1 and {TOP_MAX}, got {shown(raw)}")
    return int(raw)


async def platform_summary(request: Request) -> Response:
    top = await _service(request).top_component_columns(_limit(request), await _scope(request))
    # Written like the team summary, without dumps' walk (tests/test_rest.py: the same bytes).
    entries = [
        {
            "componentId": component_id,
            "totalCost": total,
            "currency": top.currency,
            "syncedAt": None if synced_at is None else js_date(synced_at),
            "budgetUsd": js_ready(budget),
        }
        for component_id, total, synced_at, budget in zip(
            top.component_ids, js_floats(top.totals), top.synced_at, top.budgets, strict=True
        )
    ]
    return json_response(raw(dumps_ready(entries)))


async def available(request: Request) -> Response:
    health = await _service(request).availability()
    body: dict[str, object] = {"available": True}
    if not health.available:
        body = {"available": False, "reason": health.reason}
    if health.listed:
        # OPENCOST_SOURCES: each source's state after the legacy keys (which legacy clients
        # read alone); with OPENCOST_URL the body stays the NestJS one, byte for byte.
        body["sources"] = [
            {"name": s.name, "available": s.available, "error": s.reason} for s in health.sources
        ]
    return json_response(body)


async def export_csv(request: Request) -> Response:
    """The showback CSV of a month, streamed: the input is checked (400 / 404 in the NestJS
    error body) before the first byte, then the rows come in batches (costs/export.py). Only the
    components the caller sees (access.py); a team it cannot see is a 404 like a missing one."""
    month = request.query_params.get("month")
    raw_team = request.query_params.get("teamId")
    team_id = parse_uuid(raw_team, "teamId") if raw_team is not None else None
    chunks = await _service(request).showback_csv(month, team_id, await _scope(request))
    name = f"showback-{month}{'-' + str(team_id) if team_id else ''}.csv"
    return StreamingResponse(
        chunks,
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


routes = [
    Route("/api/v1/cost/components/{id}/actual", component_actual, methods=["GET"]),
    Route("/api/v1/cost/components/{id}/history", component_history, methods=["GET"]),
    Route("/api/v1/cost/teams/{id}/summary", team_summary, methods=["GET"]),
    Route("/api/v1/cost/summary", platform_summary, methods=["GET"]),
    Route("/api/v1/cost/available", available, methods=["GET"]),
    Route("/api/v1/cost/export.csv", export_csv, methods=["GET"]),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
]
