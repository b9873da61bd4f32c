"""Fixtures for the SIP tier: media-sim pods answering SIP, a Kamailio edge, sipp callers.

Everything binds 127.0.0.0/8 addresses only and is stopped by the fixture that started it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_program
from voiceop.api.wire import REGION_LABEL
from voiceop.inputs.files import write_files
from voiceop.render.edge.config import MediaEndpoint, edge_files, routes_of_configmap
from voiceop.sandbox.mediasim import media_sim_command
from voiceop.sandbox.pods import http_get
from voiceop.sandbox.sip import CallerResult, Callers, KamailioEdge, SyncedEdge, stop_running_callers

NUMBER = "+35315550000"  # the endpoint of call_world
METRICS_PORT = 9090
SIP_PORT = 5060


def metric_sum(text: str, metric: str, **labels: str) -> float:
    """The sum of a metric's samples in a /metrics answer whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def set_backend(stand_in: Any, name: str, mode: str, delay_s: float | None = None) -> None:
    """Make a stand-in backend healthy, slow or down, and wait until what pods last saw of it
    (a runtime's connection pool) is stale: the next call finds it as it is."""
    from voiceop.sandbox.mediaai import FRESH_S

    stand_in.set(name, mode, delay_s)
    time.sleep(FRESH_S)


@pytest.fixture(autouse=True)
def no_callers_left_running() -> Iterator[None]:
    """A test that fails while its callers hold calls leaves no sipp holding a port for the next."""
    yield
    stop_running_callers()


def require_sip_tools() -> None:
    for name in ("kamailio", "kamcmd", "sipp"):
        require_program(name, "apt-get install -y kamailio sip-tester")


