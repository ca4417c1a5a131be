"""GraphiQL in a real headless Chromium: it renders, a typed query returns data, and no request
leaves localhost (the page's assets are served by the gateway itself).

Needs Debian's `chromium` (.ci/run installs it); skipped with a reason elsewhere unless CI is set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis

from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.events import ALERTS_CHANNEL
from finops_gql.graphql.ide import DEV_DOCUMENT
from tests.conftest import REDIS_URL, TEST_SECRET, need, token, wire
from tests.proc import running_gateway

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
QUERY = "{ topComponents(limit: 2) { totalCost component { name } } }"


class Page:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.requests: list[str] = []
        self.exceptions: list[str] = []
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif data.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(json.dumps(data["params"]["exceptionDetails"])[:2000])
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

    async def wait_for(self, expression: str, polls: int = 200) -> Any:
        """Poll until the expression is truthy (every 0.1 s, 20 s at most by default)."""
        for _ in range(polls):
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    async def click(self, selector: str, text: str | None = None) -> None:
        """A real mouse click (press and release) on the first element matching selector/text."""
        box = await self.wait_for(
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => {json.dumps(text)} === null || e.textContent.trim() === {json.dumps(text)});"
            " if (!el) return null; const r = el.getBoundingClientRect();"
            " return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()"
        )
        x, y = box
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def type_into(self, editor: str, text: str) -> None:
        """Focus a CodeMirror editor, clear it and key the text in as a person would."""
        await self.evaluate(f"(() => {{ const cm = {editor}; cm.setValue(''); cm.focus(); }})()")
        await self.send("Input.insertText", text=text)
        assert await self.evaluate(f"{editor}.getValue()") == text

    async def screenshot(self, path: Path) -> None:
        """For a person to look at: pytest keeps tmp_path (the last runs, under the temp dir)."""
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


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


QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
HEADERS_EDITOR = (
    'document.querySelector(\'section[aria-label="Headers"] .graphiql-editor:not(.hidden)'
    " .CodeMirror').CodeMirror"
)
EDITOR_READY = "!!document.querySelector('.graphiql-query-editor .CodeMirror')"
# The schema GraphiQL's editors work with (null until introspection succeeded): its Query fields.
SCHEMA_FIELDS = (
    f"(() => {{ const s = {QUERY_EDITOR}.options.hintOptions.schema;"
    " return s ? Object.keys(s.getQueryType().getFields()) : null; })()"
)
NOTICE = "document.getElementById('finops-token-notice')"
NOTICE_SHOWN = f"(() => {{ const n = {NOTICE}; return n.hidden ? null : n.innerText; }})()"
DOCS_BUTTON = '.graphiql-sidebar button[aria-label="Show Documentation Explorer"]'
DOCS_TEXT = "(() => { const d = document.querySelector('.graphiql-doc-explorer'); return d && d.innerText; })()"


def result_containing(text: str) -> str:
    return (
        "(() => { const el = document.querySelector('.result-window .CodeMirror');"
        " const value = el && el.CodeMirror.getValue();"
        f" return value && value.includes({json.dumps(text)}) ? value : null; }})()"
    )


@contextlib.asynccontextmanager
async def open_page(chromium: str, url: str) -> AsyncIterator[Page]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{chromium}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            for domain in ("Network", "Page", "Runtime"):
                await page.send(f"{domain}.enable")
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                width=1400,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            await page.send("Page.navigate", url=url)
            await page.wait_for(EDITOR_READY)
            try:
                yield page
            finally:
                page.reader.cancel()


def assert_stayed_local(page: Page) -> None:
    assert page.requests, "no requests were seen"
    remote = [
        url
        for url in page.requests
        if urlsplit(url).scheme in {"http", "https", "ws", "wss"}
        and urlsplit(url).hostname not in LOCAL_HOSTS
    ]
    assert remote == [], f"requests left localhost: {remote}"
    assert page.exceptions == [], page.exceptions


async def test_dev_graphiql_opens_with_the_token_and_runs_the_default_document(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], chromium: str
) -> None:
    bearer = token(Settings(jwt_secret=TEST_SECRET), "admin")
    token_file = tmp_path / "token"
    token_file.write_text(bearer + "\n")
    dev = {"GRAPHIQL_DEV_TOKEN_FILE": str(token_file)}
    async with (
        running_gateway(tmp_path, opencost, dev) as base,
        open_page(chromium, f"{base}/graphql") as page,
    ):
        # The Headers tab is open and holds the token; the editor holds the example document.
        headers = await page.wait_for(f"{HEADERS_EDITOR}.getValue()")
        assert json.loads(headers) == {"Authorization": f"Bearer {bearer}"}
        assert await page.evaluate(f"{QUERY_EDITOR}.getValue()") == DEV_DOCUMENT
        # The schema loaded by itself: the editors know Query's fields, and so does Docs.
        assert "components" in await page.wait_for(SCHEMA_FIELDS)
        await page.click(DOCS_BUTTON)
        docs = await page.wait_for(DOCS_TEXT)
        assert "Error fetching schema" not in docs
        assert "Query" in docs, docs
        assert await page.evaluate(NOTICE_SHOWN) is None
        await page.screenshot(tmp_path / "dev-opened.png")
        # Run the first operation as a person does: the run button, then its menu. On a loaded
        # machine the menu may still be animating in when the click lands, so a person's second
        # try is allowed (running the query twice changes nothing).
        for attempt in range(3):
            if not await page.evaluate("document.querySelector('[role=\"menuitem\"]') !== null"):
                await page.click(".graphiql-execute-button")  # opens the operations menu
            await page.click('[role="menuitem"]', "ComponentsPage")
            try:
                result = await page.wait_for(result_containing('"components"'), polls=80)
                break
            except AssertionError:
                if attempt == 2:
                    raise
                await page.screenshot(tmp_path / f"dev-run-attempt-{attempt}.png")
        await page.screenshot(tmp_path / "dev-ran.png")
        assert await page.evaluate(NOTICE_SHOWN) is None
    data = json.loads(result)
    assert "errors" not in data, data
    nodes = data["data"]["components"]["nodes"]
    assert len(nodes) == 5
    assert all(node["cost30d"] > 0 for node in nodes)
    assert_stayed_local(page)


async def test_without_a_token_the_page_says_what_to_do_and_loads_once_one_is_typed(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], chromium: str
) -> None:
    bearer = token(Settings(jwt_secret=TEST_SECRET))
    async with (
        running_gateway(tmp_path, opencost) as base,
        open_page(chromium, f"{base}/graphql") as page,
    ):
        notice = await page.wait_for(NOTICE_SHOWN)
        assert "This API needs a token" in notice
        assert '{"Authorization": "Bearer <JWT>"}' in notice
        assert "Headers tab" in notice
        assert "finops-gql token --sub you --role admin" in notice
        assert await page.evaluate(SCHEMA_FIELDS) is None
        # Nothing of the development page leaks into this one.
        assert await page.evaluate(f"{HEADERS_EDITOR}.getValue()") == ""
        assert "ComponentsPage" not in await page.evaluate(f"{QUERY_EDITOR}.getValue()")
        await page.screenshot(tmp_path / "no-token.png")

        # Typing the header is enough: no re-fetch click, the schema loads and the notice goes.
        await page.type_into(HEADERS_EDITOR, json.dumps({"Authorization": f"Bearer {bearer}"}))
        assert "topComponents" in await page.wait_for(SCHEMA_FIELDS)
        await page.wait_for(f"{NOTICE}.hidden")
        await page.type_into(QUERY_EDITOR, QUERY)
        await page.click(".graphiql-execute-button")
        result = await page.wait_for(result_containing("topComponents"))
        await page.click(DOCS_BUTTON)
        docs = await page.wait_for(DOCS_TEXT)
        assert "Error fetching schema" not in docs
        assert "Query" in docs, docs
        await page.screenshot(tmp_path / "token-typed.png")

        # A token the server refuses brings the notice back, with the server's reason.
        await page.type_into(HEADERS_EDITOR, '{"Authorization": "Bearer not-a-jwt"}')
        refused = await page.wait_for(
            f"(() => {{ const t = {NOTICE_SHOWN}; return t && t.includes('refused') ? t : null; }})()"
        )
        assert "This API needs a token" in refused
        await page.screenshot(tmp_path / "token-refused.png")
    data = json.loads(result)
    assert "errors" not in data, data
    assert len(data["data"]["topComponents"]) == 2
    assert_stayed_local(page)


# payments in examples/catalog-info.yaml (uuid5 of group:default/payments)
PAYMENTS = "fe4c9512-9eea-59df-9453-18bc7e0325d6"
SUBSCRIPTION = (
    f'subscription {{ alertRaised(teamId: "{PAYMENTS}") {{ alertId kind status title teamId }} }}'
)
README_JS = re.compile(r"^```js\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


async def _subscriptions(http: aiohttp.ClientSession, base: str, count: int) -> None:
    """Wait until the gateway holds `count` subscriptions (the protocol does not acknowledge
    one: an event published earlier would be missed)."""
    for _ in range(200):
        async with http.get(f"{base}/metrics") as response:
            if f"finops_gql_subscriptions {count}.0" in await response.text():
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway never held {count} subscriptions")


async def _publish_alert(redis_url: str, title: str) -> str:
    """An alert, as the alert evaluator announces it on Redis (finops_gql/events.py)."""
    alert_id = str(uuid.uuid4())
    body = {
        "event": "raised",
        "alert": {
            "id": alert_id,
            "kind": "BUDGET_THRESHOLD",
            "status": "OPEN",
            "teamId": PAYMENTS,
            "componentId": None,
            "title": title,
        },
    }
    redis = aioredis.from_url(redis_url)
    try:
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(body))
    finally:
        await redis.aclose()
    return alert_id


async def test_graphiql_runs_a_subscription_and_so_does_the_readme_example(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str], chromium: str
) -> None:
    redis_url = need(REDIS_URL, "REDIS_URL_TEST")
    bearer = token(Settings(jwt_secret=TEST_SECRET))
    headers = quote(json.dumps({"Authorization": f"Bearer {bearer}"}))
    async with (
        running_gateway(tmp_path, opencost, {"REDIS_URL": redis_url}) as base,
        open_page(chromium, f"{base}/graphql?headers={headers}&q=%20") as page,
        aiohttp.ClientSession() as http,
    ):
        # GraphiQL: its fetcher speaks graphql-transport-ws at the page's URL, sending the
        # Headers tab in connection_init.
        await page.type_into(QUERY_EDITOR, SUBSCRIPTION)
        await page.click(".graphiql-execute-button")
        await _subscriptions(http, base, 1)
        first = await _publish_alert(redis_url, "checkout is at 82% of its budget")
        shown = json.loads(await page.wait_for(result_containing(first)))
        assert shown == {
            "data": {
                "alertRaised": {
                    "alertId": first,
                    "kind": "BUDGET_THRESHOLD",
                    "status": "OPEN",
                    "title": "checkout is at 82% of its budget",
                    "teamId": PAYMENTS,
                }
            }
        }
        await page.screenshot(tmp_path / "subscription-event.png")

        # The README's plain-JS example, as written, in the same page (same origin).
        example = README_JS.search((Path(__file__).parent.parent / "README.md").read_text())
        assert example is not None, "README has no js block"
        await page.evaluate(
            "(() => { window.readmeLog = [];"
            f" const token = {json.dumps(bearer)}; const teamId = {json.dumps(PAYMENTS)};"
            " const console = { log: (...a) => window.readmeLog.push(a),"
            " error: (...a) => window.readmeLog.push(['error', ...a]) };"
            f"\n{example.group('body')}\n}})()"
        )
        await _subscriptions(http, base, 2)
        second = await _publish_alert(redis_url, "search is at 101% of its budget")
        logged = await page.wait_for(
            "(() => { const entry = window.readmeLog.find(e => e[0] === 'alert');"
            " return entry ? entry[1] : null; })()"
        )
        assert logged == {
            "alertId": second,
            "kind": "BUDGET_THRESHOLD",
            "status": "OPEN",
            "title": "search is at 101% of its budget",
        }
        # and GraphiQL's subscription got the second event too
        await page.wait_for(result_containing(second))
    assert_stayed_local(page)
