"""The README's first command, scripts/dev, brings up the whole system with data in it: it says
what it is doing, writes a token, runs the worker beside the server, and one signal stops all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx

from tests.conftest import REDIS_URL, TEST_SECRET, need
from tests.proc import free_port, wait_healthy

ROOT = Path(__file__).parent.parent
STEPS = [
    "==> Python environment",
    "==> Migrating",
    "==> Importing the example catalog",
    "==> Starting the OpenCost stand-in",
    "==> Syncing cost",
    "==> Starting the worker",
]


async def _sync_runs(http: httpx.AsyncClient) -> list[dict[str, str]]:
    body = (
        await http.post("/graphql", json={"query": "{ syncRuns(limit: 10) { status trigger } }"})
    ).json()
    runs: list[dict[str, str]] = body["data"]["syncRuns"]
    return runs


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


async def test_scripts_dev_runs_server_worker_and_stand_in(tmp_path: Path) -> None:
    redis_url = need(REDIS_URL, "REDIS_URL_TEST")
    port, opencost_port = free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "OPENCOST_PORT": str(opencost_port),
        "DEV_DIR": str(tmp_path),
        "JWT_SECRET": TEST_SECRET,
        "REDIS_URL": redis_url,
    }
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "dev"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        # A test run started in the background of a shell inherits SIGINT ignored, and a shell
        # cannot trap a signal ignored on entry: give scripts/dev the Ctrl-C a terminal would.
        preexec_fn=_default_sigint,
    )
    assert process.stdout is not None
    output: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        header = None
        while header is None:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=240)).decode()
            assert line, "scripts/dev exited:\n" + "".join(output)
            output.append(line)
            if line.strip().startswith("Authorization: Bearer "):
                header = line.strip().removeprefix("Authorization: ")
        # Keep reading: a full pipe would block the server's or worker's next log line, and with
        # it their shutdown.
        drain = asyncio.create_task(_drain(process.stdout, output))
        text = "".join(output)
        positions = [text.find(step) for step in STEPS]
        assert all(p >= 0 for p in positions), text
        assert positions == sorted(positions), text
        token = (tmp_path / "token").read_text().strip()
        assert header == f"Bearer {token}"
        assert f"export TOKEN={token}" in text
        assert f"http://127.0.0.1:{port}/graphql" in text
        assert "Worker:    running" in text
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

            # The worker beside the server runs what triggerCostSync queues.
            assert [r["trigger"] for r in await _sync_runs(http)] == ["cli"]
            queued = (
                await http.post(
                    "/graphql", json={"query": "mutation { triggerCostSync { status } }"}
                )
            ).json()
            assert queued["data"]["triggerCostSync"]["status"] == "queued"
            for _ in range(150):
                runs = await _sync_runs(http)
                if runs[0]["trigger"] == "manual" and runs[0]["status"] != "running":
                    break
                await asyncio.sleep(0.2)
            assert runs[0] == {"trigger": "manual", "status": "succeeded"}
    finally:
        # One signal to the script stops the server, the worker and the stand-in.
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout=60)
        except TimeoutError:
            ps = await asyncio.create_subprocess_exec(
                "ps", "-o", "pid,stat,args", "-s", str(process.pid), stdout=asyncio.subprocess.PIPE
            )
            running = (await ps.communicate())[0].decode()
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(
                f"scripts/dev did not stop; still running:\n{running}\noutput:\n" + "".join(output)
            ) from None
        if drain is not None:  # ends when every process holding the pipe has exited
            with contextlib.suppress(TimeoutError):  # one left running is reported below
                await asyncio.wait_for(drain, timeout=10)
    leftovers = await asyncio.create_subprocess_exec(
        "pgrep", "-s", str(process.pid), stdout=asyncio.subprocess.PIPE
    )
    remaining = (await leftovers.communicate())[0].decode().split()
    if remaining:
        os.killpg(process.pid, signal.SIGKILL)
    assert not remaining, f"processes left running after Ctrl-C: {remaining}"
