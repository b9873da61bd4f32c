"""The chaos benchmark's short form runs in CI (the full form by hand): every row of its table
PASSes, on the loopback server and on the real control plane. It prints figures, not timings:
faults, kills, restarts, invalid objects and leaked secrets, each against a verdict."""

from __future__ import annotations

import subprocess
import sys

from clusterlib import ROOT, binary_or_skip


def test_the_short_chaos_benchmark_passes_every_row() -> None:
    binary_or_skip()
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--short", "--control-plane", "both"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "FAIL" not in result.stdout
    assert result.stdout.count("PASS") >= 13
