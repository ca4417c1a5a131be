"""OpenAPI 3 document of the legacy REST routes; tests check it against the routes and real answers."""

from __future__ import annotations

from functools import cache
from typing import Any

from finops_gql import __version__
from finops_gql.costs.export import HEADER as EXPORT_HEADER


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _num(description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    if description:
        schema["description"] = description
    return schema


NULLABLE_DATETIME = {"type": "string", "format": "date-time", "nullable": True}
ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
ERRORS = {
    status: {"description": phrase, "content": {"application/json": {"schema": _ref("Error")}}}
    for status, phrase in (
        ("400", "Bad query or malformed UUID"),
        ("401", "Missing, invalid or expired bearer token"),
        ("404", "Unknown component or team"),
        ("503", "OpenCost unreachable"),
    )
}


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(
    summary: str, ok: dict[str, Any], errors: tuple[str, ...], params: list[Any]
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {"200": ok, **{code: ERRORS[code] for code in errors}},
        }
    }


@cache
def openapi_document() -> dict[str, Any]:
    breakdown = {
        "type": "object",
        "required": ["cpuCost", "memoryCost", "pvCost", "networkCost", "totalCost"],
        "properties": {
            "cpuCost": _num(),
            "memoryCost": _num("OpenCost ramCost"),
            "pvCost": _num(),
            "networkCost": _num(),
            "totalCost": _num("OpenCost totalCost"),
            "gpuCost": _num(),
            "loadBalancerCost": _num(),
            "sharedCost": _num(),
        },
    }
    window = {
        "allOf": [
            _ref("CostBreakdown"),
            {
                "type": "object",
                "properties": {
                    "currency": {"type": "string"},
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                },
            },
        ],
        "nullable": True,
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "finops_gql legacy cost API",
            "version": __version__,
            "description": "The /api/v1/cost routes of the NestJS cost service, served by finops_gql.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["statusCode", "message", "error"],
                    "properties": {
                        "statusCode": {"type": "integer"},
                        "message": {"type": "string"},
                        "error": {"type": "string"},
                    },
                },
                "CostBreakdown": breakdown,
                "CostWindow": window,
                "ActualCost": {
                    "type": "object",
                    "required": ["componentId", "sevenDay", "thirtyDay"],
                    "properties": {
                        "componentId": {"type": "string", "format": "uuid"},
                        "sevenDay": _ref("CostWindow"),
                        "thirtyDay": _ref("CostWindow"),
                    },
                },
                "HistoryEntry": {
                    "allOf": [
                        _ref("CostBreakdown"),
                        {
                            "type": "object",
                            "required": ["currency", "syncedAt", "day"],
                            "properties": {
                                "currency": {"type": "string"},
                                "syncedAt": {"type": "string", "format": "date-time"},
                                "day": {"type": "string", "format": "date"},
                            },
                        },
                    ]
                },
                "TeamSummary": {
                    "type": "object",
                    "required": ["teamId", "totalCost", "currency", "components"],
                    "properties": {
                        "teamId": {"type": "string", "format": "uuid"},
                        "totalCost": _num("Sum of the last 30 complete UTC days"),
                        "currency": {"type": "string"},
                        "components": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["componentId", "totalCost", "window"],
                                "properties": {
                                    "componentId": {"type": "string", "format": "uuid"},
                                    "totalCost": _num(),
                                    "window": {"type": "string", "enum": ["30d"]},
                                },
                            },
                        },
                    },
                },
                "TopEntry": {
                    "type": "object",
                    "required": ["componentId", "totalCost", "currency", "syncedAt", "budgetUsd"],
                    "properties": {
                        "componentId": {"type": "string", "format": "uuid"},
                        "totalCost": _num("Sum of the last 30 complete UTC days"),
                        "currency": {"type": "string"},
                        "syncedAt": NULLABLE_DATETIME,
                        "budgetUsd": {"type": "number", "nullable": True},
                    },
                },
                "Availability": {
                    "type": "object",
                    "required": ["available"],
                    "properties": {"available": {"type": "boolean"}, "reason": {"type": "string"}},
                },
            },
        },
        "paths": {
            "/api/v1/cost/components/{id}/actual": _get(
                "Live 7-day and 30-day cost of a component from OpenCost",
                _ok(_ref("ActualCost"), "Live cost; a window is null when OpenCost has no data"),
                ("400", "401", "404", "503"),
                [ID_PARAM],
            ),
            "/api/v1/cost/components/{id}/history": _get(
                "The last 30 persisted daily records of a component, newest first",
                _ok({"type": "array", "items": _ref("HistoryEntry")}, "Daily records"),
                ("400", "401", "404"),
                [ID_PARAM],
            ),
            "/api/v1/cost/teams/{id}/summary": _get(
                "A team's components by 30-day cost, largest first",
                _ok(_ref("TeamSummary"), "Team summary"),
                ("400", "401", "404"),
                [ID_PARAM],
            ),
            "/api/v1/cost/summary": _get(
                "Top components platform-wide by 30-day cost",
                _ok({"type": "array", "items": _ref("TopEntry")}, "Top-N components"),
                ("400", "401"),
                [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    }
                ],
            ),
            "/api/v1/cost/export.csv": _get(
                "Showback export: one CSV row per component with cost in the month",
                {
                    "description": "RFC 4180 CSV (CRLF, header row), streamed: "
                    + ",".join(EXPORT_HEADER)
                    + ". Money is the sum of the month's daily records as stored (no "
                    "rounding); team and system are slugs (system empty when none). Components "
                    "with no record in the month have no row: a month with no data is the "
                    "header alone.",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                ("400", "401", "404"),
                [
                    {
                        "name": "month",
                        "in": "query",
                        "required": True,
                        "description": "YYYY-MM; a month with no complete day yet is a 400",
                        "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                    },
                    {
                        "name": "teamId",
                        "in": "query",
                        "required": False,
                        "description": "Only this team's components and its sub-teams' "
                        "(404 when unknown)",
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
            ),
            "/api/v1/cost/available": _get(
                "Whether OpenCost answers its health check (always HTTP 200)",
                _ok(_ref("Availability"), "Availability"),
                ("401",),
                [],
            ),
        },
    }
