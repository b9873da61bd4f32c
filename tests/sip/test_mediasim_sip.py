"""media-sim's SIP side against real SIP peers: sipp's scenarios and a raw OPTIONS."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from siplib import MediaPods, require_sip_tools
from voiceop.sandbox.sip import Callers

SCENARIOS = Path(__file__).parent / "scenarios"
POD = "127.0.40.2"


def test_options_is_answered_200(media_pods: MediaPods) -> None:
    media_pods.start("pod", POD, 2)
    request = (
        f"OPTIONS sip:{POD}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:{POD}>\r\nCall-ID: options-1\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 5999))
        probe.settimeout(5)
        probe.sendto(request.encode(), (POD, 5060))
        answer = probe.recv(4096).decode()
    assert answer.startswith("SIP/2.0 200"), answer


def test_a_reinvite_is_answered_and_the_dialog_holds_its_slot(media_pods: MediaPods, tmp_path: Path) -> None:
    require_sip_tools()
    media_pods.start("pod", POD, 2)
    result = subprocess.run(
        ["sipp", "-sf", str(SCENARIOS / "reinvite.xml"), "-s", "agent", "-i", "127.0.0.1", "-p", "5998",
         f"{POD}:5060", "-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin"],
        cwd=tmp_path, capture_output=True, text=True, timeout=40,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    assert media_pods.metric("pod", "voice_calls_total") == 1  # one call, re-INVITE and all
    assert media_pods.metric("pod", "voice_active_calls") == 0


def test_full_pod_answers_486_and_counts_real_dialogs(media_pods: MediaPods) -> None:
    require_sip_tools()
    media_pods.start("pod", POD, 2)
    held = Callers(
        (POD, 5060), "agent", ["+442071234567"], calls=2, rate=20, hold_ms=4000, local_port=5997
    ).start()
    deadline = time.monotonic() + 5
    while media_pods.metric("pod", "voice_active_calls") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused = Callers(
        (POD, 5060), "agent", ["+442071234567"], calls=1, rate=5, hold_ms=100, local_port=5996
    ).run()
    assert refused.rejections == {486: 1}
    assert held.wait().successful == 2
    assert media_pods.metric("pod", "voice_active_calls") == 0


def test_sigterm_refuses_new_calls_with_503_and_waits_for_the_calls_in_progress(
    media_pods: MediaPods,
) -> None:
    require_sip_tools()
    media_pods.start("pod", POD, 4)
    held = Callers(
        (POD, 5060), "agent", ["+442071234567"], calls=1, rate=20, hold_ms=3000, local_port=5995
    ).start()
    deadline = time.monotonic() + 5
    while media_pods.metric("pod", "voice_active_calls") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process = media_pods.processes["pod"]
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = Callers(
        (POD, 5060), "agent", ["+442071234567"], calls=1, rate=5, hold_ms=100, local_port=5994
    ).run()
    assert refused.rejections == {503: 1}
    assert process.poll() is None, "media-sim left while a call was in progress"
    assert held.wait().successful == 1  # the call ended normally: its BYE got a 200
    assert process.wait(5) == 0
