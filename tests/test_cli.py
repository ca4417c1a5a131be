"""The finops-gql command line, run as a user runs it: a subprocess against a fresh SQLite file."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from finops_gql.dev.opencost_fake import FakeOpenCost
from tests.conftest import TEST_SECRET
from tests.proc import EXAMPLE, cli


@pytest.fixture
def env(tmp_path: Path, opencost: tuple[FakeOpenCost, str]) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite://{tmp_path / 'cli.sqlite3'}",
        "OPENCOST_URL": opencost[1],
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "SYNC_RETRY_BACKOFF_SECONDS": "0.01",
    }


async def test_migrate_import_sync(env: dict[str, str], opencost: tuple[FakeOpenCost, str]) -> None:
    fake = FakeOpenCost(keys=["checkout", "payments-api", "ledger-v2", "search", "recommendations"])
    opencost[0].keys = fake.keys
    code, out, err = await cli("migrate", env=env)
    assert code == 0, err
    assert "up to date" in out
    code, out, err = await cli("catalog", "import", str(EXAMPLE), env=env)
    assert code == 0, err
    assert "3 teams, 5 components, 2 systems, 1 domains imported" in out
    assert "skipped" in out
    code, out, err = await cli("sync", env=env)
    assert code == 0, err
    assert "succeeded" in out
    assert "150 records for 5 components, 1 OpenCost requests" in out
    code, out, _ = await cli("sync", env=env)
    assert "nothing new" in out


async def test_bad_catalog_file_imports_nothing(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Component\nmetadata: {name: x}\nspec: {owner: ghost}\n")
    await cli("migrate", env=env)
    code, _, err = await cli("catalog", "import", str(bad), env=env)
    assert code == 2
    assert "spec.owner group:default/ghost" in err
    assert "nothing imported" in err
    code, _, err = await cli("catalog", "import", str(tmp_path / "missing.yaml"), env=env)
    assert code == 2
    assert "cannot read" in err


async def test_sync_reports_opencost_failure(
    env: dict[str, str], opencost: tuple[FakeOpenCost, str]
) -> None:
    await cli("migrate", env=env)
    await cli("catalog", "import", str(EXAMPLE), env=env)
    opencost[0].fail = "500"
    code, _, err = await cli("sync", env=env)
    assert code == 1
    assert "nothing was written" in err


async def test_token_mints_a_verifiable_admin_token(env: dict[str, str]) -> None:
    code, out, err = await cli(
        "token", "--sub", "alice", "--role", "admin", "--ttl", "30m", env=env
    )
    assert code == 0, err
    claims = jwt.decode(out.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 1800


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (("token", "--sub", "a"), {"JWT_SECRET": "short"}, "too short"),
        (("token", "--sub", "a"), {"JWT_SECRET": ""}, "JWT_SECRET"),
        (("token", "--sub", "a", "--ttl", "forever"), {}, "ttl"),
        (("serve",), {"JWT_SECRET": ""}, "JWT_SECRET"),
        (("worker",), {"COST_SYNC_CRON": "0 3 * * 9"}, "day-of-week field"),
        (("migrate",), {"COST_RETENTION_DAYS": "abc"}, "COST_RETENTION_DAYS"),
        (("migrate",), {"COST_CURRENCY": "dollars"}, "COST_CURRENCY"),
    ],
)
async def test_configuration_errors_exit_2(
    env: dict[str, str], args: tuple[str, ...], extra: dict[str, str], message: str
) -> None:
    code, _, err = await cli(*args, env={**env, **extra})
    assert code == 2
    assert message in err
    assert "Traceback" not in err


async def test_print_schema_matches_file() -> None:
    code, out, _ = await cli("print-schema", env={})
    assert code == 0
    assert out == (Path(__file__).parent.parent / "schema.graphql").read_text()
