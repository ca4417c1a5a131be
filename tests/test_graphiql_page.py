"""The GraphiQL page: a notice for users without a token, and in development (and only there) a
token and an example document. The browser side is in tests/test_browser.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, parse, validate
from strawberry.http.ides import get_graphql_ide_html

from finops_gql.app import create_app
from finops_gql.config import ConfigError, Settings, is_loopback
from finops_gql.graphql.ide import DEV_DOCUMENT, graphiql_page, script_json
from finops_gql.graphql.schema import schema
from finops_gql.graphql.view import offline_ide_html
from tests.conftest import TEST_SECRET
from tests.proc import cli

DEV_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXZlbG9wZXIifQ.c2lnbmF0dXJl"
CONFIG = re.compile(r"window\.FINOPS_GRAPHIQL = (.*);\n")


def page_config(html: str) -> dict[str, Any]:
    match = CONFIG.search(html)
    assert match, "the page carries no FINOPS_GRAPHIQL config"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(DEV_TOKEN + "\n")
    return path


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """GET the GraphiQL page of an app built with the given settings, from the given client."""
    clients: list[httpx.AsyncClient] = []

    async def get(settings: Settings, client: str = "127.0.0.1") -> httpx.Response:
        app = create_app(settings)
        # The page reads no data, but Strawberry builds a context for it: no database needed.
        app.state.services = SimpleNamespace(catalog=None, costs=None)
        transport = httpx.ASGITransport(app=app, client=(client, 50000))
        http = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        clients.append(http)
        response = await http.get("/graphql", headers={"Accept": "text/html"})
        assert response.status_code == 200
        return response

    yield get
    for http in clients:
        await http.aclose()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_dev_token_is_allowed_on_loopback(host: str, token_file: Path) -> None:
    assert is_loopback(host)
    Settings(graphiql_dev_token_file=str(token_file)).check_serve_host(host)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "gateway.lan"],  # noqa: S104
)
def test_dev_token_is_refused_on_any_other_host(host: str, token_file: Path) -> None:
    settings = Settings(graphiql_dev_token_file=str(token_file))
    with pytest.raises(ConfigError, match="GRAPHIQL_DEV_TOKEN_FILE") as refused:
        settings.check_serve_host(host)
    assert "loopback" in str(refused.value)
    assert repr(host) in str(refused.value)
    Settings().check_serve_host(host)  # without the setting, any host is fine


async def test_serve_refuses_a_dev_token_on_a_public_host(token_file: Path) -> None:
    env = {
        "JWT_SECRET": TEST_SECRET,
        "GRAPHIQL_DEV_TOKEN_FILE": str(token_file),
        "DATABASE_URL": "sqlite://:memory:",
    }
    code, _, err = await cli("serve", "--host", "0.0.0.0", "--port", "1", env=env)  # noqa: S104
    assert code == 2
    assert "configuration error: GRAPHIQL_DEV_TOKEN_FILE" in err
    assert "'0.0.0.0'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", ["", "\n", "one two\n", "line1\nline2\n", "tok\u00e9n"])
def test_a_token_file_without_a_token_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    settings = Settings(jwt_secret=TEST_SECRET, graphiql_dev_token_file=str(path))
    with pytest.raises(ConfigError, match=r"GRAPHIQL_DEV_TOKEN_FILE=.* does not hold a token"):
        create_app(settings)


def test_a_missing_token_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    settings = Settings(jwt_secret=TEST_SECRET, graphiql_dev_token_file=str(missing))
    with pytest.raises(ConfigError, match=r"GRAPHIQL_DEV_TOKEN_FILE=.*cannot be read"):
        create_app(settings)


def test_setting_is_read_from_the_environment(token_file: Path) -> None:
    settings = Settings.from_env({"GRAPHIQL_DEV_TOKEN_FILE": f" {token_file} "})
    assert settings.graphiql_dev_token_file == str(token_file)
    assert settings.graphiql_dev_token() == DEV_TOKEN
    assert Settings.from_env({}).graphiql_dev_token() is None
    hidden = Settings.from_env(
        {"GRAPHIQL_DEV_TOKEN_FILE": str(token_file), "GRAPHIQL_DISABLED": "1"}
    )
    assert hidden.graphiql_dev_token() is None  # no page, nothing to put a token in


async def test_the_page_has_the_notice_and_no_token_by_default(page: Any) -> None:
    html = (await page(Settings(jwt_secret=TEST_SECRET))).text
    assert 'id="finops-token-notice"' in html
    assert "This API needs a token" in html
    assert "finops-gql token --sub you --role admin" in html
    assert page_config(html) == {"headers": None, "query": None}
    assert "Bearer ey" not in html
    assert "ComponentsPage" not in html


async def test_the_dev_page_has_the_token_and_the_document(page: Any, token_file: Path) -> None:
    settings = Settings(jwt_secret=TEST_SECRET, graphiql_dev_token_file=str(token_file))
    response = await page(settings)
    config = page_config(response.text)
    assert json.loads(config["headers"]) == {"Authorization": f"Bearer {DEV_TOKEN}"}
    assert config["query"] == DEV_DOCUMENT
    assert response.headers["cache-control"] == "no-store"


async def test_the_dev_page_gives_no_token_to_a_remote_client(page: Any, token_file: Path) -> None:
    # Defence in depth behind the loopback check at start: a client forwarded by a local proxy.
    settings = Settings(jwt_secret=TEST_SECRET, graphiql_dev_token_file=str(token_file))
    html = (await page(settings, client="203.0.113.7")).text
    assert DEV_TOKEN not in html
    assert page_config(html) == {"headers": None, "query": None}


async def test_the_embedded_token_cannot_end_the_script(page: Any, tmp_path: Path) -> None:
    hostile = "x</script><script>alert(1)</script><!--&"
    path = tmp_path / "token"
    path.write_text(hostile)
    plain = (await page(Settings(jwt_secret=TEST_SECRET))).text
    html = (await page(Settings(jwt_secret=TEST_SECRET, graphiql_dev_token_file=str(path)))).text
    assert "alert(1)</script>" not in html
    assert html.lower().count("</script") == plain.lower().count("</script")
    assert json.loads(page_config(html)["headers"]) == {"Authorization": f"Bearer {hostile}"}


def test_script_json_is_inert_in_a_script_and_parses_back() -> None:
    value = {"a": "</script><!-- ]]> & \u2028\u2029 é"}
    text = script_json(value)
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == value


async def test_vendored_assets_still_match_their_integrity(page: Any) -> None:
    html = (await page(Settings(jwt_secret=TEST_SECRET))).text
    pinned = re.findall(
        r'(?:src|href)="https://unpkg.com/([^"]+)"\s+integrity="([^"]+)"',
        get_graphql_ide_html("graphiql"),
    )
    served = re.findall(r'(?:src|href)="/graphql/static/([^"]+)"\s+integrity="([^"]+)"', html)
    assert served == pinned
    static = Path(__file__).parent.parent / "finops_gql" / "static" / "graphiql"
    for path, integrity in served:
        digest = base64.b64encode(hashlib.sha384((static / path).read_bytes()).digest())
        assert integrity == f"sha384-{digest.decode()}", path


def test_the_page_refuses_a_template_it_does_not_know() -> None:
    html = offline_ide_html(get_graphql_ide_html("graphiql"))
    with pytest.raises(RuntimeError, match="changed shape"):
        graphiql_page(html.replace("</body>", "<script>1</script></body>"))


def test_the_dev_document_is_valid_and_each_operation_is_named() -> None:
    document = parse(DEV_DOCUMENT)
    assert validate(schema._schema, document) == []
    names = [
        d.name.value if d.name else None
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    assert names == [
        "ComponentsPage",
        "TeamCosts",
        "TopComponents",
        "SetBudget",
        "TriggerCostSync",
        "SyncFinished",
    ]
