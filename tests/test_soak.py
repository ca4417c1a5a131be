"""scripts/soak runs end to end: it starts its own stack, loads it, and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).parent.parent / "scripts" / "soak"


def test_soak_smoke_reports_throughput_errors_and_rss() -> None:
    done = subprocess.run(  # noqa: S603 (our own script, fixed arguments)
        [sys.executable, str(SOAK), "--seconds", "2", "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "requests/s" in done.stdout
    assert "errors          0" in done.stdout
    assert "server RSS" in done.stdout


def test_soak_refuses_addresses_off_loopback() -> None:
    done = subprocess.run(  # noqa: S603 (our own script, fixed arguments)
        [sys.executable, str(SOAK), "--url", "http://10.0.0.1:8000", "--token", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "only loopback" in done.stderr
