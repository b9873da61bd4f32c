"""Sandbox nodes as a kubelet keeps them: a Node per Region zone, status Ready, a Lease renewed."""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass
from typing import Any

from voiceop.api.wire import NODE_REGION_LABEL, NODE_ZONE_LABEL
from voiceop.sandbox.cluster.rest import Rest, RestError
from voiceop.status import now_iso

LEASE_SECONDS = 40
CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "250", "ephemeral-storage": "100Gi"}


def now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]


def nodes_for_region(region: dict[str, Any]) -> list[NodeSpec]:
    """One node per zone of a Region (one if it names none), with its node selector's labels."""
    name = region["metadata"]["name"]
    spec = region.get("spec") or {}
    selector = dict(spec.get("nodeSelector") or {NODE_REGION_LABEL: name})
    zones = spec.get("zones") or [f"{name}-a"]
    return [
        NodeSpec(
            f"node-{name}-{zone}"[:63], {**selector, NODE_ZONE_LABEL: zone, "kubernetes.io/hostname": zone}
        )
        for zone in zones
    ]


def register_node(rest: Rest, spec: NodeSpec, capacity: dict[str, str] | None = None) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": {**spec.labels, "kubernetes.io/os": "linux"}},
        "spec": {},
    }
    with contextlib.suppress(RestError):
        rest.create("/api/v1/nodes", node)
    report_node_status(rest, spec.name, capacity or CAPACITY)
    renew_lease(rest, spec.name)


def node_is_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def report_node_status(rest: Rest, name: str, capacity: dict[str, str] = CAPACITY) -> None:
    now = now_iso()
    status = {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": name},
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "sandbox kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "nodeInfo": {
            "kubeletVersion": "v0.0.0-voiceop-sandbox",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "voiceop-sandbox://media-sim",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": "voiceop sandbox",
            "kernelVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }
    rest.patch(f"/api/v1/nodes/{name}/status", {"status": status}, kind="strategic")


def renew_lease(rest: Rest, node: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()},
    }
    rest.apply(path, body, manager="voiceop-sandbox-kubelet")