@dataclass
class MediaPods:
    """media-sim processes by pod name, each on its own loopback address."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def start(
        self, name: str, address: str, slots: int, runtime_config: Path | None = None, region: str = ""
    ) -> None:
        command = media_sim_command(address, METRICS_PORT, slots, None, SIP_PORT, runtime_config)
        env = {**os.environ, "VOICEOP_POD_NAME": name, "VOICEOP_REGION": region}
        self.processes[name] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        self.addresses[name] = address
        deadline = time.monotonic() + 15
        while http_get(f"http://{address}:{METRICS_PORT}/healthz")[0] != 200:
            assert time.monotonic() < deadline, f"media-sim {name} did not start"
            time.sleep(0.1)

    def metric(self, name: str, metric: str, **labels: str) -> float:
        """A metric of one pod, summed over the label sets that carry `labels`."""
        code, text = http_get(f"http://{self.addresses[name]}:{METRICS_PORT}/metrics")
        assert code == 200
        return metric_sum(text, metric, **labels)

    def calls_taken(self) -> dict[str, int]:
        return {name: int(self.metric(name, "voice_calls_total")) for name in self.processes}

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait(5)


@pytest.fixture
def media_pods() -> Iterator[MediaPods]:
    pods = MediaPods()
    yield pods
    pods.stop()


def routes_of(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return dict(
        routes_of_configmap(o)
        for o in rendered
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "voiceop-routes"
    )


def endpoints_of(
    pods: MediaPods, services: dict[str, str], namespace: str = "contact-center"
) -> list[MediaEndpoint]:
    """`services`: pod name -> media Service name."""
    return [MediaEndpoint(namespace, services[name], name, pods.addresses[name]) for name in pods.processes]


@pytest.fixture
def edge_at(tmp_path: Path) -> Iterator[Any]:
    """edge_at(routes, endpoints) -> a running KamailioEdge on 127.0.0.1:5060 with those tables."""
    require_sip_tools()
    started: list[KamailioEdge] = []

    def start(
        routes: dict[str, dict[str, Any]], endpoints: list[MediaEndpoint], **settings_changes: Any
    ) -> KamailioEdge:
        settings = dataclasses.replace(KamailioEdge.settings_for(tmp_path / "edge"), **settings_changes)
        write_files(tmp_path / "edge", edge_files(settings, routes, endpoints))
        edge = KamailioEdge(settings).start()
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop()


def call_world(
    namespace: str, *, calls_per_pod: int = 4, min_replicas: int = 1, delay_s: int = 6
) -> list[dict[str, Any]]:
    region = "voiceop.dev/v1alpha1"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
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
            "metadata": {"name": "model", "namespace": namespace},
            "spec": {"provider": "custom", "protocol": "grpc", "endpoint": "grpc://127.0.0.1:50051"},
        },
        {
            "apiVersion": region,
            "kind": "VoiceAgent",
            "metadata": {"name": "hotline", "namespace": namespace},
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
            "metadata": {"name": "hotline-line", "namespace": namespace},
            "spec": {"agentRef": {"name": "hotline"}, "phoneNumbers": [NUMBER]},
        },
    ]


class CallPath:
    """Callers through an edge, and what each region's pods took (from their own metrics)."""

    def __init__(
        self,
        namespace: str,
        pods: Callable[[], list[dict[str, Any]]],
        address_of: Callable[[str, str], str | None],
        edge: SyncedEdge,
        cut_calls: Callable[[], int],
        patch_region: Callable[[str, dict[str, Any]], None],
        agent_status: Callable[[], Any] = lambda: None,
    ) -> None:
        self.agent_status = agent_status  # the VoiceAgent's status, for failure reports
        self.namespace, self.pods, self.address_of, self.edge = namespace, pods, address_of, edge
        self.cut_calls = cut_calls  # calls the kubelet cut short by killing a pod
        self.patch_region = patch_region  # (name, merge patch) on a Region
        self._ports = iter(range(5100, 5300))

    @classmethod
    def on_loopback(
        cls, cluster: Any, pods: Any, edge: SyncedEdge, namespace: str, agent: str = "hotline"
    ) -> CallPath:
        """The call path of the loopback cluster (harness.Cluster) and its pod simulator."""
        return cls(
            namespace,
            lambda: list(cluster.children("Pod", namespace, "v1", agent).values()),
            pods.address,
            edge,
            # Calls held by a killed process (an idle pod slow to exit is no cut call).
            cut_calls=lambda: pods.dropped_calls,
            patch_region=lambda name, patch: cluster.patch("Region", None, name, patch),
            agent_status=lambda: (cluster.get("VoiceAgent", namespace, agent) or {}).get("status"),
        )

    def edge_pods(self, prefix: str) -> int:
        """Pods whose names start with `prefix` in the sets Kamailio has loaded: what it routes to.
        Not the dispatcher.list file: the sync writes it before Kamailio's reload, which its
        rate limit can put off for a second or more."""
        loaded = self.edge.kamailio.kamcmd("dispatcher.list")
        return sum(1 for line in loaded.splitlines() if line.strip().startswith(f"BODY: duid={prefix}"))

    def callers(self, numbers: list[str], **options: Any) -> Callers:
        options.setdefault("rate", 20)
        options.setdefault("timeout_s", 60)
        return Callers(
            (self.edge.address, self.edge.port), NUMBER, numbers, local_port=next(self._ports), **options
        )

    def call(self, numbers: list[str], **options: Any) -> CallerResult:
        return self.callers(numbers, hold_ms=100, **options).run()

    def calls_by_region(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for pod in self.pods():
            address = self.address_of(self.namespace, pod["metadata"]["name"])
            if address is None:
                continue
            code, text = http_get(f"http://{address}:9090/metrics")
            taken = metric_sum(text, "voice_calls_total") if code == 200 else 0.0
            region = pod["metadata"]["labels"][REGION_LABEL]
            totals[region] = totals.get(region, 0) + int(taken if code == 200 else 0)
        return totals

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, Ready, draining-since) of every pod: for failure messages."""
        return [
            (
                p["metadata"]["name"],
                next(
                    (
                        c["status"]
                        for c in (p.get("status") or {}).get("conditions") or []
                        if c["type"] == "Ready"
                    ),
                    "-",
                ),
                (p["metadata"].get("annotations") or {}).get("voiceop.dev/draining-since", ""),
            )
            for p in self.pods()
        ]

    def ready_pods(self, region: str) -> int:
        return sum(
            1
            for pod in self.pods()
            if pod["metadata"]["labels"][REGION_LABEL] == region
            and not pod["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (pod.get("status") or {}).get("conditions") or []
            )
        )


GB, IE, US = "+442071234567", "+35318881234", "+12125550123"


def scale_out_and_in_under_load(path: CallPath, region: str = "eu-west") -> None:
    """sipp load up then down through the edge: pods scale out and in, and no call fails.

    Calls last 10 s, longer than the scale-down delay (4 s) plus the drain, and a steady
    stream keeps calls live through the scale-in; the fixture caps the kubelet's grace at 1 s,
    so a scale-in that removed a pod with a call WOULD fail one (sipp counts a BYE that
    gets no 200, and the kubelet counts the calls it cut).
    """
    from harness import wait_for

    wait_for(lambda: path.call([GB], calls=1).successful == 1, timeout=15, what="edge routes a call")
    cut_before = path.cut_calls()
    peak = {region: 0}
    watching = threading.Event()

    def watch_pods() -> None:
        while not watching.is_set():
            peak[region] = max(peak[region], path.ready_pods(region))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_pods, daemon=True)
    watcher.start()
    try:
        # A steady stream (0.3 calls/s of 10 s calls, about 3 at once) for two minutes, and on
        # top of it a burst rising 0.3 -> 0.9 calls/s (up to 9 more at once on 3-slot pods):
        # pods scale out for the burst and in after it while the steady calls are live on them.
        steady = path.callers(
            [IE], calls=36, rate=0.3, hold_ms=10_000, max_concurrent=40, timeout_s=200
        ).start()
        time.sleep(5)
        burst = path.callers(
            [GB],
            calls=30,
            rate=0.3,
            hold_ms=10_000,
            max_concurrent=40,
            timeout_s=150,
            rate_increase=(0.3, 0.9, 8),
        ).run()
        steady_result = steady.wait()
        if burst.failed or steady_result.failed:
            report = path.edge.config_dir / "sipp-errors.log"
            report.write_text(burst.errors + "\n---\n" + steady_result.errors)
            raise AssertionError(
                f"failed calls: burst {burst.rejections}, steady {steady_result.rejections}; sipp's errors in {report}"
            )
        assert (burst.successful, steady_result.successful) == (30, 36)
        # The scale-in under live calls happened: fewer Ready pods than at the peak.
        wait_for(
            lambda: path.ready_pods(region) < peak[region], timeout=150, what="a scale-in after the burst"
        )
    finally:
        watching.set()
        watcher.join(2)
    assert peak[region] >= 3, peak
    assert path.cut_calls() == cut_before
    # Then down to the minimum once the calls are gone (it once held 2 pods at 0 calls for
    # minutes: a drained pod's readiness flap was read as a 90 s start-up, so it planned far ahead).
    try:
        wait_for(lambda: path.ready_pods(region) == 1, timeout=60, what="scale in to the minimum")
    except AssertionError as error:
        status = path.agent_status() or {}
        raise AssertionError(f"{error}; regions: {status.get('regions')}") from None
