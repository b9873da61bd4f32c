"""The operator may be down (loopback only): calls in progress and new calls go on through the
edge and the pods that run, nothing is cut, and the operator picks up where it left off when it
returns. In hpa mode a new pod the HPA asks for becomes Ready without the operator (no readiness
gate of voiceop's); in builtin mode nothing scales until the operator is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from harness import Cluster, loopback_cluster, running_operator, wait_for, wait_ready
from siplib import CallPath, call_world, require_sip_tools
from voiceop.sandbox.pods import PodSimulator
from voiceop.sandbox.sip import SyncedEdge

NS = "outage"
GB, IE, US = "+442071234567", "+35318881234", "+12125550123"


class World:
    def __init__(self, cluster: Cluster, pods: PodSimulator, path: CallPath) -> None:
        self.cluster, self.pods, self.path = cluster, pods, path

    def agent_status(self) -> dict[str, Any]:
        return (self.cluster.get("VoiceAgent", NS, "hotline") or {}).get("status") or {}

    def region(self, name: str) -> dict[str, Any]:
        return next((r for r in self.agent_status().get("regions") or [] if r["name"] == name), {})


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[World, ExitStack]]:
    """A running world whose operator the test stops and starts (the ExitStack holds it)."""
    require_sip_tools()
    mode = getattr(request, "param", "builtin")
    with loopback_cluster() as cluster, PodSimulator(cluster.store) as pods:
        kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
        objects = call_world(NS, calls_per_pod=4, delay_s=60)
        for obj in objects:
            if obj["kind"] == "VoiceAgent":
                obj["spec"]["scaling"]["mode"] = mode
        operator = ExitStack()
        operator.enter_context(running_operator(cluster))
        try:
            cluster.apply_all(objects)
            wait_ready(cluster, NS, "hotline")
            with SyncedEdge(kubeconfig, tmp_path / "edge", namespaces=(NS,)) as edge:
                path = CallPath.on_loopback(cluster, pods, edge, NS)
                wait_for(
                    lambda: path.edge_pods("hotline-eu-west-") and path.edge_pods("hotline-us-east-"),
                    timeout=30,
                    what="the edge routes to pods of both regions",
                )
                wait_for(
                    lambda: path.call([GB], calls=1).successful == 1, timeout=15, what="edge routes a call"
                )
                yield World(cluster, pods, path), operator
        finally:
            operator.close()


def test_calls_go_on_while_the_operator_is_down_and_it_picks_up_when_back(
    world: tuple[World, ExitStack],
) -> None:
    w, operator = world
    live = w.path.callers([GB], calls=4, rate=10, hold_ms=25_000, timeout_s=90).start()
    wait_for(lambda: w.region("eu-west").get("activeCalls", 0) >= 4, timeout=15, what="calls live in eu-west")
    operator.close()  # the operator is down: no watch, no scaling, no status
    desired_before = w.region("eu-west")["desiredReplicas"]

    # New calls still reach pods through the edge (eu-west's one pod is full: the next region).
    during = w.path.callers([IE, US], calls=6, rate=2, hold_ms=1000).run()
    assert (during.successful, during.failed) == (6, 0), during.errors
    time.sleep(4)
    assert w.region("eu-west")["desiredReplicas"] == desired_before, "nothing scales while it is away"

    with running_operator(w.cluster):  # back: it lists everything and scales for the live calls
        wait_for(
            lambda: w.region("eu-west").get("desiredReplicas", 0) >= 2,
            timeout=30,
            what="scale-out after return",
        )
        wait_for(lambda: w.path.ready_pods("eu-west") >= 2, timeout=30, what="a new Ready pod in eu-west")
        finished = live.wait()
        assert (finished.successful, finished.failed) == (4, 0), finished.errors
    assert w.pods.dropped_calls == 0


@pytest.mark.parametrize("world", ["hpa"], indirect=True)
def test_in_hpa_mode_a_new_pod_serves_without_the_operator(world: tuple[World, ExitStack]) -> None:
    w, operator = world
    operator.close()
    deployment = w.cluster.get("Deployment", NS, "hotline-eu-west", "apps/v1")
    assert deployment is not None
    assert "readinessGates" not in deployment["spec"]["template"]["spec"]
    # What the HPA controller writes when calls rise (the loopback server runs no HPA controller).
    w.cluster.patch("Deployment", NS, "hotline-eu-west", {"spec": {"replicas": 2}}, api_version="apps/v1")
    wait_for(lambda: w.path.ready_pods("eu-west") == 2, timeout=30, what="the new pod Ready with no operator")
    wait_for(lambda: w.path.edge_pods("hotline-eu-west-") == 2, timeout=10, what="the edge routes to it")
    before = w.path.calls_by_region().get("eu-west", 0)
    # Two pods of 4 slots: 6 long calls from GB all stay in eu-west, so the new pod takes some.
    result = w.path.callers([GB], calls=6, rate=10, hold_ms=2000).run()
    assert (result.successful, result.failed) == (6, 0), result.errors
    assert w.path.calls_by_region().get("eu-west", 0) - before == 6
