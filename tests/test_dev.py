"""The README's first command, scripts/dev, brings up a gateway that answers with data."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET
from tests.proc import free_port, wait_healthy

ROOT = Path(__file__).parent.parent


async def test_scripts_dev_serves_rest_and_graphql_with_data(tmp_path: Path) -> None:
    port, opencost_port = free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "OPENCOST_PORT": str(opencost_port),
        "DATABASE_URL": f"sqlite://{tmp_path / 'dev.sqlite3'}",
        "JWT_SECRET": TEST_SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "dev"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # scripts/dev starts the stand-in and the server: stop them all
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        header = None
        while header is None:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=240)).decode()
            assert line, "scripts/dev exited:\n" + "".join(output)
            output.append(line)
            if line.strip().startswith("Authorization: Bearer "):
                header = line.strip().removeprefix("Authorization: ")
        assert any(f"http://127.0.0.1:{port}/graphql" in line for line in output)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": header}, timeout=10
        ) as http:
            await wait_healthy(http)
            # GraphiQL opens with the printed token in its Headers tab (GRAPHIQL_DEV_TOKEN_FILE).
            ide = await http.get("/graphql", headers={"Accept": "text/html", "Authorization": ""})
            assert header.removeprefix("Bearer ") in ide.text
            top = (await http.get("/api/v1/cost/summary")).json()
            assert len(top) == 5
            assert all(row["totalCost"] > 0 for row in top)
            body = (
                await http.post(
                    "/graphql",
                    json={
                        "query": "{ components(first: 10) { nodes { name cost30d history(limit: 3) { totalCost } } } }"
                    },
                )
            ).json()
            nodes = body["data"]["components"]["nodes"]
            assert len(nodes) == 5
            assert all(len(n["history"]) == 3 for n in nodes)
            actual = (
                await http.get(f"/api/v1/cost/components/{top[0]['componentId']}/actual")
            ).json()
            assert actual["sevenDay"]["totalCost"] > 0  # live, from the stand-in
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=20)
