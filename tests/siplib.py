"""Fixtures for the SIP tier: media-sim pods answering SIP, a Kamailio edge, sipp callers.

Everything binds 127.0.0.0/8 addresses only and is stopped by the fixture that started it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import require_program
from voiceop.edge.config import MediaEndpoint, edge_files, routes_of_configmap
from voiceop.inputs.files import write_files
from voiceop.sandbox.mediasim import media_sim_command
from voiceop.sandbox.pods import http_get
from voiceop.sandbox.sip import KamailioEdge

METRICS_PORT = 9090
SIP_PORT = 5060


def require_sip_tools() -> None:
    for name in ("kamailio", "kamcmd", "sipp"):
        require_program(name, "apt-get install -y kamailio sip-tester")


@dataclass
class MediaPods:
    """media-sim processes by pod name, each on its own loopback address."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, address: str, slots: int) -> None:
        command = media_sim_command(address, METRICS_PORT, slots, None, SIP_PORT)
        self.processes[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addresses[name] = address
        deadline = time.monotonic() + 15
        while http_get(f"http://{address}:{METRICS_PORT}/healthz")[0] != 200:
            assert time.monotonic() < deadline, f"media-sim {name} did not start"
            time.sleep(0.1)

    def metric(self, name: str, metric: str) -> float:
        code, text = http_get(f"http://{self.addresses[name]}:{METRICS_PORT}/metrics")
        assert code == 200
        for line in text.splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
        return 0.0

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

    def start(routes: dict[str, dict[str, Any]], endpoints: list[MediaEndpoint]) -> KamailioEdge:
        settings = KamailioEdge.settings_for(tmp_path / "edge")
        write_files(tmp_path / "edge", edge_files(settings, routes, endpoints))
        edge = KamailioEdge(settings).start()
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop()
