"""The OpenAPI document stays true: same paths as the routes, and real answers fit its schemas."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from finops_gql.rest.openapi import openapi_document
from finops_gql.rest.routes import routes
from finops_gql.services import Services
from tests.conftest import make_component, make_records, make_team

pytestmark = pytest.mark.usefixtures("services")

DOC = openapi_document()


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and merge allOf parts into one object schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return resolve(DOC["components"]["schemas"][name])
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "required": [], "properties": {}}
        for part in map(resolve, schema["allOf"]):
            merged["required"] += part.get("required", [])
            merged["properties"].update(part.get("properties", {}))
        merged["nullable"] = schema.get("nullable", False)
        return merged
    return schema


def check(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """A small validator for the subset of OpenAPI this document uses."""
    schema = resolve(schema)
    if value is None:
        assert schema.get("nullable"), f"{where} is null but not nullable"
        return
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), where
        for key in schema.get("required", []):
            assert key in value, f"{where}.{key} is required"
        for key, item in value.items():
            props = schema.get("properties", {})
            assert key in props, f"{where}.{key} is not documented"
            check(item, props[key], f"{where}.{key}")
    elif kind == "array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")
    elif kind == "number":
        assert isinstance(value, int | float), where
        assert not isinstance(value, bool), where
    elif kind == "integer":
        assert isinstance(value, int), where
    elif kind == "string":
        assert isinstance(value, str), where
        if "enum" in schema:
            assert value in schema["enum"], where
    elif kind == "boolean":
        assert isinstance(value, bool), where


def test_every_cost_route_is_documented_and_nothing_else() -> None:
    paths = {r.path for r in routes if r.path.startswith("/api/v1/cost")}
    assert paths == set(DOC["paths"])


async def test_served_document_and_real_answers_fit(
    client: httpx.AsyncClient, services: Services
) -> None:
    served = (await client.get("/api/v1/openapi.json")).json()
    assert served == DOC
    team = await make_team()
    component = await make_component(team, "checkout", budget_usd=3.0)
    await make_records(component, [1.5] * 31)
    await services.costs.refresh_rollups()
    for template in DOC["paths"]:
        path = template.replace("{id}", str(team.id if "teams" in template else component.id))
        content = DOC["paths"][template]["get"]["responses"]["200"]["content"]
        if "text/csv" in content:  # the export: its columns are checked in tests/test_export.py
            response = await client.get(path, params={"month": "2020-01"})
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("text/csv")
            continue
        response = await client.get(path)
        assert response.status_code == 200, path
        check(response.json(), content["application/json"]["schema"], path)
    error = await client.get("/api/v1/cost/summary?limit=0")
    check(error.json(), DOC["components"]["schemas"]["Error"])
