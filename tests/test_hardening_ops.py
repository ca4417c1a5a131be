"""Operational surfaces under abuse: /metrics cardinality, /readyz cost and secrecy, the one 500
path, header limits of `finops-gql serve`, and CLI commands on a database that cannot be opened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from finops_gql.app import create_app
from finops_gql.config import ConfigError, Settings, redact_url
from finops_gql.costs.service import CostService
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.graphql.view import GraphQLView
from finops_gql.metrics import GRAPHQL_SECONDS, REGISTRY
from finops_gql.observability import OTHER, OperationLabels
from finops_gql.services import Services
from tests.conftest import TEST_SECRET, served, token
from tests.proc import cli, serving

# -- the OpenCost stand-in, counting its health probes ------------------------------------------


@pytest.fixture
def probes() -> list[str]:
    return []


@pytest.fixture
async def opencost(probes: list[str]) -> AsyncIterator[tuple[FakeOpenCost, str]]:
    """conftest's stand-in, plus a record of every /healthz request it answers."""
    fake = FakeOpenCost(keys=["checkout", "payments-api", "search"])
    app = fake.app()

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/healthz"):
            probes.append(request.path)
        return await handler(request)

    app.middlewares.append(count)
    async with served(app) as url:
        yield fake, url


@contextlib.asynccontextmanager
async def app_client(
    settings: Settings, services: Services, *, raise_app_exceptions: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        http.headers["Authorization"] = f"Bearer {token(settings)}"
        yield http


# -- /metrics: label cardinality ----------------------------------------------------------------


def _operation_series() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        if metric.name == "finops_gql_graphql_operation_seconds":
            names |= {sample.labels["operation"] for sample in metric.samples}
    return names


def test_20000_operation_names_keep_the_exposition_small() -> None:
    labels = OperationLabels()
    before = len(generate_latest(REGISTRY))
    for i in range(20_000):
        name = labels.label(f"Flood{i}", valid=True, limit=100)
        GRAPHQL_SECONDS.labels(name, "query").observe(0.001)
    after = len(generate_latest(REGISTRY))
    flood = {name for name in _operation_series() if name.startswith("Flood")}
    assert len(flood) == 100
    assert OTHER in _operation_series()
    # 100 names x one histogram (about 1.6 KB each); unbounded, this was 47 MB.
    assert after - before < 250_000, after - before


def test_operation_labels_refuse_invalid_and_odd_names() -> None:
    labels = OperationLabels()
    assert labels.label("Good", valid=False, limit=10) == OTHER
    assert labels.label("x" * 65, valid=True, limit=10) == OTHER
    assert labels.label("has-dash", valid=True, limit=10) == OTHER
    assert labels.label(None, valid=True, limit=10) == "anonymous"
    assert labels.label("Good", valid=True, limit=1) == "Good"
    assert labels.label("Second", valid=True, limit=1) == OTHER
    assert labels.label("Good", valid=True, limit=1) == "Good"  # a known name stays itself


async def test_graphql_operation_names_are_bounded_by_setting(
    settings: Settings, services: Services
) -> None:
    services.settings = services.settings.with_(metrics_max_operations=3)
    async with app_client(settings, services) as http:
        for i in range(12):
            query = f"query Named{i} {{ opencostAvailability {{ available }} }}"
            assert (await http.post("/graphql", json={"query": query})).status_code == 200
        # Names of documents that do not validate never become labels, even under the bound.
        await http.post("/graphql", json={"query": "query Unvalidated { nope }"})
        await http.post("/graphql", json={"query": "query Unparsable {"})
        text = (await http.get("/metrics")).text
    named = {n for n in _operation_series() if n.startswith("Named")}
    assert named == {"Named0", "Named1", "Named2"}
    assert 'operation="other"' in text
    assert "Unvalidated" not in text
    assert "Unparsable" not in text


async def test_http_method_label_is_bounded(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as http:
        await http.request("BREW1234", "/healthz")
        text = (await http.get("/metrics")).text
    assert "BREW1234" not in text
    assert 'method="other",route="/healthz"' in text


# -- /readyz: cached, and no details in the public answer ---------------------------------------


async def test_readyz_probes_opencost_once_for_100_calls(
    settings: Settings, services: Services, probes: list[str]
) -> None:
    await services.opencost.api_root()  # the client's one-off URL-style discovery
    probes.clear()
    async with app_client(settings, services) as http:
        http.headers.pop("Authorization")
        answers = await asyncio.gather(*(http.get("/readyz") for _ in range(50)))
        answers += [await http.get("/readyz") for _ in range(50)]
    assert all(a.status_code == 200 for a in answers)
    assert all(a.json()["checks"]["opencost"] == "ok" for a in answers)
    assert 1 <= len(probes) <= 2, probes


async def test_readyz_cache_is_the_setting(
    settings: Settings, services: Services, probes: list[str]
) -> None:
    await services.opencost.api_root()
    probes.clear()
    async with app_client(settings.with_(ready_cache_s=0), services) as http:
        for _ in range(5):
            assert (await http.get("/readyz")).status_code == 200
    assert len(probes) >= 5  # the bound above comes from the cache, nothing else


async def test_readyz_answer_has_no_host_port_or_error_text(
    settings: Settings,
    services: Services,
    fake: FakeOpenCost,
    opencost: tuple[FakeOpenCost, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    services.settings = services.settings.with_(redis_url="redis://:hunter2@127.0.0.1:1/0")
    fake.fail = "down"
    port = opencost[1].rsplit(":", 1)[1]
    with caplog.at_level(logging.WARNING, logger="finops_gql.app"):
        async with app_client(settings, services) as http:
            response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"database": "ok", "opencost": "unavailable", "redis": "unavailable"},
    }
    for secret in ("127.0.0.1", port, "503", "unhealthy", "hunter2", "Error"):
        assert secret not in response.text
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "opencost unavailable: OpenCost is unhealthy: HTTP 503" in logged
    assert "redis unavailable" in logged


# -- one 500 path: X-Request-ID, no internals, one log record with the request id ---------------


def _errors_with(caplog: pytest.LogCaptureFixture, rid: str) -> list[logging.LogRecord]:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert getattr(errors[0], "requestId", None) == rid
    assert errors[0].exc_info is not None  # the traceback, once
    return errors


async def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("secret internals at db.internal:5432")


async def test_rest_500_has_request_id_and_one_log_record(
    settings: Settings,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(CostService, "top_component_columns", _boom)
    # raise_app_exceptions: nothing may escape the app, or the server logs the traceback again.
    async with app_client(settings, services, raise_app_exceptions=True) as http:
        with caplog.at_level(logging.INFO):
            response = await http.get("/api/v1/cost/summary", headers={"X-Request-ID": "rid-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "rid-500"
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "statusCode": 500,
        "message": "Internal server error",
        "error": "Internal Server Error",
    }
    assert "secret" not in response.text
    _errors_with(caplog, "rid-500")
    access = [r for r in caplog.records if r.name == "finops_gql.access" and r.levelno == 20]
    assert [getattr(r, "status", None) for r in access] == [500]


async def test_graphql_500_is_graphql_shaped_with_request_id(
    settings: Settings,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(GraphQLView, "get_context", _boom)
    async with app_client(settings, services, raise_app_exceptions=True) as http:
        with caplog.at_level(logging.INFO):
            response = await http.post(
                "/graphql",
                json={"query": "{ topComponents { totalCost } }"},
                headers={"X-Request-ID": "rid-gql"},
            )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "rid-gql"
    assert response.json() == {
        "data": None,
        "errors": [{"message": "internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
    }
    _errors_with(caplog, "rid-gql")


async def test_resolver_error_is_logged_once_with_request_id(
    settings: Settings,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(CostService, "top_components", _boom)
    async with app_client(settings, services, raise_app_exceptions=True) as http:
        with caplog.at_level(logging.INFO):
            response = await http.post(
                "/graphql",
                json={"query": "{ topComponents { totalCost } }"},
                headers={"X-Request-ID": "rid-resolver"},
            )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "rid-resolver"
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in response.text
    _errors_with(caplog, "rid-resolver")


# -- `finops-gql serve`: bounded headers --------------------------------------------------------


async def _raw_get(port: int, header_bytes: int) -> bytes:
    """GET /healthz with one header of `header_bytes`; the answer's first bytes, or b"" when the
    server closed the connection instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: "
            + b"a" * header_bytes
            + b"\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(64), timeout=20)
        except ConnectionError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_serve_refuses_a_huge_header_and_keeps_answering(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'serve.sqlite3'}",
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "HTTP_MAX_HEADER_BYTES": "16384",
    }
    async with (
        serving(env, "--migrate") as gateway,
        httpx.AsyncClient(base_url=gateway.base, timeout=10) as http,
    ):
        port = gateway.port
        assert (await _raw_get(port, 8_000)).startswith(b"HTTP/1.1 200")
        for size in (32_000, 1_000_000, 16_000_000):
            answer = await _raw_get(port, size)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), (size, answer)
        assert (await http.get("/healthz")).status_code == 200
    assert "HTTP_MAX_HEADER_BYTES" in gateway.stderr  # the refusal is logged, naming the limit


def test_server_limits_are_settings() -> None:
    from finops_gql.httpserver import BoundedHttpToolsProtocol, uvicorn_options

    settings = Settings.from_env({"HTTP_MAX_HEADER_BYTES": "4096", "HTTP_LIMIT_CONCURRENCY": "7"})
    options = uvicorn_options(settings)
    assert options["h11_max_incomplete_event_size"] == 4096
    assert options["limit_concurrency"] == 7
    assert options["http"] is BoundedHttpToolsProtocol
    with pytest.raises(ConfigError, match="HTTP_MAX_HEADER_BYTES"):
        Settings.from_env({"HTTP_MAX_HEADER_BYTES": "10"})


# -- CLI commands on a database that cannot be opened -------------------------------------------

COMMANDS: list[tuple[str, ...]] = [
    ("migrate",),
    ("sync",),
    ("catalog", "import", str(Path(__file__).parent.parent / "examples" / "catalog-info.yaml")),
    ("serve", "--port", "0"),
    ("worker", "--burst"),
    ("token", "--sub", "alice"),
]
BAD_URLS = {
    "missing-folder": "sqlite:///{tmp}/no/such/folder/db.sqlite3",
    "mysql": "mysql://finops:s3cr3t-pw@127.0.0.1:3306/finops",
    "unreachable": "postgres://finops:s3cr3t-pw@127.0.0.1:1/finops",
    "malformed": "postgres://finops:s3cr3t-pw@[::1/finops",
}
# Bad syntax is a setting error for every command that reads settings; a URL that parses but
# cannot be opened matters only to the commands that open the database (not `token`).
OPENS_DATABASE = {"migrate", "sync", "catalog", "serve", "worker"}


@pytest.mark.parametrize("kind", BAD_URLS)
async def test_every_command_on_a_bad_database_url_exits_2_with_one_line(
    kind: str, tmp_path: Path, opencost: tuple[FakeOpenCost, str]
) -> None:
    url = BAD_URLS[kind].format(tmp=tmp_path)
    env = {
        "DATABASE_URL": url,
        "JWT_SECRET": TEST_SECRET,
        "OPENCOST_URL": opencost[1],
        "REDIS_URL": "redis://127.0.0.1:1",
        "LOG_LEVEL": "WARNING",
    }
    syntax_error = kind in {"mysql", "malformed"}
    # All at once: cli() waits at most 60 s, and a hang (the bug) fails the test there.
    results = await asyncio.gather(*(cli(*args, env=env) for args in COMMANDS))
    for args, (code, out, err) in zip(COMMANDS, results, strict=True):
        if args[0] not in OPENS_DATABASE and not syntax_error:
            assert code == 0, (args, err)
            continue
        assert code == 2, (args, code, err)
        assert "Traceback" not in err, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, err)
        assert "DATABASE_URL" in lines[0], (args, err)
        assert "s3cr3t-pw" not in err + out
    code, out, err = await cli("print-schema", env=env)  # needs no database at all
    assert code == 0, err
    assert "type Query" in out


async def test_commands_refuse_an_unmigrated_database_with_one_line(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str]
) -> None:
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'fresh.sqlite3'}",
        "JWT_SECRET": TEST_SECRET,
        "OPENCOST_URL": opencost[1],
        "REDIS_URL": "redis://127.0.0.1:1",
        "LOG_LEVEL": "WARNING",
    }
    commands = [args for args in COMMANDS if args[0] in {"sync", "catalog", "serve", "worker"}]
    results = await asyncio.gather(*(cli(*args, env=env) for args in commands))
    for args, (code, _, err) in zip(commands, results, strict=True):
        assert code == 2, (args, err)
        assert err.strip().splitlines() == [err.strip()], (args, err)
        assert "run `finops-gql migrate` first" in err, (args, err)
    # MIGRATE_ON_START is the other way out, for the commands that honour it.
    code, out, err = await cli("sync", env={**env, "MIGRATE_ON_START": "1"})
    assert code == 0, err
    assert "succeeded" in out


async def test_worker_on_an_unreachable_or_malformed_redis_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'worker.sqlite3'}",
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    assert (await cli("migrate", env=env))[0] == 0
    for redis_url in ("redis://:s3cr3t-pw@127.0.0.1:1/0", "redis://:s3cr3t-pw@[::1/0"):
        code, _, err = await cli("worker", "--burst", env={**env, "REDIS_URL": redis_url})
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert "REDIS_URL" in err
        assert "s3cr3t-pw" not in err


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgres://u:pw@h:5432/db") == "postgres://u:***@h:5432/db"
    assert redact_url("postgres://u@h/db") == "postgres://u@h/db"
    assert redact_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert "pw" not in redact_url("postgres://u:pw@[::1/db")


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "notaurl", "postgres://h", "postgres://u:p@h:99999/db", "sqlite:x.db"]
)
def test_database_url_syntax_is_checked_with_settings(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({"DATABASE_URL": url})


def test_a_fresh_sqlite_file_locked_by_another_opener_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processes started together on a new SQLite file (server and worker) race to switch it to
    WAL; the loser was told "database is locked" at once and exited. The switch is retried until
    the connect timeout, and then the file is in WAL mode; other errors are not retried."""
    import sqlite3

    from finops_gql.db import setup

    path = tmp_path / "fresh.sqlite3"
    real_connect = sqlite3.connect
    refusals = {"left": 3}

    class Racing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.inner = real_connect(*args, **kwargs)  # type: ignore[call-overload]

        def execute(self, sql: str) -> object:
            if refusals["left"] > 0:
                refusals["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self.inner.execute(sql)

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr(setup.sqlite3, "connect", Racing)
    monkeypatch.setattr(setup, "SQLITE_OPEN_RETRY_S", 0.01)
    setup._open_sqlite(f"sqlite://{path}", timeout_s=5)
    assert refusals["left"] == 0
    monkeypatch.setattr(setup.sqlite3, "connect", real_connect)
    with contextlib.closing(sqlite3.connect(path)) as opened:
        assert opened.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    refusals["left"] = 1_000  # locked for longer than the timeout: the error stands
    monkeypatch.setattr(setup.sqlite3, "connect", Racing)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        setup._open_sqlite(f"sqlite://{tmp_path / 'other.sqlite3'}", timeout_s=0.05)
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        setup._open_sqlite(f"sqlite://{tmp_path / 'missing' / 'x.sqlite3'}", timeout_s=5)
