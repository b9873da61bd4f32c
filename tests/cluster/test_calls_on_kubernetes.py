"""Real SIP on the real control plane: the operator (chart RBAC) scales media pods that the
real scheduler places and the sandbox kubelet runs as media-sim processes answering SIP;
`voiceop edge sync` (the chart's edge RBAC) feeds Kamailio; sipp places the calls.

The edge reads Ready pods, not EndpointSlices: kube-apiserver refuses loopback addresses in
an EndpointSlice (ValidateEndpointIP), and the sandbox's pod IPs are 127.x addresses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlib import Sandbox, condition, edge_identity, operator_process, wait_for
from siplib import GB, IE, US, CallPath, call_world, require_sip_tools, scale_out_and_in_under_load
from voiceop.sandbox.sip import SyncedEdge

NS = "calls-k8s"


@pytest.fixture
def call_path(sandbox: Sandbox, tmp_path: Path) -> Iterator[CallPath]:
    require_sip_tools()
    kubelet = sandbox.kubelet
    kubelet.grace_cap_seconds = 1.0  # far below the 4 s calls: removing a busy pod WOULD cut one
    world = call_world(NS, calls_per_pod=3, delay_s=4)
    try:
        sandbox.apply_all(world)
        with operator_process(sandbox, tmp_path):
            wait_for(
                lambda: (
                    condition(sandbox.get("voiceop.dev/v1alpha1", "VoiceAgent", NS, "hotline"), "Ready").get(
                        "status"
                    )
                    == "True"
                ),
                timeout=120,
                what="agent Ready",
            )
            kubeconfig = edge_identity(sandbox, tmp_path / "edge.kubeconfig")
            with SyncedEdge(
                kubeconfig, tmp_path / "edge", address="127.0.0.1", port=5062, namespaces=(NS,)
            ) as edge:
                path = CallPath(
                    NS,
                    lambda: sandbox.list("v1", "Pod", NS, "voiceop.dev/agent=hotline"),
                    kubelet.address,
                    edge,
                    cut_calls=lambda: kubelet.cut_calls,
                    patch_region=lambda name, patch: sandbox.admin.patch(
                        f"/apis/voiceop.dev/v1alpha1/regions/{name}", patch
                    ),
                    agent_status=lambda: (
                        sandbox.get("voiceop.dev/v1alpha1", "VoiceAgent", NS, "hotline") or {}
                    ).get("status"),
                )
                wait_for(
                    lambda: path.ready_pods("eu-west") and path.ready_pods("us-east"), timeout=90, what="pods"
                )
                yield path
                assert "forbidden" not in edge.sync_log.read_text().lower(), edge.sync_log.read_text()[-2000:]
    finally:
        kubelet.grace_cap_seconds = None
        for obj in reversed(world):
            if obj["kind"] != "Namespace":
                sandbox.delete(obj)


def test_callers_reach_their_region_on_kubernetes(call_path: CallPath) -> None:
    wait_for(lambda: call_path.call([GB], calls=1).successful == 1, timeout=15, what="edge routes a call")
    before = call_path.calls_by_region()
    result = call_path.callers([GB, IE, US], calls=9, rate=5, hold_ms=100).run()
    assert (result.successful, result.failed) == (9, 0), result.output
    after = call_path.calls_by_region()
    assert after.get("eu-west", 0) - before.get("eu-west", 0) == 6
    assert after.get("us-east", 0) - before.get("us-east", 0) == 3


def test_a_scale_out_and_in_cycle_under_sipp_load_fails_no_call_on_kubernetes(call_path: CallPath) -> None:
    scale_out_and_in_under_load(call_path)
