"""Health probes of AIBackends: HTTP GET on `spec.healthCheck.url` every `intervalSeconds`.

Availability changes only on evidence: the first success makes a backend Available, two
failures in a row make it unavailable. Latency percentiles cover the last 20 probes. Status is
written when availability flips, and otherwise at most every STATUS_REFRESH_SECONDS, so a
healthy fleet of backends costs a handful of writes a minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from voiceop import metrics
from voiceop.api.v1alpha1 import AIBackend
from voiceop.controller.cache import ClusterCache, Seen
from voiceop.controller.loops import every
from voiceop.status import Cond, set_conditions

logger = logging.getLogger("voiceop.prober")

WINDOW = 20
FAILURES_TO_UNAVAILABLE = 2
STATUS_REFRESH_SECONDS = 30.0
TICK_SECONDS = 0.25


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ProbeHistory:
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    consecutive_failures: int = 0
    successes: int = 0
    last_error: str = ""
    last_probe: str | None = None

    def record(self, ok: bool, latency_ms: float, error: str, when: str) -> None:
        self.last_probe = when
        if ok:
            self.latencies_ms.append(latency_ms)
            self.consecutive_failures = 0
            self.successes += 1
            self.last_error = ""
        else:
            self.consecutive_failures += 1
            self.last_error = error

    @property
    def available(self) -> bool | None:
        """True, False, or None before the first verdict."""
        if self.consecutive_failures >= FAILURES_TO_UNAVAILABLE:
            return False
        if self.successes and self.consecutive_failures == 0:
            return True
        return None


@dataclass
class BackendProber:
    cache: ClusterCache
    # The reconciler's compare-and-write of a status; True when it wrote.
    write_status: Callable[[Seen, dict[str, Any]], Awaitable[bool]]
    clock: Callable[[], str]
    histories: dict[tuple[str, str], ProbeHistory] = field(default_factory=dict)
    _due: dict[tuple[str, str], float] = field(default_factory=dict)
    _last_write: dict[tuple[str, str], float] = field(default_factory=dict)
    _running: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        try:
            await every(TICK_SECONDS, self.tick, "prober")
        finally:
            if self._session is not None:
                await self._session.close()

    async def tick(self) -> None:
        now = time.monotonic()
        seen_keys = set()
        for key, seen in list(self.cache.objects["AIBackend"].items()):
            seen_keys.add(key)
            backend = seen.resource
            if backend is None or key in self._running:
                continue
            assert isinstance(backend, AIBackend)
            if backend.spec.health_check is None:
                await self._unprobed(seen)
                continue
            if now >= self._due.get(key, 0):
                self._due[key] = now + backend.spec.health_check.interval_seconds
                self._running[key] = asyncio.create_task(self._probe(key, seen, backend))
        for gone in set(self.histories) - seen_keys:
            self.histories.pop(gone, None)
            self._due.pop(gone, None)

    async def _probe(self, key: tuple[str, str], seen: Seen, backend: AIBackend) -> None:
        check = backend.spec.health_check
        assert check is not None
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        started = time.perf_counter()
        ok, error = False, ""
        try:
            timeout = aiohttp.ClientTimeout(total=check.timeout_ms / 1000)
            async with self._session.get(check.url, timeout=timeout, allow_redirects=False) as response:
                await response.read()
                ok = 200 <= response.status < 300
                error = "" if ok else f"HTTP {response.status}"
        except TimeoutError:
            error = f"no answer within {check.timeout_ms} ms"
        except aiohttp.ClientError as failure:
            error = str(failure) or type(failure).__name__
        finally:
            self._running.pop(key, None)
        latency_ms = (time.perf_counter() - started) * 1000
        history = self.histories.setdefault(key, ProbeHistory())
        history.record(ok, latency_ms, error, self.clock())
        if ok:
            metrics.BACKEND_PROBE_SECONDS.labels(namespace=key[0], backend=key[1]).observe(latency_ms / 1000)
        current = self.cache.seen("AIBackend", *key) or seen
        await self._publish(key, current, history)

    async def _publish(self, key: tuple[str, str], seen: Seen, history: ProbeHistory) -> None:
        available = history.available
        if available is None:
            return
        metrics.BACKEND_AVAILABLE.labels(namespace=key[0], backend=key[1]).set(1 if available else 0)
        live = dict(seen.raw.get("status") or {})
        was = next(
            (c.get("status") for c in live.get("conditions") or [] if c.get("type") == "Available"), None
        )
        flipped = was != ("True" if available else "False")
        if not flipped and time.monotonic() - self._last_write.get(key, 0) < STATUS_REFRESH_SECONDS:
            return
        generation = seen.raw["metadata"].get("generation")
        if available:
            condition = Cond(
                "Available",
                "True",
                "ProbeSucceeded",
                f"healthy; last probe {history.latencies_ms[-1]:.0f} ms",
            )
        else:
            condition = Cond(
                "Available",
                "False",
                "ProbeFailed",
                f"{history.consecutive_failures} failed probes: {history.last_error}",
            )
        status = {
            "observedGeneration": generation,
            "conditions": set_conditions(live.get("conditions") or [], [condition], generation, self.clock()),
            "lastProbeTime": history.last_probe,
        }
        if history.latencies_ms:
            status["probeLatencyMs"] = {
                "p50": round(percentile(history.latencies_ms, 50)),
                "p95": round(percentile(history.latencies_ms, 95)),
            }
        if await self.write_status(seen, status):
            self._last_write[key] = time.monotonic()

    async def _unprobed(self, seen: Seen) -> None:
        """A backend without a health check is taken as available, and says so once."""
        live = dict(seen.raw.get("status") or {})
        said = any(c.get("type") == "Available" for c in live.get("conditions") or [])
        if said and live.get("observedGeneration") == seen.raw["metadata"].get("generation"):
            return
        generation = seen.raw["metadata"].get("generation")
        condition = Cond("Available", "True", "NotProbed", "no healthCheck: assumed available")
        status = {
            "observedGeneration": generation,
            "conditions": set_conditions(live.get("conditions") or [], [condition], generation, self.clock()),
        }
        await self.write_status(seen, status)
