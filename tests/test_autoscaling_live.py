"""The live loop end to end: operator + loopback API server + media-sim processes standing in
for pods + a real Prometheus server (Debian's package) scraping them on 127.0.0.1.

Calls rise -> replicas rise; calls stop -> pods drain and go; no call is cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from conftest import require_program
from harness import Cluster, condition, loopback_cluster, running_operator, wait_for
from voiceop.sandbox.load import CallLoad
from voiceop.sandbox.pods import PodSimulator
from voiceop.sandbox.prometheus import PrometheusServer

NS = "live"


def signal_reads(source: str) -> float:
    return REGISTRY.get_sample_value("voiceop_scaling_signal_reads_total", {"source": source}) or 0.0


def world(prometheus_url: str | None) -> list[dict[str, Any]]:
    metrics = (
        {"source": "prometheus", "prometheusUrl": prometheus_url} if prometheus_url else {"source": "direct"}
    )
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "voiceop.dev/v1alpha1", "kind": "Region", "metadata": {"name": "local"}, "spec": {}},
        {
            "apiVersion": "voiceop.dev/v1alpha1",
            "kind": "AIBackend",
            "metadata": {"name": "model", "namespace": NS},
            "spec": {"provider": "custom", "protocol": "grpc", "endpoint": "grpc://127.0.0.1:50051"},
        },
        {
            "apiVersion": "voiceop.dev/v1alpha1",
            "kind": "VoiceAgent",
            "metadata": {"name": "hotline", "namespace": NS},
            "spec": {
                "image": "voiceop/media-sim:dev",
                "backends": [{"name": "model"}],
                "regions": [{"name": "local", "minReplicas": 1, "maxReplicas": 8}],
                "capacity": {"callsPerPod": 4},
                "scaling": {
                    "mode": "builtin",
                    "targetUtilization": 0.75,
                    "scaleDownDelaySeconds": 6,
                    "metrics": metrics,
                },
                "drain": {"maxCallDurationSeconds": 120},
            },
        },
    ]


@pytest.fixture
def sandbox() -> Iterator[tuple[Cluster, PodSimulator]]:
    with loopback_cluster() as cluster, PodSimulator(cluster.store) as pods:
        yield cluster, pods


def replicas(cluster: Cluster) -> int:
    deployment = cluster.get("Deployment", NS, "hotline-local", "apps/v1") or {}
    return int((deployment.get("spec") or {}).get("replicas", 1))


def pod_count(cluster: Cluster) -> int:
    return len(cluster.children("Pod", NS, "v1", "hotline"))


@pytest.mark.parametrize("source", ["prometheus", "direct"])
def test_calls_rise_pods_rise_calls_fall_pods_drain_and_no_call_is_cut(
    sandbox: tuple[Cluster, PodSimulator], source: str
) -> None:
    cluster, pods = sandbox
    if source == "prometheus":
        require_program("prometheus", "Debian's prometheus package")
    reads_before = {s: signal_reads(s) for s in ("prometheus", "direct", "fallback")}
    prometheus = PrometheusServer(pods).start() if source == "prometheus" else None
    try:
        with running_operator(cluster):
            cluster.apply_all(world(prometheus.url if prometheus else None))
            wait_for(
                lambda: condition(cluster.get("VoiceAgent", NS, "hotline"), "Ready").get("status") == "True",
                timeout=30,
                what="Ready",
            )
            busy = {"on": True}
            load = CallLoad(
                cluster.store,
                pods,
                NS,
                "voiceop.dev/agent=hotline",
                rate=lambda t: 1.6 if busy["on"] else 0.0,
                duration=lambda: 9.0,
                peak=1.6,
            ).start()
            try:
                wait_for(lambda: replicas(cluster) >= 3, timeout=45, what="replicas rise with calls")
                peak_status = wait_for(
                    lambda: (
                        ((cluster.get("VoiceAgent", NS, "hotline") or {}).get("status") or {}).get(
                            "activeCalls", 0
                        )
                        > 0
                        and cluster.get("VoiceAgent", NS, "hotline")["status"]
                    ),
                    timeout=20,
                    what="live calls in status",
                )
                assert peak_status["regions"][0]["desiredReplicas"] >= 2
                wait_for(lambda: load.placed >= 25, timeout=40, what="calls served")
                busy["on"] = False
                wait_for(lambda: load.live_calls() == 0, timeout=30, what="calls end")
                wait_for(
                    lambda: replicas(cluster) == 1 and pod_count(cluster) == 1,
                    timeout=60,
                    what="pods drain and go",
                )
            finally:
                load.stop()
            assert pods.dropped_calls == 0 and pods.killed_pods == 0, "no live call was cut"
            # Refusals happen only while the first pods start (one pod of 4 slots at 1.6 calls/s).
            assert load.rejected < load.placed
            final = cluster.get("VoiceAgent", NS, "hotline")
            assert condition(final, "ScalingLimited")["status"] == "False"
            # The signals came from where the agent said, never from a silent fallback.
            reads = {s: signal_reads(s) - before for s, before in reads_before.items()}
            assert reads[source] > 10 and reads["fallback"] == 0, reads
            if source == "prometheus":
                assert reads["direct"] == 0, reads
    finally:
        if prometheus is not None:
            prometheus.stop()
