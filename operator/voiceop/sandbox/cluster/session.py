"""`voiceop cluster`: a control plane, voiceop's CRDs and the sandbox kubelet, run until stopped."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from voiceop.api import all_crds
from voiceop.api.wire import NODE_REGION_LABEL, NODE_ZONE_LABEL
from voiceop.sandbox.cluster.controlplane import ControlPlane, ControlPlaneMissing, find_binary
from voiceop.sandbox.cluster.kubelet import NodeSpec, SandboxKubelet
from voiceop.sandbox.cluster.rest import Discovery, Rest


def apply_crds(admin: Rest, timeout: float = 30.0) -> None:
    """voiceop's CRDs, applied and Established (served) before anything uses them."""
    discovery = Discovery(admin)
    crds = all_crds()
    for crd in crds:
        admin.apply(discovery.path(crd), crd)
    deadline = time.monotonic() + timeout
    for crd in crds:
        path = discovery.path(crd)
        while True:
            conditions = (admin.get(path).get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {crd['metadata']['name']} not Established after {timeout:.0f} s")
            time.sleep(0.1)


def extra_nodes(count: int) -> list[NodeSpec]:
    return [
        NodeSpec(f"node-sandbox-{i}", {NODE_REGION_LABEL: "sandbox", NODE_ZONE_LABEL: f"sandbox-{i}"})
        for i in range(count)
    ]


def nodes_ready(admin: Rest) -> bool:
    nodes = admin.get("/api/v1/nodes")["items"]
    return all(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
        for n in nodes
    )


def main(kubeconfig: Path, nodes: int, annotation_lag: float) -> int:
    try:
        find_binary()
    except ControlPlaneMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with ControlPlane() as plane:
        admin = plane.admin()
        apply_crds(admin)
        plane.write_admin_kubeconfig(kubeconfig)
        with SandboxKubelet(admin, extra_nodes(nodes), annotation_lag_seconds=annotation_lag) as kubelet:
            while not nodes_ready(admin) and not stop.wait(0.2):
                pass
            print(
                f"ready: Kubernetes {admin.get('/version')['gitVersion']} at {plane.server}, "
                f"{len(kubelet.nodes)} node(s) (one more per Region zone applied); "
                f"KUBECONFIG={kubeconfig}",
                flush=True,
            )
            stop.wait()
    print("stopped: every process of the sandbox cluster has exited", flush=True)
    return 0
