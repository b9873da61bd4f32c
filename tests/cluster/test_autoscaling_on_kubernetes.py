"""Builtin autoscaling on the real control plane: calls rise -> the real scheduler places new
pods, the sandbox kubelet starts them, they turn Ready and take calls; calls fall -> the
operator drains the emptiest, and the real ReplicaSet controller deletes exactly the drained,
empty pods. The kubelet's grace period is capped far below the calls' length, so a scale-in
that removed a busy pod WOULD cut its calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterlib import Sandbox, condition, operator_process, wait_for
from voiceop.sandbox.load import CallLoad

NS = "live-k8s"
CALL_SECONDS = 9.0


def world() -> list[dict[str, Any]]:
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
                "regions": [{"name": "local", "minReplicas": 1, "maxReplicas": 6}],
                "capacity": {"callsPerPod": 4},
                "scaling": {
                    "mode": "builtin",
                    "targetUtilization": 0.75,
                    "scaleDownDelaySeconds": 6,
                    "metrics": {"source": "direct"},
                },
                "drain": {"maxCallDurationSeconds": 300},
            },
        },
    ]


def test_calls_rise_pods_rise_calls_fall_and_only_drained_empty_pods_go(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    kubelet = sandbox.kubelet
    kubelet.grace_cap_seconds = 1.0  # far below CALL_SECONDS
    cut_before, terminated_before = kubelet.cut_calls, len(kubelet.terminated)

    def replicas() -> int:
        deployment = sandbox.get("apps/v1", "Deployment", NS, "hotline-local") or {}
        return int((deployment.get("spec") or {}).get("replicas") or 1)

    def pods() -> list[dict[str, Any]]:
        return sandbox.list("v1", "Pod", NS, "voiceop.dev/agent=hotline")

    def ready_pods() -> list[str]:
        return [
            p["metadata"]["name"]
            for p in pods()
            if condition(p, "Ready").get("status") == "True" and not p["metadata"].get("deletionTimestamp")
        ]

    try:
        sandbox.apply_all(world())
        with operator_process(sandbox, tmp_path):
            wait_for(lambda: len(ready_pods()) == 1, timeout=90, what="one Ready pod at the minimum")
            busy = {"on": True}
            load = CallLoad(
                None,
                kubelet,
                NS,
                "voiceop.dev/agent=hotline",
                rate=lambda t: 1.6 if busy["on"] else 0.0,
                duration=lambda: CALL_SECONDS,
                peak=1.6,
                ready_pods=ready_pods,
            ).start()
            try:
                wait_for(lambda: replicas() >= 3, timeout=60, what="replicas rise with calls")
                wait_for(
                    lambda: len(ready_pods()) >= 3, timeout=60, what="new pods scheduled, started, Ready"
                )
                nodes = {p["spec"].get("nodeName") for p in pods()}
                assert nodes and None not in nodes, "the real scheduler bound every pod"
                wait_for(lambda: load.placed >= 25, timeout=60, what="calls served")
                busy["on"] = False
                wait_for(lambda: load.live_calls() == 0, timeout=30, what="calls end")
                wait_for(lambda: replicas() == 1 and len(pods()) == 1, timeout=90, what="pods drain and go")
            finally:
                load.stop()
            removed = kubelet.terminated[terminated_before:]
            assert removed, "scale-in removed pods"
            # Exactly the drained, empty pods: each had left the serving set and held no call.
            assert [r for r in removed if r[2]] == [], (removed, kubelet.killed_with_calls)
            assert all("voiceop.dev/draining-since" in annotations for _, annotations, _ in removed), removed
            assert kubelet.cut_calls == cut_before, kubelet.killed_with_calls
            assert load.rejected < load.placed
    finally:
        kubelet.grace_cap_seconds = None
