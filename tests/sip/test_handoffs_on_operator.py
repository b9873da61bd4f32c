"""Hand-offs on the operator, end to end (loopback only): the loopback cluster and its pod
simulator, the operator, `voiceop edge sync` and Kamailio, sipp callers and sipp as the human
agents' queue, a stand-in AI backend, and a real Prometheus. What the pods hand off shows in the
agent's status.handoffs and HandoffsHigh (with a Warning Event), and `voiceop handoffs` reports
and exports exactly the calls the humans received."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_program
from harness import Cluster, condition, loopback_cluster, running_operator, wait_for, wait_ready
from siplib import CallPath, call_world, require_sip_tools, set_backend
from voiceop.sandbox.backend import BackendStandIn
from voiceop.sandbox.pods import PodSimulator
from voiceop.sandbox.prometheus import PrometheusServer
from voiceop.sandbox.sip import HumanQueue, SyncedEdge

NS = "handoffs"
GB, IE = "+442071234567", "+35318881234"
WINDOW_S = 30  # the operator's hand-off window in these tests (300 s by default)


def handoff_world(
    stand_in: BackendStandIn, humans: HumanQueue, metrics: dict[str, Any]
) -> list[dict[str, Any]]:
    world = call_world(NS, calls_per_pod=6, delay_s=60)
    for obj in world:
        if obj["kind"] == "AIBackend":
            obj["spec"] = {
                "provider": "custom",
                "protocol": "http",
                "endpoint": stand_in.session_url("model"),
                "model": "pipeline-1",
                "latencyBudgetMs": 300,
                "healthCheck": {"url": stand_in.url("model"), "intervalSeconds": 1, "timeoutMs": 500},
            }
        if obj["kind"] == "VoiceAgent":
            obj["spec"]["scaling"]["metrics"] = metrics
            obj["spec"]["fallback"] = {
                "humanHandoff": {"sipUri": humans.uri},
                "when": ["backendUnavailable", "latencyOverBudget", "callerRequest"],
                "maxHandoffRate": 0.2,
            }
    return world


class HandoffPath:
    def __init__(
        self,
        cluster: Cluster,
        path: CallPath,
        humans: HumanQueue,
        stand_in: BackendStandIn,
        kubeconfig: Path,
        prometheus: PrometheusServer,
    ) -> None:
        self.cluster, self.path, self.humans, self.stand_in = cluster, path, humans, stand_in
        self.kubeconfig, self.prometheus = kubeconfig, prometheus

    def agent(self) -> dict[str, Any]:
        return self.cluster.get("VoiceAgent", NS, "hotline") or {}

    def handoffs_high(self, field: str, value: str, timeout: float) -> dict[str, Any]:
        """The agent's HandoffsHigh condition, once its `field` is `value`."""
        return wait_for(
            lambda: (
                condition(self.agent(), "HandoffsHigh").get(field) == value
                and condition(self.agent(), "HandoffsHigh")
            ),
            timeout=timeout,
            what=f"HandoffsHigh {field} {value}",
        )

    def handoffs(self) -> dict[str, Any]:
        return (self.agent().get("status") or {}).get("handoffs") or {}

    def voiceop(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run(
            [sys.executable, "-m", "voiceop", *args], env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def handoff_path(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HandoffPath]:
    require_sip_tools()
    require_program("prometheus", "apt-get install -y prometheus")
    source = getattr(request, "param", "direct")
    with (
        BackendStandIn() as stand_in,
        HumanQueue() as humans,
        loopback_cluster() as cluster,
        PodSimulator(cluster.store) as pods,
        PrometheusServer(pods) as prometheus,
    ):
        kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
        metrics = (
            {"source": "direct"}
            if source == "direct"
            else {"source": "prometheus", "prometheusUrl": prometheus.url}
        )
        with running_operator(cluster, runtime_options={"handoff_window_seconds": WINDOW_S}):
            cluster.apply_all(handoff_world(stand_in, humans, metrics))
            wait_ready(cluster, NS, "hotline")
            with SyncedEdge(kubeconfig, tmp_path / "edge", namespaces=(NS,)) as edge:
                path = CallPath.on_loopback(cluster, pods, edge, NS)
                wait_for(lambda: path.ready_pods("eu-west"), timeout=30, what="pods")
                wait_for(
                    lambda: prometheus.scraping(len(path.pods())),
                    timeout=30,
                    what="Prometheus scraping the pods",
                )
                wait_for(
                    lambda: path.call([GB], calls=1).successful == 1, timeout=15, what="edge routes a call"
                )
                yield HandoffPath(cluster, path, humans, stand_in, kubeconfig, prometheus)


def test_a_backend_outage_sends_calls_to_the_humans_counted_alerted_and_exported(
    handoff_path: HandoffPath, tmp_path: Path
) -> None:
    hp = handoff_path
    set_backend(hp.stand_in, "model", "down")
    down = hp.path.callers([GB, IE], calls=12, rate=10, hold_ms=300).run()
    assert (down.successful, down.failed) == (12, 0), down.errors or down.output
    assert len(hp.humans.received()) == 12

    # Counted in status within 30 s, and above maxHandoffRate: HandoffsHigh and a Warning Event.
    counted = wait_for(
        lambda: hp.handoffs().get("byReason", {}).get("backendUnavailable", 0) >= 12 and hp.handoffs(),
        timeout=30,
        what="status.handoffs counts the outage",
    )
    assert counted["windowSeconds"] == WINDOW_S
    assert counted["regions"][0]["name"] == "eu-west" and counted["regions"][0]["handoffs"] >= 12
    high = hp.handoffs_high("status", "True", timeout=10)
    assert high["reason"] == "AboveMaxRate" and "backendUnavailable" in high["message"]
    # The Event follows the status write that turned the condition True, so it may land a moment later.
    wait_for(
        lambda: any(
            e["reason"] == "HandoffsHigh" and e["type"] == "Warning" for e in hp.cluster.events(NS, "hotline")
        ),
        timeout=10,
        what="a HandoffsHigh Warning Event",
    )

    # The backend is back; a caller asks for a human; the outage rolls out of the window.
    set_backend(hp.stand_in, "model", "healthy")
    asked = hp.path.callers([IE], calls=1, rate=1, hold_ms=3000, ask_human_after_ms=500).run()
    assert (asked.successful, asked.failed) == (1, 0), asked.errors
    wait_for(
        lambda: hp.handoffs().get("byReason", {}).get("callerRequest", 0) == 1,
        timeout=30,
        what="callerRequest counted",
    )
    normal = hp.path.callers([GB], calls=30, rate=1, hold_ms=200, timeout_s=90).run()
    assert (normal.successful, normal.failed) == (30, 0), normal.errors
    cleared = hp.handoffs_high("reason", "WithinMaxRate", timeout=40)
    assert cleared["status"] == "False"

    # The export holds exactly the calls the humans received (matched by call id).
    export = tmp_path / "handoffs.jsonl"
    report = hp.voiceop("handoffs", "-n", NS, "--since", "1h", "--export", str(export))
    assert report.returncode == 0, report.stderr
    records = [json.loads(line) for line in export.read_text().splitlines()]
    assert sorted(r["callId"] for r in records) == sorted(hp.humans.received())
    assert {r["reason"] for r in records} == {"backendUnavailable", "callerRequest"}
    assert all(r["agent"] == "hotline" and r["namespace"] == NS and r["backend"] == "model" for r in records)
    assert "hotline" in report.stdout and "backendUnavailable  12" in report.stdout, report.stdout


@pytest.mark.parametrize("handoff_path", ["prometheus"], indirect=True)
def test_hand_offs_read_from_prometheus_reach_status_and_the_report(handoff_path: HandoffPath) -> None:
    hp = handoff_path
    set_backend(hp.stand_in, "model", "down")
    down = hp.path.callers([GB], calls=10, rate=10, hold_ms=300).run()
    assert (down.successful, down.failed) == (10, 0), down.errors or down.output
    counted = wait_for(
        lambda: hp.handoffs().get("byReason", {}).get("backendUnavailable", 0) >= 9 and hp.handoffs(),
        timeout=30,
        what="status.handoffs from Prometheus",
    )
    assert counted["calls"] >= counted["handoffs"]
    report = hp.voiceop("handoffs", "--prometheus-url", hp.prometheus.url, "--since", "10m", "--json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    unavailable = next(r for r in rows if r["reason"] == "backendUnavailable")
    assert (unavailable["agent"], unavailable["backend"], unavailable["model"]) == (
        "hotline",
        "model",
        "pipeline-1",
    )
    assert unavailable["handoffs"] >= 9
