"""The whole call path on the loopback cluster: operator -> routes and pods -> `voiceop edge
sync` -> Kamailio -> media-sim pods, with sipp callers (loopback addresses only).

The pod simulator starts each media pod as a media-sim process answering SIP; the edge
sync reads Ready pods (the sandbox's 127.x pod IPs are what the edge dispatches to).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Cluster, condition, loopback_cluster, running_operator, wait_for
from siplib import require_sip_tools
from voiceop.api.wire import REGION_LABEL
from voiceop.sandbox.pods import PodSimulator, http_get
from voiceop.sandbox.sip import Callers, SyncedEdge

NS = "calls"
NUMBER = "+35315550000"
GB, IE, US = "+442071234567", "+35318881234", "+12125550123"


def world(*, calls_per_pod: int = 4, min_replicas: int = 1, delay_s: int = 6) -> list[dict[str, Any]]:
    region = "voiceop.dev/v1alpha1"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": region,
            "kind": "Region",
            "metadata": {"name": "eu-west"},
            "spec": {"countries": ["GB", "IE"], "location": {"latitude": 53.35, "longitude": -6.26}},
        },
        {
            "apiVersion": region,
            "kind": "Region",
            "metadata": {"name": "us-east"},
            "spec": {"countries": ["US", "CA"], "location": {"latitude": 38.9, "longitude": -77.04}},
        },
        {
            "apiVersion": region,
            "kind": "AIBackend",
            "metadata": {"name": "model", "namespace": NS},
            "spec": {"provider": "custom", "protocol": "grpc", "endpoint": "grpc://127.0.0.1:50051"},
        },
        {
            "apiVersion": region,
            "kind": "VoiceAgent",
            "metadata": {"name": "hotline", "namespace": NS},
            "spec": {
                "image": "voiceop/media-sim:dev",
                "backends": [{"name": "model"}],
                "regions": [
                    {"name": "eu-west", "minReplicas": min_replicas, "maxReplicas": 6},
                    {"name": "us-east", "minReplicas": min_replicas, "maxReplicas": 6},
                ],
                "capacity": {"callsPerPod": calls_per_pod},
                "scaling": {
                    "mode": "builtin",
                    "targetUtilization": 0.75,
                    "scaleDownDelaySeconds": delay_s,
                    "metrics": {"source": "direct"},
                },
                "drain": {"maxCallDurationSeconds": 60},
            },
        },
        {
            "apiVersion": region,
            "kind": "VoiceEndpoint",
            "metadata": {"name": "hotline-line", "namespace": NS},
            "spec": {"agentRef": {"name": "hotline"}, "phoneNumbers": [NUMBER]},
        },
    ]


class CallPath:
    def __init__(self, cluster: Cluster, pods: PodSimulator, edge: SyncedEdge) -> None:
        self.cluster, self.pods, self.edge = cluster, pods, edge
        self._ports = iter(range(5100, 5200))

    def callers(self, numbers: list[str], **options: Any) -> Callers:
        options.setdefault("rate", 20)
        options.setdefault("timeout_s", 60)
        return Callers(
            (self.edge.address, self.edge.port), NUMBER, numbers, local_port=next(self._ports), **options
        )

    def calls_by_region(self) -> dict[str, int]:
        """voice_calls_total summed over the live pods of each region (from their own metrics)."""
        totals: dict[str, int] = {}
        for name, pod in self.cluster.children("Pod", NS, "v1", "hotline").items():
            address = self.pods.address(NS, name)
            if address is None:
                continue
            code, text = http_get(f"http://{address}:9090/metrics")
            taken = next(
                (
                    float(line.split()[1])
                    for line in text.splitlines()
                    if line.startswith("voice_calls_total ")
                ),
                0.0,
            )
            region = pod["metadata"]["labels"][REGION_LABEL]
            totals[region] = totals.get(region, 0) + int(taken if code == 200 else 0)
        return totals

    def ready_pods(self, region: str) -> int:
        return sum(
            1
            for pod in self.cluster.children("Pod", NS, "v1", "hotline").values()
            if pod["metadata"]["labels"][REGION_LABEL] == region
            and condition(pod, "Ready").get("status") == "True"
        )


@pytest.fixture
def call_path(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CallPath]:
    require_sip_tools()
    options = getattr(request, "param", {})
    with (
        loopback_cluster() as cluster,
        PodSimulator(cluster.store, grace_cap_seconds=options.get("grace", 30)) as pods,
    ):
        kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
        with running_operator(cluster):
            cluster.apply_all(world(**options.get("world", {})))
            wait_for(
                lambda: condition(cluster.get("VoiceAgent", NS, "hotline"), "Ready").get("status") == "True",
                timeout=40,
                what="agent Ready",
            )
            with SyncedEdge(kubeconfig, tmp_path / "edge", namespaces=(NS,)) as edge:
                path = CallPath(cluster, pods, edge)
                wait_for(
                    lambda: path.ready_pods("eu-west") and path.ready_pods("us-east"), timeout=30, what="pods"
                )
                yield path


def test_callers_reach_their_region_through_the_synced_edge(call_path: CallPath) -> None:
    # The edge has had a moment to sync the pods' readiness (within its 2 s budget).
    wait_for(lambda: call(call_path, [GB], calls=1).successful == 1, timeout=10, what="edge routes a call")
    before = call_path.calls_by_region()
    # Slow enough that no pod fills: overflow would rightly go to the next region.
    result = call_path.callers([GB, IE, US], calls=9, rate=5, hold_ms=100).run()
    assert (result.successful, result.failed) == (9, 0), result.output
    after = call_path.calls_by_region()
    assert after.get("eu-west", 0) - before.get("eu-west", 0) == 6
    assert after.get("us-east", 0) - before.get("us-east", 0) == 3


def call(path: CallPath, numbers: list[str], **options: Any) -> Any:
    return path.callers(numbers, hold_ms=100, **options).run()


def test_a_region_in_maintenance_takes_no_new_call_within_2s_and_its_calls_finish(
    call_path: CallPath,
) -> None:
    wait_for(lambda: call(call_path, [GB], calls=1).successful == 1, timeout=10, what="edge routes a call")
    in_progress = call_path.callers([GB], calls=2, hold_ms=6000).start()
    wait_for(
        lambda: call_path.calls_by_region().get("eu-west", 0) >= 3, timeout=5, what="long calls in eu-west"
    )

    stream = call_path.callers([GB], calls=60, rate=15, hold_ms=200).start()  # 4 s of GB callers
    time.sleep(0.5)
    started = time.monotonic()
    call_path.cluster.patch("Region", None, "eu-west", {"spec": {"maintenance": True}})
    last_eu_call = started
    eu_before = call_path.calls_by_region().get("eu-west", 0)
    while stream.process is not None and stream.process.poll() is None:
        eu_now = call_path.calls_by_region().get("eu-west", 0)
        if eu_now != eu_before:
            last_eu_call, eu_before = time.monotonic(), eu_now
        time.sleep(0.05)
    streamed = stream.wait()
    assert (streamed.successful, streamed.failed) == (60, 0), streamed.output
    assert last_eu_call - started <= 2.0, (
        f"eu-west took a new call {last_eu_call - started:.2f} s after maintenance"
    )
    assert call_path.calls_by_region().get("us-east", 0) > 0

    finished = in_progress.wait()
    assert (finished.successful, finished.failed) == (2, 0), finished.output


@pytest.mark.parametrize(
    "call_path", [{"grace": 1, "world": {"calls_per_pod": 3, "delay_s": 4}}], indirect=True, ids=["grace-1s"]
)
def test_a_scale_out_and_in_cycle_under_sipp_load_fails_no_call(call_path: CallPath) -> None:
    """Grace is capped at 1 s and calls last 4 s: removing a pod with a call WOULD fail it."""
    wait_for(lambda: call(call_path, [GB], calls=1).successful == 1, timeout=10, what="edge routes a call")
    peak_pods = {"eu-west": 0}
    watching = threading.Event()

    def watch_pods() -> None:
        while not watching.is_set():
            peak_pods["eu-west"] = max(peak_pods["eu-west"], call_path.ready_pods("eu-west"))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_pods, daemon=True)
    watcher.start()
    try:
        # Up: 0.5 -> 2 calls/s of 4 s calls (up to 8 at once on 3-slot pods), then down to
        # 0.5/s while the scaler drains, then nothing while the last pods go.
        result_up = call_path.callers(
            [GB, IE],
            calls=70,
            rate=0.5,
            hold_ms=4000,
            max_concurrent=40,
            timeout_s=90,
            rate_increase=(0.5, 2, 6),
        ).run()
        down = call_path.callers([GB, IE], calls=12, rate=0.5, hold_ms=4000, timeout_s=60).run()
        assert (result_up.failed, down.failed) == (0, 0), (result_up.rejections, down.rejections)
        assert (result_up.successful, down.successful) == (70, 12)
        wait_for(lambda: call_path.ready_pods("eu-west") == 1, timeout=60, what="scale in to one pod")
    finally:
        watching.set()
        watcher.join(2)
    assert peak_pods["eu-west"] >= 3, (peak_pods, result_up.output[-1500:])
    assert call_path.pods.dropped_calls == 0 and call_path.pods.killed_pods == 0
