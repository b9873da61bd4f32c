"""A discrete-event simulation of media pods serving a call trace under an autoscaler.

Events, in time order: calls end, pods become ready, pods are killed, autoscalers tick,
metrics are sampled, calls arrive. A call is placed on a serving pod with a free slot and is
rejected when none has: by `placement`, `fill` takes the first pod in a fixed order (voiceop's
SIP edge orders a set's pods by name: a fixed order that new pods join anywhere, modelled by a
hash of the name), `fill-target` (the edge's own) the first below its target share in that
order and, once every pod is at its target, the pods in turn (round-robin), `spread` the pod
with the fewest calls (least-connections).
A pod an autoscaler removes stops taking calls at once; calls still on it when its grace
period ends are dropped. Regions are simulated side by side, each with its own autoscaler.

Measured: calls, rejected, dropped, pod-seconds (every pod that exists, from creation to
removal, starting and draining included), scale events (changes of the replica target), time
to capacity: the longest stretch during which the pods ready to serve were fewer than the
target-utilization need, ceil(live calls / (callsPerPod x targetUtilization)), and the share of
seconds whose p95 voice latency (pod_latency_ms, over the calls in progress) is over the SLO.

What an autoscaler sees is as old as its metric pipeline (`metric_lag_seconds`): live calls per
pod and in total, and calls taken per second, counted over accepted calls only (a real pod's
voice_calls_total cannot see a call the edge could not place). A pod taken back into the
serving set takes calls again only after UNDRAIN_LAG_SECONDS: the kubelet has to write the
annotation into its downward-API file and its readiness probe to pass.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import math
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceop.scaling.baselines import Autoscaler, RegionView, make_autoscaler
from voiceop.scaling.policy import Decision, PodView, ScalingConfig

DEFAULT_REGION = "default"
SAMPLE_SECONDS = 1.0
TIMELINE_SECONDS = 10.0
ARRIVAL_WINDOW_SECONDS = 6.0  # calls taken per second are read over this window
UNDRAIN_LAG_SECONDS = 5.0  # the downward-API refresh and a readiness probe period, at best
# Events at the same instant: free slots and new pods first, arrivals last.
CALL_END, POD_READY, POD_KILL, SAMPLE, TICK, ARRIVAL = range(6)


@dataclass(frozen=True)
class Call:
    start: float
    duration: float
    region: str = DEFAULT_REGION


def read_trace(path: Path | str) -> list[Call]:
    """A CSV with the header `start,duration,region` (region may be empty)."""
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = {"start", "duration", "region"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: the header must be start,duration,region (missing {', '.join(sorted(missing))})"
            )
        calls = []
        for line, row in enumerate(reader, start=2):
            try:
                start, duration = float(row["start"]), float(row["duration"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: start and duration must be numbers") from None
            if start < 0 or duration <= 0:
                raise ValueError(f"{path}:{line}: start must be >= 0 and duration > 0")
            calls.append(Call(start, duration, (row.get("region") or "").strip() or DEFAULT_REGION))
    return sorted(calls, key=lambda c: c.start)


BASE_LATENCY_MS = 450.0
LOAD_LATENCY_MS = 600.0


def pod_latency_ms(calls: int, calls_per_pod: int) -> float:
    """The voice latency of a call on a pod holding `calls` calls: flat until the pod runs hot,
    450 ms + 600 ms x utilization^4, the curve `voiceop media-sim` produces (its pod overhead is
    0.6 s x utilization^4 over a 0.45 s backend). Over an 800 ms SLO from 88% of callsPerPod."""
    utilization = min(1.0, calls / calls_per_pod)
    return BASE_LATENCY_MS + LOAD_LATENCY_MS * utilization**4


def p95_latency_ms(pod_calls: Sequence[int], calls_per_pod: int) -> float:
    """p95 over the calls in progress: each call has its pod's latency."""
    total = sum(pod_calls)
    if total == 0:
        return BASE_LATENCY_MS
    budget = 0.05 * total  # the slowest 5% of calls
    for calls in sorted(pod_calls, reverse=True):
        budget -= calls
        if budget < 0:
            return pod_latency_ms(calls, calls_per_pod)
    return BASE_LATENCY_MS


