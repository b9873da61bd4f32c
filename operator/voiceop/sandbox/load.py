"""A caller load for the sandbox: calls arrive (Poisson), a SIP edge places each on the Ready
media pod with the fewest of its calls, and counts what was refused."""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from voiceop.sandbox.apiserver.store import Store
from voiceop.sandbox.pods import METRICS_PORT, PodSimulator
from voiceop.status import condition_status


class PodAddresses(Protocol):
    def address(self, namespace: str, name: str) -> str | None: ...


@dataclass
class CallLoad:
    """`rate(t)` calls per second at t seconds from start (at most `peak`), each lasting
    `duration()` seconds. Arrivals are drawn at `peak` and kept with probability rate/peak
    (thinning), so a rate that starts at zero still rises on time."""

    store: Store | None  # the loopback server's; None when `ready_pods` is given
    pods: PodSimulator | PodAddresses
    namespace: str
    selector: str  # label selector of the media pods, e.g. voiceop.dev/agent=billing
    rate: Callable[[float], float]
    duration: Callable[[], float]
    peak: float
    seed: int = 7
    # The names of the Ready media pods, read from a real API server (the cluster tier).
    ready_pods: Callable[[], list[str]] | None = None
    placed: int = 0
    rejected: int = 0
    handed_off: int = 0  # placed calls a pod handed to a human before answering
    _live: dict[str, list[float]] = field(default_factory=dict)  # pod -> end times of its calls
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CallLoad:
        self._thread = threading.Thread(target=self._run, name="call-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def live_calls(self) -> int:
        now = time.monotonic()
        return sum(1 for ends in self._live.values() for end in ends if end > now)

    def _ready_pods(self) -> list[str]:
        if self.ready_pods is not None:
            return self.ready_pods()
        assert self.store is not None
        rtype = self.store.resource_type("", "v1", "pods")
        items, _ = self.store.list(rtype, self.namespace, self.selector)
        return [
            p["metadata"]["name"]
            for p in items
            if condition_status(p, "Ready") == "True" and "deletionTimestamp" not in p["metadata"]
        ]

    def _run(self) -> None:
        rng = random.Random(self.seed)
        started = time.monotonic()
        while not self._stop.wait(rng.expovariate(self.peak)):
            if rng.random() < self.rate(time.monotonic() - started) / self.peak:
                self._call(self.duration())

    def _call(self, duration: float) -> None:
        now = time.monotonic()
        for ends in self._live.values():
            ends[:] = [end for end in ends if end > now]
        for name in sorted(self._ready_pods(), key=lambda n: len(self._live.get(n, []))):
            ip = self.pods.address(self.namespace, name)
            if ip is None:
                continue
            request = urllib.request.Request(
                f"http://{ip}:{METRICS_PORT}/calls?duration={duration:.1f}", data=b"", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=3) as answer:
                    self.placed += 1
                    if b'"handoff"' in answer.read():
                        self.handed_off += 1  # the pod's backend was down: a human took it
                    else:
                        self._live.setdefault(name, []).append(now + duration)
                    return
            except (urllib.error.URLError, OSError):
                continue  # full or draining: the edge tries the next pod
        self.rejected += 1
