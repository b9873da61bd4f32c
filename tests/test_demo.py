"""`voiceop demo`, the README's first command, runs end to end and cuts no call."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_cuts_no_call() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voiceop", "demo", "--duration", "12", "--peak", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "both VoiceAgents Ready" in out
    assert "Deployment               billing-ap-southeast, billing-eu-west, billing-us-east" in out
    assert "scale  contact-center/billing" in out, "scaling decisions are printed"
    assert ", cut 0" in out