def latency_p95_ms(calls: int, serving_pods: int, calls_per_pod: int) -> float:
    """The p95 of calls spread evenly over `serving_pods` (the baselines' unit tests use it)."""
    if serving_pods == 0:
        return BASE_LATENCY_MS
    return pod_latency_ms(min(calls_per_pod, math.ceil(calls / serving_pods)), calls_per_pod)


@dataclass
class SimPod:
    name: str
    created: float
    state: str = "starting"  # starting, serving, draining, terminating
    calls: set[int] = field(default_factory=set)
    ready_at: float = 0.0
    draining_since: float | None = None


@dataclass
class RegionResult:
    calls: int = 0
    rejected: int = 0
    dropped: int = 0
    pod_seconds: float = 0.0
    scale_events: int = 0
    time_to_capacity_s: float = 0.0
    seconds: int = 0  # sampled seconds
    seconds_over_slo: int = 0  # ...whose p95 latency was over the SLO
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)


PLACEMENTS = ("spread", "fill", "fill-target")


class RegionSim:
    def __init__(
        self,
        name: str,
        autoscaler: Autoscaler,
        config: ScalingConfig,
        startup: float,
        placement: str = "spread",
    ) -> None:
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, not {placement!r}")
        self.placement = placement
        self.name = name
        self.autoscaler = autoscaler
        self.config = config
        self.startup = startup
        self.pods: dict[str, SimPod] = {}
        self.replicas = 0
        self.result = RegionResult()
        # (time, calls, calls incl. terminating, {pod: calls}) every second, for lagged metrics
        self.history: deque[tuple[float, int, int, dict[str, int]]] = deque()
        self.arrivals: deque[float] = deque()  # arrival times of the last minute
        self._names = itertools.count()
        self._turn = 0  # the edge's round-robin pointer, past the target
        self._last_time = 0.0
        self._under_since: float | None = None
        # (time, live calls, pods, rejected so far) every TIMELINE_SECONDS, for plots.
        self.timeline: list[tuple[float, int, int, int]] = []

    # --- bookkeeping between events -------------------------------------------------------

    def advance(self, now: float) -> None:
        # Counted from 0: before it, a generated trace warms the region up.
        self.result.pod_seconds += len(self.pods) * max(0.0, now - max(0.0, self._last_time))
        self._last_time = now

    def check_capacity(self, now: float) -> None:
        if now < 0:
            return
        live = sum(len(p.calls) for p in self.pods.values() if p.state != "terminating")
        need = math.ceil(live / (self.config.calls_per_pod * self.config.target_utilization))
        serving = sum(1 for p in self.pods.values() if p.state == "serving")
        if serving < need:
            if self._under_since is None:
                self._under_since = now
        elif self._under_since is not None:
            self.result.time_to_capacity_s = max(self.result.time_to_capacity_s, now - self._under_since)
            self._under_since = None

    def finish(self, now: float) -> None:
        self.advance(now)
        if self._under_since is not None:
            self.result.time_to_capacity_s = max(self.result.time_to_capacity_s, now - self._under_since)

    # --- pods -----------------------------------------------------------------------------

    def running(self) -> list[SimPod]:
        return [p for p in self.pods.values() if p.state != "terminating"]

    def new_pod(self, now: float, sim: Simulation, *, ready: bool = False) -> None:
        pod = SimPod(f"{self.name}-{next(self._names)}", created=now)
        self.pods[pod.name] = pod
        if ready:
            pod.state, pod.ready_at = "serving", now
        else:
            sim.push(now + self.startup, POD_READY, (self, pod.name))

    def terminate(self, pod: SimPod, now: float, grace: float, sim: Simulation) -> None:
        pod.state = "terminating"
        if not pod.calls:
            self.remove(pod)
        else:
            sim.push(now + grace, POD_KILL, (self, pod.name))

    def remove(self, pod: SimPod) -> None:
        self.pods.pop(pod.name, None)

    def view(self, now: float) -> RegionView:
        lag = self.autoscaler.metric_lag_seconds
        seen = [h for h in self.history if h[0] <= now - lag]
        _, calls, with_terminating, by_pod = seen[-1] if seen else (now, 0, 0, {})
        # What the pipeline shows: each pod's calls as they were `lag` ago; a pod it has no
        # sample of yet shows as starting (no metrics), as the HPA treats it.
        pods = [
            PodView(
                p.name,
                p.state if not lag or p.name in by_pod else "starting",  # type: ignore[arg-type]
                by_pod.get(p.name, 0) if lag else len(p.calls),
                p.draining_since,
            )
            for p in self.running()
        ]
        p95 = p95_latency_ms([len(p.calls) for p in self.running()], self.config.calls_per_pod)
        # What a counter of calls taken shows over the last ARRIVAL_WINDOW seconds, `lag` ago.
        seen_until = now - lag
        arrived = sum(1 for t in self.arrivals if seen_until - ARRIVAL_WINDOW_SECONDS < t <= seen_until)
        return RegionView(
            now, pods, self.replicas, calls, with_terminating, p95, arrived / ARRIVAL_WINDOW_SECONDS
        )

    # --- autoscaling ----------------------------------------------------------------------

    def tick(self, now: float, sim: Simulation) -> None:
        outcome = self.autoscaler.step(self.view(now))
        if isinstance(outcome, Decision):
            self.apply_decision(outcome, now, sim)
        else:
            self.apply_replicas(outcome, now, sim)

    def _set_target(self, target: int) -> None:
        if target != self.replicas:
            self.result.scale_events += 1
            self.replicas = target

    def apply_decision(self, decision: Decision, now: float, sim: Simulation) -> None:
        for name in decision.undrain:
            pod = self.pods[name]
            # Back in the serving set once its container has seen it (UNDRAIN_LAG_SECONDS).
            pod.state, pod.draining_since = "starting", None
            sim.push(now + UNDRAIN_LAG_SECONDS, POD_READY, (self, pod.name))
        for name in decision.drain:
            pod = self.pods[name]
            pod.state, pod.draining_since = "draining", now
        for name in decision.remove:
            pod = self.pods[name]
            self.terminate(pod, now, 30.0, sim)  # empty: gone at once; past the longest call: 30 s
        active = [p for p in self.running() if p.state in ("starting", "serving")]
        for _ in range(decision.desired - len(active)):
            self.new_pod(now, sim)
        self._set_target(decision.replicas)

    def apply_replicas(self, target: int, now: float, sim: Simulation) -> None:
        self._set_target(target)
        running = self.running()
        if target > len(running):
            for _ in range(target - len(running)):
                self.new_pod(now, sim)
            return
        excess = len(running) - target
        if self.autoscaler.victims == "empty-only":
            empty = sorted(
                (p for p in running if not p.calls), key=lambda p: (p.state != "starting", -p.created)
            )
            for pod in empty[:excess]:
                self.terminate(pod, now, 0.0, sim)
            self.replicas = len(self.running())
            return
        # ReplicaSet order: not ready first, then the most recently ready (newest).
        order = sorted(running, key=lambda p: (p.state == "serving", -p.ready_at, -p.created))
        for pod in order[:excess]:
            self.terminate(pod, now, self.autoscaler.grace_seconds, sim)

    # --- calls ----------------------------------------------------------------------------

    def place(self, call_id: int, call: Call, sim: Simulation) -> None:
        counted = call.start >= 0
        self.result.calls += counted
        while self.arrivals and self.arrivals[0] < call.start - 60.0:
            self.arrivals.popleft()
        open_pods = (
            p for p in self.pods.values() if p.state == "serving" and len(p.calls) < self.config.calls_per_pod
        )
        if self.placement == "fill":
            best = min(open_pods, key=lambda p: zlib.crc32(p.name.encode()), default=None)
        elif self.placement == "fill-target":
            best = self._fill_to_target_then_in_turn()
        else:
            best = min(open_pods, key=lambda p: len(p.calls), default=None)
        if best is None:
            self.result.rejected += counted
            return
        self.arrivals.append(call.start)  # what voice_calls_total counts: calls a pod took
        best.calls.add(call_id)
        sim.push(call.start + call.duration, CALL_END, (self, best.name, call_id))

    def _fill_to_target_then_in_turn(self) -> SimPod | None:
        """The edge's two passes: the first pod below its target share in the set's fixed
        order; when every pod is at its target, the pods in turn, each call starting one pod
        further along than the one before (Kamailio's round-robin, dispatcher algorithm 4) and
        skipping full ones."""
        in_set = sorted(
            (p for p in self.pods.values() if p.state == "serving"), key=lambda p: zlib.crc32(p.name.encode())
        )
        soft = math.ceil(self.config.calls_per_pod * self.config.target_utilization)
        below = next((p for p in in_set if len(p.calls) < soft), None)
        if below is not None or not in_set:
            return below
        self._turn = (self._turn + 1) % len(in_set)
        in_turn = in_set[self._turn :] + in_set[: self._turn]
        return next((p for p in in_turn if len(p.calls) < self.config.calls_per_pod), None)

    def end_call(self, pod_name: str, call_id: int) -> None:
        pod = self.pods.get(pod_name)
        if pod is None or call_id not in pod.calls:
            return  # dropped with its pod
        pod.calls.discard(call_id)
        if pod.state == "terminating" and not pod.calls:
            self.remove(pod)

    def kill(self, pod_name: str, now: float) -> None:
        pod = self.pods.get(pod_name)
        if pod is not None:
            self.result.dropped += len(pod.calls) if now >= 0 else 0
            self.remove(pod)

    def sample(self, now: float) -> None:
        running = sum(len(p.calls) for p in self.running())
        total = sum(len(p.calls) for p in self.pods.values())
        self.history.append((now, running, total, {p.name: len(p.calls) for p in self.running()}))
        if now >= 0:
            self.result.seconds += 1
            p95 = p95_latency_ms([len(p.calls) for p in self.pods.values()], self.config.calls_per_pod)
            if p95 > self.config.latency_slo_ms:
                self.result.seconds_over_slo += 1
        if not self.timeline or now - self.timeline[-1][0] >= TIMELINE_SECONDS:
            self.timeline.append((now, total, len(self.pods), self.result.rejected))
        horizon = now - 60.0
        while self.history and self.history[0][0] < horizon:
            self.history.popleft()


