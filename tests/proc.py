"""Helpers that run finops-gql as a user does: as separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from finops_gql.dev.opencost_fake import FakeOpenCost
from tests.conftest import TEST_SECRET

EXAMPLE = Path(__file__).parent.parent / "examples" / "catalog-info.yaml"
EXAMPLE_KEYS = ["checkout", "payments-api", "ledger-v2", "search", "recommendations"]


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finops_gql.cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_healthy(http: httpx.AsyncClient, within_s: float = 60.0) -> None:
    """Poll /healthz until the server answers. Generous: a server starts in 2-3 s on an idle
    machine, but the suite runs one process per core, and a loaded machine was seen taking >10 s."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"server did not start within {within_s:g} s")


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], extra_env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Migrate, import the example catalog, sync, and serve it; yields the base URL."""
    opencost[0].keys = EXAMPLE_KEYS
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'gateway.sqlite3'}",
        "OPENCOST_URL": opencost[1],
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    for args in (("migrate",), ("catalog", "import", str(EXAMPLE)), ("sync",)):
        code, _, err = await cli(*args, env=env)
        assert code == 0, err
    async with serving(env) as served:
        yield served.base


@dataclass
class Served:
    base: str
    port: int
    stderr: str = ""  # the server's log, once it has stopped
    returncode: int | None = None  # once it has stopped


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], *args: str) -> AsyncIterator[Served]:
    """`finops-gql serve [args]` on a free port with `env` over os.environ, healthy when
    yielded; stopped on exit, its stderr then in `.stderr`, which must hold no traceback."""
    port = free_port()
    if "--workers" not in args:
        args = (*args, "--workers", "1")  # one process unless a test asks for more: CI is small
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "finops_gql.cli", "serve", *args, "--port", str(port)),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}", port)
    try:
        async with httpx.AsyncClient(base_url=served.base, timeout=5) as http:
            await wait_healthy(http)
        yield served
    finally:
        if server.returncode is None:
            server.terminate()
        _, err = await asyncio.wait_for(server.communicate(), timeout=15)
        served.stderr = err.decode()
        served.returncode = server.returncode
    assert "Traceback" not in served.stderr, served.stderr
