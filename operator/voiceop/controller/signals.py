"""Scaling signals of media pods: live calls per pod, p95 voice latency and hand-offs per region.

Two sources, as `spec.scaling.metrics.source` says: Prometheus' HTTP API (instant queries over
the media pod contract), or each pod's /metrics scraped directly and parsed with
prometheus-client's own parser. The quantile math is pure and shared.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from voiceop.handoffs import DEFAULT_WINDOW_SECONDS, CounterWindow, HandoffWindow

METRICS_PORT = 9090
Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), ascending


# (namespace, agent, region) -> the replicas the builtin scaler last chose for that Deployment.
ReplicaTable = dict[tuple[str, str, str], int]


@dataclass
class RegionSignals:
    """Live signals of one agent in one region, as the scaler last saw them (status reads them)."""

    active_calls: int = 0
    p95_latency_ms: int | None = None
    desired: int | None = None
    limited_by: str | None = None
    handoffs: HandoffWindow | None = None  # None: not read (the status keeps what it showed)


def last_reported(status: Mapping[str, Any] | None, region: str) -> RegionSignals | None:
    """The signals an agent's status last published for a region, if any.

    A restarted operator reconciles agents before its scaler has ticked once (hundreds of them,
    at scale); until it does, the status keeps what the last scaler said. Writing it from no
    signals at all would flip desired pods and conditions, and flip them back a tick later.
    """
    for entry in (status or {}).get("regions") or []:
        if isinstance(entry, Mapping) and entry.get("name") == region and "desiredReplicas" in entry:
            return RegionSignals(
                active_calls=int(entry.get("activeCalls") or 0),
                p95_latency_ms=entry.get("p95LatencyMs"),
                desired=int(entry["desiredReplicas"]),
                limited_by=entry.get("limitedBy"),
            )
    return None


@dataclass(frozen=True)
class Reading:
    calls: dict[str, int]  # pod name -> live calls (pods that answered)
    p95_ms: float | None
    arrivals_per_second: float | None = None  # calls taken by the region's pods, recently
    handoffs: HandoffWindow | None = None  # calls and hand-offs over the hand-off window


@dataclass(frozen=True)
class PodSample:
    """One /metrics answer of a media pod."""

    calls: int  # voice_active_calls
    buckets: Buckets  # voice_response_latency_seconds, cumulative
    taken: float | None  # voice_calls_total (None: the pod does not report it)
    handoffs: dict[str, float] = field(default_factory=dict)  # voice_handoffs_total by reason


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (linear inside a bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return previous_bound


def parse_pod_metrics(text: str) -> PodSample:
    """Live calls, calls taken and the latency histogram's buckets from one /metrics answer."""
    calls, buckets = 0, []
    taken: float | None = None
    handoffs: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "voice_calls":  # declared: it counts, even before its first call
            taken = taken or 0.0
        for sample in family.samples:
            if sample.name == "voice_active_calls":
                calls = int(sample.value)
            elif sample.name == "voice_calls_total":  # by backend and model: summed
                taken = (taken or 0.0) + sample.value
            elif sample.name == "voice_response_latency_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == "voice_handoffs_total":
                reason = sample.labels.get("reason", "")
                handoffs[reason] = handoffs.get(reason, 0.0) + sample.value
    return PodSample(calls, sorted(buckets), taken, handoffs)


def subtract(now: Buckets, before: Buckets | None) -> Buckets:
    if not before or len(before) != len(now):
        return now
    return [(bound, max(0.0, count - old)) for (bound, count), (_, old) in zip(now, before, strict=True)]


def add(total: Buckets, more: Buckets) -> Buckets:
    if not total:
        return list(more)
    return [(bound, a + b) for (bound, a), (_, b) in zip(total, more, strict=True)]


LATENCY_WINDOW_SECONDS = 30.0  # as the Prometheus query's rate(...[30s])
ARRIVAL_WINDOW_SECONDS = 6.0  # calls taken per second: short, a ramp must show within seconds