class Simulation:
    def __init__(self) -> None:
        self._events: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()

    def push(self, time: float, kind: int, payload: Any) -> None:
        heapq.heappush(self._events, (time, kind, next(self._seq), payload))

    def run(self, calls: Sequence[Call], regions: dict[str, RegionSim], end: float) -> None:
        for index, call in enumerate(calls):
            self.push(call.start, ARRIVAL, (regions[call.region], index))
        start = min(0.0, min((c.start for c in calls), default=0.0))  # a warm-up starts before 0
        for region in regions.values():
            # A running system: the minimum is up and serving when the trace starts.
            region._last_time = start
            for _ in range(max(1, region.config.min_replicas)):
                region.new_pod(start, self, ready=True)
            region.replicas = max(1, region.config.min_replicas)
            self.push(start, TICK, region)
            self.push(start, SAMPLE, region)
        while self._events:
            now, kind, _, payload = heapq.heappop(self._events)
            if now > end:
                break
            region = payload[0] if isinstance(payload, tuple) else payload
            region.advance(now)
            if kind == ARRIVAL:
                region.place(payload[1], calls[payload[1]], self)
            elif kind == CALL_END:
                region.end_call(payload[1], payload[2])
            elif kind == POD_READY:
                pod = region.pods.get(payload[1])
                if pod is not None and pod.state == "starting":
                    pod.state, pod.ready_at = "serving", now
            elif kind == POD_KILL:
                region.kill(payload[1], now)
            elif kind == TICK:
                region.tick(now, self)
                self.push(now + region.autoscaler.tick_seconds, TICK, region)
            elif kind == SAMPLE:
                region.sample(now)
                self.push(now + SAMPLE_SECONDS, SAMPLE, region)
            region.check_capacity(now)
        for region in regions.values():
            region.finish(end)


