"""The production path end to end: `finops-gql serve` under uvicorn, as a separate process."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from tests.conftest import TEST_SECRET, token
from tests.test_cli import EXAMPLE, cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_serve_answers_rest_and_graphql_with_data(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str]
) -> None:
    opencost[0].keys = ["checkout", "payments-api", "ledger-v2", "search", "recommendations"]
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'e2e.sqlite3'}",
        "OPENCOST_URL": opencost[1],
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    for args in (("migrate",), ("catalog", "import", str(EXAMPLE)), ("sync",)):
        code, _, err = await cli(*args, env=env)
        assert code == 0, err
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finops_gql.cli",
        "serve",
        "--port",
        str(port),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token(Settings(jwt_secret=TEST_SECRET))}"}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("server did not start")
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
                        "query": "{ teams { nodes { slug costSummary { totalCost } components { name cost30d } } } }"
                    },
                    headers=headers,
                )
            ).json()
            assert "errors" not in body, body
            teams = body["data"]["teams"]["nodes"]
            assert {t["slug"] for t in teams} == {"payments", "discovery"}
            assert all(t["costSummary"]["totalCost"] > 0 for t in teams)
            ready = (await http.get("/readyz")).json()
            assert ready["checks"]["database"] == "ok"
            assert ready["checks"]["opencost"] == "ok"
            assert (await http.get("/api/v1/cost/summary")).status_code == 401
    finally:
        server.terminate()
        _, err = await asyncio.wait_for(server.communicate(), timeout=15)
    assert b"Traceback" not in err, err.decode()
