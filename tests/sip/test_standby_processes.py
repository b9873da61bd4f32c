"""Active and standby as shipped: two `voiceop run` processes with peering against the loopback
cluster (loopback addresses only). The standby's own metrics show it writes nothing, probes
nothing and lists nothing; the active one is SIGKILLed under live SIP calls, the standby takes
over within the peering lifetime from a fresh list and acts, and no call is cut."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Cluster, loopback_cluster, wait_for, wait_ready
from siplib import CallPath, call_world, metric_sum, require_sip_tools
from voiceop.deploy.peering import cluster_peering, peering_crds
from voiceop.sandbox.backend import BackendStandIn
from voiceop.sandbox.pods import PodSimulator, http_get
from voiceop.sandbox.prometheus import free_port
from voiceop.sandbox.sip import SyncedEdge

NS = "standby"
GB = "+442071234567"
LIFETIME_S = 8  # --peering-lifetime: how long a killed leader keeps the lead
WRITES = ("apply", "patch", "patch_status", "delete", "create_event")


class OperatorProcess:
    def __init__(self, kubeconfig: Path, identity: str, priority: int, log: Path) -> None:
        self.metrics_port = free_port()
        self.identity = identity
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_ID": identity}
        command = [sys.executable, "-m", "voiceop", "run", f"--priority={priority}"]
        command += [
            f"--peering-lifetime={LIFETIME_S}",
            f"--metrics-port={self.metrics_port}",
            "--health-port=0",
        ]
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def metrics(self) -> str:
        code, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
        return text if code == 200 else ""

    def requests(self, verb: str) -> float:
        return metric_sum(self.metrics(), "voiceop_api_requests_total", verb=verb)

    def writes(self) -> float:
        return sum(self.requests(verb) for verb in WRITES)

    def probes(self) -> float:
        return metric_sum(self.metrics(), "voiceop_backend_probe_duration_seconds_count")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def peers(cluster: Cluster) -> dict[str, Any]:
    return (cluster.get("ClusterKopfPeering", None, "voiceop", "kopf.dev/v1") or {}).get("status") or {}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Cluster, PodSimulator, BackendStandIn, Path]]:
    require_sip_tools()
    with BackendStandIn() as backends, loopback_cluster() as cluster, PodSimulator(cluster.store) as pods:
        for crd in peering_crds():
            cluster.apply(crd)
        cluster.apply(cluster_peering())
        world = call_world(NS, calls_per_pod=4, delay_s=60)
        for obj in world:
            if obj["kind"] == "AIBackend":
                obj["spec"]["healthCheck"] = {
                    "url": backends.url("model"),
                    "intervalSeconds": 1,
                    "timeoutMs": 500,
                }
        cluster.apply_all(world)
        yield cluster, pods, backends, cluster.server.write_kubeconfig(tmp_path / "kubeconfig")


def test_a_standby_process_stands_by_and_takes_over_from_a_killed_leader_under_live_calls(
    stack: tuple[Cluster, PodSimulator, BackendStandIn, Path], tmp_path: Path
) -> None:
    cluster, pods, backends, kubeconfig = stack
    leader = OperatorProcess(kubeconfig, "leader", 200, tmp_path / "leader.log")
    standby: OperatorProcess | None = None
    try:
        wait_ready(cluster, NS, "hotline", timeout=60)
        standby = OperatorProcess(kubeconfig, "standby", 100, tmp_path / "standby.log")
        wait_for(
            lambda: set(peers(cluster)) == {"leader", "standby"}, timeout=30, what="both peers registered"
        )
        wait_for(lambda: standby.requests("get_peering") > 0, timeout=15, what="the standby reads peering")
        hits_before, leader_probes = backends.hits, leader.probes()
        time.sleep(5)  # two probe intervals and two scaler ticks
        # Standing by: it reads the peering object and nothing else, writes nothing, probes nothing.
        for verb in ("list", "watch", "get", *WRITES):
            assert standby.requests(verb) == 0, (verb, standby.metrics()[-2000:])
        assert standby.probes() == 0
        probed = backends.hits - hits_before
        assert leader.probes() - leader_probes == probed > 0, "every probe is the leader's: none doubled"

        with SyncedEdge(kubeconfig, tmp_path / "edge", namespaces=(NS,)) as edge:
            path = CallPath.on_loopback(cluster, pods, edge, NS)
            wait_for(lambda: path.call([GB], calls=1).successful == 1, timeout=15, what="edge routes a call")
            live = path.callers([GB], calls=4, rate=10, hold_ms=30_000, timeout_s=90).start()
            wait_for(lambda: path.calls_by_region().get("eu-west", 0) >= 5, timeout=15, what="calls live")
            leader.kill()
            killed = time.monotonic()
            wait_for(
                lambda: standby.requests("list") > 0, timeout=LIFETIME_S + 20, what="the standby lists afresh"
            )
            took_over = time.monotonic() - killed
            assert took_over <= LIFETIME_S + 10, took_over
            # It acts: the live calls in eu-west (4 on one 4-slot pod) make it scale out.
            wait_for(
                lambda: path.ready_pods("eu-west") >= 2,
                timeout=40,
                what="the successor scales for the live calls",
            )
            assert standby.writes() > 0
            finished = live.wait()
            assert (finished.successful, finished.failed) == (4, 0), finished.errors
        assert pods.dropped_calls == 0
    finally:
        leader.stop()
        if standby is not None:
            standby.stop()