def trace_end(calls: Sequence[Call]) -> float:
    return max((c.start + c.duration for c in calls), default=0.0)


def oracle(calls: Sequence[Call], config: ScalingConfig) -> dict[str, RegionResult]:
    """Perfect packing: ceil(live calls / callsPerPod) pods every instant, at least 1 per region."""
    results: dict[str, RegionResult] = {}
    end = trace_end(calls)
    for region in sorted({c.region for c in calls}):
        changes: list[tuple[float, int]] = []
        for call in (c for c in calls if c.region == region):
            changes += [(call.start, 1), (call.start + call.duration, -1)]
        changes.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same instant
        result = RegionResult(calls=sum(1 for c in calls if c.region == region and c.start >= 0))
        live, last, pods = 0, 0.0, 1
        for time, delta in changes:
            result.pod_seconds += pods * max(0.0, time - max(0.0, last))
            if not result.timeline or time - result.timeline[-1][0] >= TIMELINE_SECONDS:
                result.timeline.append((time, live, pods, 0))
            live += delta
            last = time
            now_pods = max(1, math.ceil(live / config.calls_per_pod))
            if now_pods != pods:
                result.scale_events += 1
                pods = now_pods
        result.pod_seconds += pods * (end - max(0.0, last))
        results[region] = result
    return results


