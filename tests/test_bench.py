"""The benchmark harness at a tiny scale: it must finish and its figures must be consistent.
No timing is asserted here; scripts/bench.py reports timings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


async def smoke_run(*args: str) -> tuple[str, str]:
    """`scripts/bench.py --smoke ARGS`'s report and its stderr; it must succeed within 5
    minutes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "bench.py"),
        "--smoke",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode(), err.decode()


async def test_bench_smoke() -> None:
    report, _ = await smoke_run(
        "--peer",  # SQLite: the race is skipped, and the report says why
        "postgraphile",
        "--sources",  # the components spread over two OpenCost sources (clusters)
        "2",
    )
    assert "| rest_top10" in report
    json_path = ROOT / report.rsplit("JSON: ", 1)[1].strip()
    result = json.loads(json_path.read_text())
    json_path.unlink()

    assert all(row["errors"] == 0 for row in result["measured"].values())
    rest_total, graphql_total = result["rest_graphql_team_total"]
    assert rest_total == graphql_total
    assert rest_total > 0
    graphql_count, sql_count = result["filtered_total_count"]
    assert graphql_count == sql_count > 0
    assert result["measured"]["graphql_filtered50"]["errors"] == 0
    by_team, by_system = result["breakdown_totals_team_system"]
    assert by_team == by_system > 0
    catalog, total, keys = result["coverage_catalog_total_keys"]
    assert catalog == total > 0
    assert keys == 20
    statements = result["graphql_sql_statements_by_page_size"]
    assert len(set(statements.values())) == 1, statements  # constant whatever the page size
    sync = result["sync"]
    components = result["scale"]["components"]
    assert result["sources"] == 2
    # One request per source, each answering for its share of the components.
    assert sync["backfill_30d"]["opencost_requests"] == 2
    assert sync["backfill_30d"]["records"] == 30 * components
    assert sync["one_day"]["opencost_requests"] == 2
    assert sync["one_day"]["records"] == components
    assert result["server_peak_rss_mb"] > 0
    assert result["race"] is None
    assert "--db postgres" in result["peer_skipped"]
    assert f"peer race skipped: {result['peer_skipped']}" in report


async def test_bench_sync_only_measures_the_sync_alone() -> None:
    report, err = await smoke_run("--sync-only", "--db-name", "finops_bench_sync_only")
    assert "| rest_top10" not in report  # no read scenario ran
    assert "generating" not in err  # nor was the read scenarios' history built
    json_path = ROOT / report.rsplit("JSON: ", 1)[1].strip()
    result = json.loads(json_path.read_text())
    json_path.unlink()
    assert "measured" not in result
    components = result["scale"]["components"]
    backfill, one_day = result["sync"]["backfill_30d"], result["sync"]["one_day"]
    assert backfill["records"] == 30 * components
    assert one_day["records"] == components
    assert backfill["opencost_requests"] == one_day["opencost_requests"] == 1
    assert f"sync 30-day backfill: {backfill['seconds']:.2f} s" in report


def bench_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (this repository's own script)
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_peer_race_on_sqlite_is_skipped_with_the_reason() -> None:
    done = bench_cli("--peer", "postgraphile", "--peer-only")
    assert done.returncode == 0, done.stderr
    assert "peer race skipped" in done.stdout
    assert "PostgreSQL only" in done.stdout
    assert "--db postgres" in done.stdout
    assert "generating" not in done.stderr  # nothing was built for a race that cannot run


def test_peer_race_without_node_is_skipped_with_the_reason(tmp_path: Path) -> None:
    # A PATH with no node and no npm on it (the interpreter is named by its full path).
    env = {**os.environ, "PATH": str(tmp_path)}
    done = bench_cli("--db", "postgres", "--peer", "postgraphile", "--peer-only", env=env)
    assert done.returncode == 0, done.stderr
    assert "needs Node.js: node and npm not found on PATH" in done.stdout
    assert "generating" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peer-only"], "--peer-only needs --peer"),
        (["--peer", "hasura"], "invalid choice: 'hasura'"),
        (["--peer", "postgraphile", "--peer-rounds", "0"], "--peer-rounds must be at least 1"),
        (["--peer", "postgraphile", "--reuse"], "--reuse needs --peer-only"),
        (["--sources", "0"], "--sources must be between 1 and 50"),
        (["--components", "1000,lots"], "not a number or a list of numbers"),
        (["--components", "1000,1"], "each scale needs at least 2 components"),
        (
            ["--sync-only", "--peer", "postgraphile", "--peer-only"],
            "--sync-only and --peer-only exclude each other",
        ),
    ],
)
def test_bad_peer_arguments_are_refused(args: list[str], message: str) -> None:
    done = bench_cli(*args)
    assert done.returncode == 2
    assert message in done.stderr


def bench_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """scripts/bench.py as a module (it is a script, not a package's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_script", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    return bench


def test_scale_curve_has_one_row_per_scale_and_names_the_flat_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = bench_module(monkeypatch)

    def result(components: int, p50: float, seconds: float) -> dict[str, object]:
        backfill = {
            "seconds": seconds,
            "sync_seconds": seconds - 1,
            "alert_evaluation_seconds": 1.0,
            "records": 30 * components,
            "peak_rss_mb": 120.0,
            "standin_peak_rss_mb": 90.0,
        }
        names = [*bench.FLAT_READS, *bench.PLATFORM_READS]
        return {
            "db": "sqlite",
            "scale": {"components": components, "days": 90},
            "measured": {name: {"p50_ms": p50} for name in names},
            "sync": {"backfill_30d": backfill},
            "server_peak_rss_mb": 100.0,
        }

    text = bench.curve([result(1000, 2.0, 3.0), result(10000, 3.0, 30.0)])
    rows = [line for line in text.splitlines() if line.startswith("| 1")]
    assert [row.split(" | ")[0] for row in rows] == ["| 1000", "| 10000"]
    assert "| 100 |" in rows[0]  # microseconds per record: 3 s / 30,000 records
    assert "worst x1.50" in text


def test_floors_write_day_parameters_as_literals(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the app does (SqlParams.day): a floor planned with its range, the other parameters
    renumbered in order."""
    import uuid
    from datetime import date

    bench = bench_module(monkeypatch)
    team = uuid.UUID(int=7)
    sql = "SELECT 1 FROM t WHERE day >= $2 AND day <= $3 AND team_id = $1 AND x < $4 AND day > $2"
    args = [team, date(2026, 1, 1), date(2026, 1, 31), 5]
    assert bench.inline_days(sql, args, "postgres") == (
        "SELECT 1 FROM t WHERE day >= DATE '2026-01-01' AND day <= DATE '2026-01-31' "
        "AND team_id = $1 AND x < $2 AND day > DATE '2026-01-01'",
        [team, 5],
    )
    written, kept = bench.inline_days(sql, args, "sqlite")
    assert "day >= '2026-01-01' AND day <= '2026-01-31'" in written
    assert kept == [team, 5]
