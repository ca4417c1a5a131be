"""The production path end to end: `finops-gql serve` under uvicorn, as a separate process."""

from __future__ import annotations

from pathlib import Path

import httpx

from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from tests.conftest import TEST_SECRET, token
from tests.proc import running_gateway


async def test_serve_answers_rest_and_graphql_with_data(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str]
) -> None:
    headers = {"Authorization": f"Bearer {token(Settings(jwt_secret=TEST_SECRET))}"}
    async with (
        running_gateway(tmp_path, opencost) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        top = (await http.get("/api/v1/cost/summary", headers=headers)).json()
        assert len(top) == 5
        assert all(row["totalCost"] > 0 for row in top)
        component = top[0]["componentId"]
        history = (
            await http.get(f"/api/v1/cost/components/{component}/history", headers=headers)
        ).json()
        assert len(history) == 30
        actual = (
            await http.get(f"/api/v1/cost/components/{component}/actual", headers=headers)
        ).json()
        assert actual["sevenDay"]["totalCost"] > 0
        assert (await http.get("/api/v1/cost/available", headers=headers)).json() == {
            "available": True
        }
        body = (
            await http.post(
                "/graphql",
                json={
                    "query": "{ teams { nodes { slug costSummary { totalCost } components { nodes { name cost30d } } } } }"
                },
                headers=headers,
            )
        ).json()
        assert "errors" not in body, body
        teams = body["data"]["teams"]["nodes"]
        assert {t["slug"] for t in teams} == {"payments", "discovery", "fraud"}
        # fraud, a sub-team of payments in the example, owns no component
        assert all(t["costSummary"]["totalCost"] > 0 for t in teams if t["components"]["nodes"])
        ready = (await http.get("/readyz")).json()
        assert ready["checks"]["database"] == "ok"
        assert ready["checks"]["opencost"] == "ok"
        assert (await http.get("/api/v1/cost/summary")).status_code == 401
