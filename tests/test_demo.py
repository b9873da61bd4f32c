"""`voiceop demo`, the README's first command, runs end to end: pods rise with calls, drain
and go after the scale-down delay, no call is cut, and a backend outage hands calls to humans."""

from __future__ import annotations

import re
import subprocess
import sys


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