@dataclass
class DirectScraper:
    """GET http://<podIP>:9090/metrics of each pod; p95 from the buckets' growth over the last
    30 s (a 2 s tick alone holds too few turns for a 95th percentile), calls taken per second
    from voice_calls_total over the last 6 s."""

    timeout_s: float = 1.0
    port: int = METRICS_PORT
    clock: Callable[[], float] = time.monotonic
    handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS
    # (pod name, IP) -> (time, sample) snapshots, oldest first. One scraper serves every agent,
    # region and namespace, so a pod's history is forgotten by age, not by who was read last.
    history: dict[tuple[str, str], deque[tuple[float, PodSample]]] = field(default_factory=dict)
    counters: CounterWindow | None = None  # calls and hand-offs per pod, over the hand-off window
    # group (an agent's region) -> every pod seen in it: a pod removed by a scale-in still
    # handed its calls off, and counts until its last snapshot leaves the window.
    members: dict[Any, set[str]] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    async def read(self, pods: Mapping[str, str], group: Any = None) -> Reading:
        """`pods`: name -> IP; `group`: whose pods they are, for the hand-off window."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        now = self.clock()
        names = list(pods)
        answers = await asyncio.gather(*(self._scrape(pods[name]) for name in names), return_exceptions=True)
        calls: dict[str, int] = {}
        window: Buckets = []
        arrivals: float | None = None
        if self.counters is None:
            self.counters = CounterWindow(self.handoff_window_seconds)
        counted = False
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException) or answer is None:
                continue
            calls[name] = answer.calls
            if answer.taken is not None:
                self.counters.observe(now, f"{name}@{pods[name]}", answer.taken, answer.handoffs)
                counted = True
            snapshots = self.history.setdefault((name, pods[name]), deque())
            while len(snapshots) > 1 and snapshots[1][0] <= now - LATENCY_WINDOW_SECONDS:
                snapshots.popleft()
            # A pod first seen has no window yet: its counts may span days.
            if snapshots and answer.buckets:
                window = add(window, subtract(answer.buckets, snapshots[0][1].buckets))
            if snapshots and answer.taken is not None:
                then, before = next(
                    (t, s)
                    for t, s in reversed(snapshots)
                    if t <= now - ARRIVAL_WINDOW_SECONDS or t == snapshots[0][0]
                )
                if before.taken is not None and now > then:
                    # A counter that went down was restarted: what it shows now was all taken since.
                    taken = answer.taken - before.taken if answer.taken >= before.taken else answer.taken
                    arrivals = (arrivals or 0.0) + taken / (now - then)
            snapshots.append((now, answer))
        for pod in [
            p for p, snaps in self.history.items() if snaps[-1][0] < now - 2 * LATENCY_WINDOW_SECONDS
        ]:
            del self.history[pod]  # a pod not seen for a minute is gone
        self.counters.forget_older_than(now - self.handoff_window_seconds)
        members = self.members.setdefault(group, set())
        members.update(f"{name}@{pods[name]}" for name in names)
        members.intersection_update(self.counters.snapshots)
        handoffs = self.counters.window(sorted(members)) if counted else None
        p95 = histogram_quantile(0.95, window)
        return Reading(calls, None if p95 is None else p95 * 1000, arrivals, handoffs)

    async def _scrape(self, ip: str) -> PodSample | None:
        assert self._session is not None
        async with self._session.get(f"http://{ip}:{self.port}/metrics") as response:
            if response.status != 200:
                return None
            return parse_pod_metrics(await response.text())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass
class PrometheusReader:
    """Instant queries against Prometheus' HTTP API (`/api/v1/query`)."""

    url: str
    timeout_s: float = 2.0
    _session: aiohttp.ClientSession | None = None

    async def query(self, promql: str) -> list[dict[str, object]]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        async with self._session.get(
            f"{self.url.rstrip('/')}/api/v1/query", params={"query": promql}
        ) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {body.get('error', body)}")
        return list(body["data"]["result"])

    async def read(
        self,
        namespace: str,
        pod_names: Sequence[str],
        pods_of_deployment: str | None = None,
        handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ) -> Reading:
        """`pods_of_deployment`: a regex of every pod the region's Deployment made, gone or not,
        for the hand-off window (a pod removed by a scale-in still handed its calls off)."""
        handoffs = (
            await self.handoffs(namespace, pods_of_deployment, handoff_window_seconds)
            if pods_of_deployment
            else None
        )
        if not pod_names:
            return Reading({}, None, None, handoffs)
        selector = f'namespace="{namespace}",pod=~"{"|".join(sorted(pod_names))}"'
        calls_result = await self.query(f"sum by (pod) (voice_active_calls{{{selector}}})")
        calls = {str(r["metric"]["pod"]): int(float(r["value"][1])) for r in calls_result}  # type: ignore[index]
        latency = await self.query(
            f"histogram_quantile(0.95, sum by (le) (rate(voice_response_latency_seconds_bucket{{{selector}}}[30s])))"
        )
        p95 = None
        if latency:
            value = float(latency[0]["value"][1])  # type: ignore[index]
            p95 = None if math.isnan(value) else value * 1000
        # irate: the last two scrapes, the freshest rate Prometheus can give.
        taken = await self.query(f"sum(irate(voice_calls_total{{{selector}}}[1m]))")
        arrivals = None
        if taken:
            value = float(taken[0]["value"][1])  # type: ignore[index]
            arrivals = None if math.isnan(value) else value
        return Reading(calls, p95, arrivals, handoffs)

    async def handoffs(self, namespace: str, pod_regex: str, window_seconds: float) -> HandoffWindow:
        selector = f'namespace="{namespace}",pod=~"{pod_regex}"'
        window = f"[{int(window_seconds)}s]"
        by_reason = await self.query(
            f"sum by (reason) (increase(voice_handoffs_total{{{selector}}}{window}))"
        )
        calls = await self.query(f"sum(increase(voice_calls_total{{{selector}}}{window}))")
        reasons: dict[str, float] = {}
        for row in by_reason:
            metric, value = row.get("metric"), row.get("value")
            if isinstance(metric, dict) and isinstance(value, list):
                reasons[str(metric.get("reason", ""))] = float(value[1])
        total = float(calls[0]["value"][1]) if calls else 0.0  # type: ignore[index]
        return HandoffWindow.of(
            0.0 if math.isnan(total) else total, {r: n for r, n in reasons.items() if not math.isnan(n)}
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
