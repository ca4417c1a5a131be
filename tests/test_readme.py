"""Every `graphql` and `sh` block of the README runs as written against a running gateway, so the
front door cannot drift from the code.

A block that cannot run here says why on the line before its fence:
`<!-- readme-test: skip (production only) -->`. GraphQL blocks hold named operations only (each
pastes and runs on its own in GraphiQL); each is sent with its operationName and must answer data
without errors. Shell blocks run under `bash -euo pipefail` with the gateway's environment
(DATABASE_URL, OPENCOST_URL, JWT_SECRET, REDIS_URL, an admin TOKEN, `.venv/bin` on PATH); the
README's http://127.0.0.1:8000 is the test gateway's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from graphql import OperationDefinitionNode, parse
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from finops_gql.auth import mint_token
from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from tests.conftest import REDIS_URL, TEST_SECRET, need, token
from tests.proc import running_gateway

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<marker>[^\n]*?) -->\n)?^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
README_BASE = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int
    skip: str | None

    @property
    def where(self) -> str:
        return f"README.md line {self.line}"


def blocks(lang: str) -> list[Block]:
    text = README.read_text()
    found = []
    for match in BLOCK.finditer(text):
        if match.group("lang") != lang:
            continue
        marker = match.group("marker")
        skip = None
        if marker is not None:
            reason = re.fullmatch(r"skip \((.*)\)", marker)
            assert reason is not None, f"README.md: marker {marker!r} must read: skip (reason)"
            skip = reason.group(1)
        line = text.count("\n", 0, match.start("body"))
        found.append(Block(lang, match.group("body"), line, skip))
    return found


def operations(block: Block) -> list[tuple[str, str]]:
    document = parse(block.body)
    named = []
    for definition in document.definitions:
        assert isinstance(definition, OperationDefinitionNode), block.where
        assert definition.name is not None, (
            f"{block.where}: every operation is named, so each pastes and runs on its own"
        )
        named.append((definition.name.value, definition.operation.value))
    return named


def test_readme_has_runnable_blocks_and_every_skip_says_why() -> None:
    graphql, shell = blocks("graphql"), blocks("sh")
    assert [b for b in graphql if b.skip is None], "no GraphQL example runs"
    assert [b for b in shell if b.skip is None], "no shell example runs"
    for block in graphql + shell:
        assert block.skip is None or block.skip.strip(), block.where
    for block in graphql:
        assert operations(block), block.where


@pytest.fixture
async def gateway(tmp_path: Path, opencost: tuple[FakeOpenCost, str]) -> tuple[str, dict[str, str]]:
    redis_url = need(REDIS_URL, "REDIS_URL_TEST")  # triggerCostSync queues on Redis
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'gateway.sqlite3'}",
        "OPENCOST_URL": opencost[1],
        "JWT_SECRET": TEST_SECRET,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }
    return redis_url, env


async def test_every_graphql_example_runs(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], gateway: tuple[str, dict[str, str]]
) -> None:
    _, env = gateway
    settings = Settings(jwt_secret=TEST_SECRET)

    def admin_token(sub: str) -> str:
        return mint_token(settings, sub, ["admin"], timedelta(hours=1))

    ran = 0
    async with (
        running_gateway(tmp_path, opencost, extra_env=env) as base,
        httpx.AsyncClient(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {admin_token('admin')}"}
        ) as http,
    ):
        for block in blocks("graphql"):
            if block.skip is not None:
                continue
            for name, kind in operations(block):
                # Each example as its own principal: each must fit one rate budget
                # (RATE_LIMIT_POINTS_PER_MINUTE) alone, not all of them together.
                bearer = admin_token(f"readme-{ran}")
                if kind == "subscription":
                    await subscription_starts(http, base, bearer, block.body, name)
                    ran += 1
                    continue
                response = await http.post(
                    "/graphql",
                    json={"query": block.body, "operationName": name},
                    headers={"Authorization": f"Bearer {bearer}"},
                )
                body = response.json()
                assert response.status_code == 200, (block.where, name, body)
                assert "errors" not in body, (block.where, name, body)
                assert body["data"], (block.where, name, body)
                ran += 1
    assert ran >= 3


async def subscription_starts(
    http: httpx.AsyncClient, base: str, bearer: str, document: str, name: str
) -> None:
    """A subscription runs over a WebSocket (graphql-transport-ws): it passed validation and the
    limits once the server counts it in /metrics (events are for tests/test_subscriptions.py)."""
    url = base.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
        payload = {"query": document, "operationName": name}
        await ws.send(json.dumps({"id": name, "type": "subscribe", "payload": payload}))
        for _ in range(100):
            if "finops_gql_subscriptions 1.0" in (await http.get("/metrics")).text:
                break
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(ws.recv(), 0.1)
                raise AssertionError((name, message))  # an error, or a close
        else:
            raise AssertionError(f"subscription {name} did not start")
    for _ in range(100):
        if "finops_gql_subscriptions 0.0" in (await http.get("/metrics")).text:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscription {name} was not released")


async def test_every_shell_example_runs(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], gateway: tuple[str, dict[str, str]]
) -> None:
    _, env = gateway
    admin = token(Settings(jwt_secret=TEST_SECRET), "admin")
    venv_bin = str(Path(sys.executable).parent)
    async with running_gateway(tmp_path, opencost, extra_env=env) as base:
        for block in blocks("sh"):
            if block.skip is not None:
                continue
            script = block.body.replace(README_BASE, base)
            process = await asyncio.create_subprocess_exec(
                "bash",
                "-euo",
                "pipefail",
                "-c",
                script,
                cwd=ROOT,
                env={
                    **os.environ,
                    **env,
                    "TOKEN": admin,
                    "PATH": f"{venv_bin}:{os.environ['PATH']}",
                },
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), timeout=120)
            assert process.returncode == 0, (block.where, block.body, err.decode()[-2000:])
            assert b'"errors"' not in out, (block.where, out.decode()[:2000])
