"""`voiceop media-sim` keeps the media pod contract: it drains when the operator takes it out
of the serving set (the annotation the kubelet writes into its downward-API file), serves
again when put back, stays alive while draining, and finishes its calls on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from voiceop.sandbox.mediasim import media_sim_command, parse_downward_annotations
from voiceop.sandbox.pods import write_downward_annotations
from voiceop.sandbox.prometheus import free_port


def status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0  # not listening (yet, or any more)


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_downward_annotations_round_trip_the_kubelets_format() -> None:
    text = 'a.dev/x="1"\nvoiceop.dev/draining-since="2026-11-27T10:00:00Z"\nquote="say \\"hi\\""\n'
    assert parse_downward_annotations(text) == {
        "a.dev/x": "1",
        "voiceop.dev/draining-since": "2026-11-27T10:00:00Z",
        "quote": 'say "hi"',
    }


def test_media_sim_drains_on_the_operators_annotation_and_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    annotations = tmp_path / "annotations"
    write_downward_annotations(annotations, {"prometheus.io/scrape": "true"})
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        media_sim_command("127.0.0.1", port, 2, annotations),
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: status(f"{base}/healthz") == 200, timeout=20)
        assert status(f"{base}/readyz") == 200
        assert status(f"{base}/calls?duration=3", "POST") == 200

        write_downward_annotations(
            annotations,
            {"prometheus.io/scrape": "true", "voiceop.dev/draining-since": "2026-11-27T10:00:00Z"},
        )
        wait_for(lambda: status(f"{base}/readyz") == 503)
        assert status(f"{base}/calls?duration=3", "POST") == 503, "a draining pod takes no new call"
        assert status(f"{base}/healthz") == 200, "a draining pod is alive: liveness must not restart it"

        write_downward_annotations(annotations, {"prometheus.io/scrape": "true"})
        wait_for(lambda: status(f"{base}/readyz") == 200)
        assert status(f"{base}/calls?duration=3", "POST") == 200, "back in the serving set"

        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None, "SIGTERM waits for the live calls"
        assert status(f"{base}/calls?duration=3", "POST") == 503
        assert process.wait(10) == 0, "and exits once they have ended"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