def simulate(
    calls: Sequence[Call],
    policy: str,
    config: ScalingConfig,
    placement: str = "spread",
    region_type: type[RegionSim] = RegionSim,
) -> dict[str, RegionResult]:
    """Every region of `calls` under `policy`; `region_type` lets a benchmark change how a
    region carries out decisions (benchmarks/drain_choice.py)."""
    if policy == "oracle":
        return oracle(calls, config)
    end = trace_end(calls)
    regions = {
        name: region_type(
            name, make_autoscaler(policy, config), config, config.pod_startup_seconds, placement
        )
        for name in sorted({c.region for c in calls})
    }
    Simulation().run(calls, regions, end)
    for region in regions.values():
        region.result.timeline = region.timeline
    return {name: region.result for name, region in regions.items()}


def summarize(policy: str, results: dict[str, RegionResult]) -> dict[str, Any]:
    total = RegionResult()
    for result in results.values():
        total.calls += result.calls
        total.rejected += result.rejected
        total.dropped += result.dropped
        total.pod_seconds += result.pod_seconds
        total.scale_events += result.scale_events
        total.time_to_capacity_s = max(total.time_to_capacity_s, result.time_to_capacity_s)
        total.seconds += result.seconds
        total.seconds_over_slo += result.seconds_over_slo
    return {
        "policy": policy,
        "calls": total.calls,
        "rejected": total.rejected,
        "rejected_pct": round(100 * total.rejected / total.calls, 4) if total.calls else 0.0,
        "dropped": total.dropped,
        "pod_seconds": round(total.pod_seconds, 1),
        "scale_events": total.scale_events,
        "time_to_capacity_s": round(total.time_to_capacity_s, 1),
        "over_slo_pct": round(100 * total.seconds_over_slo / total.seconds, 2) if total.seconds else 0.0,
        "regions": {
            name: {
                "calls": r.calls,
                "rejected": r.rejected,
                "dropped": r.dropped,
                "pod_seconds": round(r.pod_seconds, 1),
                "scale_events": r.scale_events,
                "time_to_capacity_s": round(r.time_to_capacity_s, 1),
            }
            for name, r in results.items()
        },
    }
