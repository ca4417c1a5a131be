"""GraphiQL in a real headless Chromium: it renders, a typed query returns data, and no request
leaves localhost (the page's assets are served by the gateway itself).

Needs Debian's `chromium` (.ci/run installs it); skipped with a reason elsewhere unless CI is set.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest

from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from tests.conftest import TEST_SECRET, need, token
from tests.proc import running_gateway

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
QUERY = "{ topComponents(limit: 2) { totalCost component { name } } }"


class Page:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.requests: list[str] = []
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout=20)
        assert "error" not in reply, reply
        return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll until the expression is truthy (20 s at most)."""
        for _ in range(200):
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    binary = need(binary, "chromium (apt-get install chromium)")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert process.stderr is not None
    try:
        endpoint = None
        while endpoint is None:
            line = (await asyncio.wait_for(process.stderr.readline(), timeout=30)).decode()
            assert line, "chromium exited before it listened"
            if "DevTools listening on" in line:
                endpoint = urlsplit(line.split("on", 1)[1].strip()).netloc
        yield endpoint
    finally:
        process.kill()
        await process.wait()


async def test_graphiql_renders_runs_a_typed_query_and_stays_local(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], chromium: str
) -> None:
    bearer = token(Settings(jwt_secret=TEST_SECRET))
    headers = quote(json.dumps({"Authorization": f"Bearer {bearer}"}))
    async with running_gateway(tmp_path, opencost) as base, aiohttp.ClientSession() as http:
        async with http.get(f"http://{chromium}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.send("Network.enable")
            await page.send("Page.enable")
            await page.send("Page.navigate", url=f"{base}/graphql?headers={headers}&q=%20")
            await page.wait_for("!!document.querySelector('.graphiql-query-editor .CodeMirror')")
            # Type the query as a person would: focus the editor, then key the text in.
            await page.evaluate(
                "(() => { const cm = document.querySelector('.graphiql-query-editor .CodeMirror')"
                ".CodeMirror; cm.setValue(''); cm.focus(); return true; })()"
            )
            await page.send("Input.insertText", text=QUERY)
            typed = await page.evaluate(
                "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
            )
            assert typed == QUERY
            await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
            result = await page.wait_for(
                "(() => { const el = document.querySelector('.result-window .CodeMirror');"
                " const text = el && el.CodeMirror.getValue();"
                " return text && text.includes('topComponents') ? text : null; })()"
            )
            page.reader.cancel()
        data = json.loads(result)
        assert "errors" not in data, data
        assert len(data["data"]["topComponents"]) == 2
        assert data["data"]["topComponents"][0]["totalCost"] > 0
        assert page.requests, "no requests were seen"
        remote = [
            url
            for url in page.requests
            if urlsplit(url).scheme in {"http", "https", "ws", "wss"}
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]
        assert remote == [], f"requests left localhost: {remote}"
        assert any("/graphql/static/graphiql@3.8.3/graphiql.min.js" in url for url in page.requests)
