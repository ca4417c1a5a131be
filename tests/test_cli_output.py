"""What the CLI prints to a person: what migrate applied, no library chatter, the stand-in."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET
from tests.proc import EXAMPLE, cli, free_port


async def test_migrate_lists_what_it_applied_and_stays_quiet(tmp_path: Path) -> None:
    # LOG_LEVEL left at its default (INFO): library INFO lines must not reach the output.
    env = {"DATABASE_URL": f"sqlite://{tmp_path / 'cli.sqlite3'}", "JWT_SECRET": TEST_SECRET}
    env_without_level = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    env_without_level.update(env)
    code, out, err = await cli("migrate", env=env_without_level)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "applied 0001_initial"
    assert lines[-1].startswith("database is up to date (")
    assert "Tortoise" not in err
    code, out, err = await cli("migrate", env=env_without_level)
    assert code == 0, err
    assert out.strip() == "database was already up to date"
    assert err == ""
    code, _, err = await cli("catalog", "import", str(EXAMPLE), env=env_without_level)
    assert code == 0, err
    assert err == ""


async def test_debug_log_level_shows_library_lines(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'cli.sqlite3'}",
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "DEBUG",
    }
    code, _, err = await cli("migrate", env=env)
    assert code == 0, err
    assert '"logger":"tortoise' in err


async def test_dev_opencost_serves_the_stand_in() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "finops_gql.cli",
        "dev",
        "opencost",
        "--port",
        str(port),
        "--ui",
        str(EXAMPLE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert f"http://127.0.0.1:{port}/model" in banner.decode()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(100):
                try:
                    if (await http.get("/model/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            answer = (
                await http.get(
                    "/model/allocation", params={"window": "7d", "aggregate": "label:app"}
                )
            ).json()
        assert answer["code"] == 200
        assert "checkout" in answer["data"][0]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=15)
