"""The README and the deploy manifests say what the code does."""

from __future__ import annotations

from pathlib import Path

import yaml

from finops_gql.cli import build_parser
from finops_gql.config import ENV_VARS, Settings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_and_read() -> None:
    for name in ENV_VARS:
        assert f"`{name}`" in README, f"README does not document {name}"
    changed = Settings.from_env(
        {
            "OPENCOST_TIMEOUT_SECONDS": "5",
            "OPENCOST_CACHE_SECONDS": "0",
            "MIGRATE_ON_START": "true",
            "GRAPHIQL_DISABLED": "1",
            "COST_CURRENCY": "eur",
        }
    )
    assert changed.opencost_timeout_s == 5
    assert changed.opencost_cache_ttl_s == 0
    assert changed.migrate_on_start
    assert not changed.graphiql
    assert changed.cost_currency == "EUR"


def test_deploy_manifests_use_known_variables_and_probes() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Deployment") == 2
    for doc in documents:
        if doc["kind"] == "ConfigMap":
            assert set(doc["data"]) <= set(ENV_VARS) | {"LOG_LEVEL"}
        if doc["kind"] == "Secret":
            assert set(doc["stringData"]) <= set(ENV_VARS)
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            command = container["args"][0]
            assert command in {"serve", "worker"}
            if command == "serve":
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_readme_commands_exist() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("serve", "worker", "sync", "migrate", "catalog", "token", "print-schema"):
        assert name in commands
        assert f"finops-gql {name}" in README or name == "print-schema"
    for script in (
        "scripts/dev",
        "scripts/test",
        "scripts/update-schema",
        "scripts/makemigrations",
    ):
        assert script in README
        assert (ROOT / script).exists()
