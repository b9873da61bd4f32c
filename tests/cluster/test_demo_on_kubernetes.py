"""`voiceop demo --control-plane kubernetes`: the same demo on the real control plane (its own,
started and stopped by the demo), with the same outcome as on the loopback server."""

from __future__ import annotations

from clusterlib import binary_or_skip
from test_demo import run_demo
from voiceop.sandbox.cluster.controlplane import KUBERNETES_VERSION


def test_the_demo_on_real_kubernetes_scales_out_and_back_in_and_cuts_no_call() -> None:
    binary_or_skip()
    out = run_demo("--control-plane", "kubernetes")
    assert (
        f"voiceop demo: Kubernetes {KUBERNETES_VERSION} (kube-apiserver, controller-manager, scheduler" in out
    )
