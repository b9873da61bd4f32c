"""`voiceop demo`, the README's first command, runs end to end: pods rise with calls, drain
and go after the scale-down delay, no call is cut, and a backend outage hands calls to humans."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


def run_demo(*extra: str) -> str:
    """The demo's output, once it has exited 0; what every run of it must show is checked."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceop",
            "demo",
            "--duration",
            "20",
            "--peak",
            "3",
            "--scale-down-delay",
            "10",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "both VoiceAgents Ready" in out
    assert "Deployment               billing-ap-southeast, billing-eu-west, billing-us-east" in out
    grew = [int(m) for m in re.findall(r"billing eu-west: \d+ -> (\d+) pods", out)]
    assert grew and max(grew) > 2, "calls raised eu-west above its 2 minimum pods"
    assert "pods stop taking calls" in out, "scale-in drains before it removes"
    assert "pods ready/desired: eu-west 2/2, us-east 2/2" in out, "back at the minimum after the delay"
    assert ", cut 0" in out
    # The outage: the operator fails over, and the calls that reach the down backend go to a human.
    assert "outage: AIBackend openai-realtime stops answering" in out
    assert "billing's active backend openai-realtime -> self-hosted-pipeline" in out
    handed = re.search(
        r"hand-offs to humans \(billing, last \d+ s\): (\d+) of (\d+) calls, by reason: backendUnavailable (\d+)",
        out,
    )
    assert handed and int(handed.group(1)) >= int(handed.group(3)) >= 1, out
    return out


def test_demo_scales_out_and_back_in_and_cuts_no_call() -> None:
    assert "a loopback API server at http://127.0.0.1:" in run_demo()


def descendants(pid: int) -> dict[int, str]:
    """Every process under `pid` (from /proc): pid -> command line."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p: cmdline(p) for p in found}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_sigterm_stops_the_demo_and_every_process_it_started() -> None:
    """`timeout` or `kill` ends the demo as Ctrl-C does: no media-sim is left serving on 127.x."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "voiceop", "demo", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    started: dict[int, str] = {}
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if "callers ring billing" in line:
                break
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("media-sim" in c for c in started.values()):
            time.sleep(0.5)
            started = descendants(demo.pid)
        assert any("media-sim" in c for c in started.values()), started
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 130, demo.stderr.read() if demo.stderr else ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in started):
            time.sleep(0.2)
        left = {p: c for p, c in started.items() if alive(p)}
        assert not left, f"left running after SIGTERM: {left}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in [p for p in started if alive(p)]:  # a failed run leaves nothing behind either
            os.kill(pid, signal.SIGKILL)
