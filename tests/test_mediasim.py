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


def _runtime_config(path: Path, endpoint: str, **fallback: object) -> None:
    import json

    path.write_text(
        json.dumps(
            {
                "activeBackend": "model",
                "backends": [{"name": "model", "model": "m-1", "endpoint": endpoint, "latencyBudgetMs": 300}],
                "callsPerPod": 2,
                "fallback": {"humanHandoff": {"sipUri": "sip:humans@127.0.0.9:5099"}, **fallback},
            }
        )
    )


def test_media_sim_follows_its_runtime_config_and_hands_calls_off(tmp_path: Path) -> None:
    """Over HTTP (the demo's callers without SIP): a backend that does not answer hands new
    calls to the human, counted by reason, backend and model and kept as records; a backend
    that answers again keeps them; a runtime config rewritten is followed without a restart."""
    import json

    from voiceop.sandbox.backend import BackendStandIn
    from voiceop.sandbox.mediaai import FRESH_S

    port = free_port()
    config = tmp_path / "runtime.json"
    base = f"http://127.0.0.1:{port}"
    with BackendStandIn() as backends:
        _runtime_config(config, backends.session_url("model"), when=["backendUnavailable"])
        process = subprocess.Popen(
            [*media_sim_command("127.0.0.1", port, 2), "--runtime-config", str(config)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: status(f"{base}/healthz") == 200, timeout=20)
            backends.set("model", "down")
            time.sleep(FRESH_S)  # what pods last saw of the backend goes stale
            with urllib.request.urlopen(
                urllib.request.Request(f"{base}/calls?duration=1", data=b"", method="POST"), timeout=3
            ) as answer:
                handed = json.loads(answer.read())
            assert handed["handoff"] == "sip:humans@127.0.0.9:5099"
            assert handed["reason"] == "backendUnavailable"
            metrics = urllib.request.urlopen(f"{base}/metrics", timeout=2).read().decode()
            assert (
                'voice_handoffs_total{backend="model",model="m-1",reason="backendUnavailable"} 1.0' in metrics
            )
            assert 'voice_calls_total{backend="model",model="m-1"} 1.0' in metrics
            served = json.loads(urllib.request.urlopen(f"{base}/handoffs", timeout=2).read())
            (record,) = served["records"]
            assert record["callId"] == handed["call"] and record["how"] == "redirect"
            assert served["calls"][0]["calls"] == 1 and served["calls"][0]["backend"] == "model"

            backends.set("model", "healthy")

            time.sleep(FRESH_S)  # what pods last saw of the backend goes stale
            assert status(f"{base}/calls?duration=1", "POST") == 200
            assert (
                len(json.loads(urllib.request.urlopen(f"{base}/handoffs", timeout=2).read())["records"]) == 1
            )

            # Without backendUnavailable in `when`, a backend that does not answer refuses the call.
            time.sleep(1.1)  # a new mtime (whole seconds on some filesystems)
            _runtime_config(config, backends.session_url("model"), when=[])
            backends.set("model", "down")
            time.sleep(FRESH_S)  # what pods last saw of the backend goes stale
            wait_for(lambda: status(f"{base}/calls?duration=1", "POST") == 503, timeout=5)
        finally:
            process.terminate()
            process.wait(10)
