"""The benchmark harness at a tiny scale: it must finish and its figures must be consistent.
No timing is asserted here; scripts/bench.py reports timings."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


async def test_bench_smoke() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "bench.py"),
        "--smoke",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]
    report = out.decode()
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
    statements = result["graphql_sql_statements_by_page_size"]
    assert len(set(statements.values())) == 1, statements  # constant whatever the page size
    sync = result["sync"]
    components = result["scale"]["components"]
    assert sync["backfill_30d"]["opencost_requests"] == 1
    assert sync["backfill_30d"]["records"] == 30 * components
    assert sync["one_day"]["opencost_requests"] == 1
    assert sync["one_day"]["records"] == components
    assert result["server_peak_rss_mb"] > 0
