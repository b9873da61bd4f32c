"""The stock autoscalers, as the simulator's baselines (see shared AUTOSCALERS.md).

Each turns what it can observe of one region into a replica count on its own loop period;
the simulator then removes pods the way that autoscaler's platform does (`victims`, `grace`).

`hpa` and `keda` are what a voiceop user of those modes gets: voiceop renders the HPA (or the
ScaledObject) and a Deployment with a preStop drain and a grace period of
maxCallDurationSeconds + 30 s, so a pod the ReplicaSet removes finishes its calls. `hpa-plain`
and `keda-plain` are the same autoscalers over a stock Deployment (30 s grace): what a team
gets without voiceop's rendering. Both read their metric through Prometheus, 15 s behind (the
scrape interval; KEDA adds its query).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from voiceop.scaling.policy import Decision, PodView, ScalerMemory, ScalingConfig, decide, stabilized

Victims = Literal["drain", "replicaset", "empty-only"]


@dataclass(frozen=True)
class RegionView:
    """What an autoscaler may know of one region at one instant."""

    now: float
    pods: Sequence[PodView]  # running pods: starting, serving, draining (not terminating)
    replicas: int  # the current replica target
    calls: int  # live calls on running pods
    calls_with_terminating: int  # what a Prometheus sum over all pods still reports
    p95_latency_ms: float | None = None
    arrivals_per_second: float | None = None  # over the last few seconds, from voice_calls_total


class Autoscaler(Protocol):
    name: str
    tick_seconds: float
    victims: Victims
    grace_seconds: float
    metric_lag_seconds: float  # age of the signal it acts on (scrape interval, polling)

    def step(self, view: RegionView) -> Decision | int: ...


def _clamp(value: int, config: ScalingConfig) -> int:
    return max(config.min_replicas, min(config.max_replicas, value))


@dataclass
class Builtin:
    """voiceop's builtin policy (voiceop.scaling.policy), every 2 s, on pod metrics scraped
    directly (fresh), draining pods fewest-calls first and removing them only when empty."""

    config: ScalingConfig
    name: str = "builtin"
    tick_seconds: float = 2.0
    victims: Victims = "drain"
    metric_lag_seconds: float = 0.0
    memory: ScalerMemory = field(default_factory=ScalerMemory)

    @property
    def grace_seconds(self) -> float:
        return self.config.max_call_duration_seconds

    def step(self, view: RegionView) -> Decision:
        return decide(
            view.pods, view.now, self.config, self.memory, view.p95_latency_ms, view.arrivals_per_second
        )


@dataclass
class HpaPods:
    """autoscaling/v2 HPA on a Pods metric (average live calls per pod).

    kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go, replica_calculator.go:
    sync every 15 s (--horizontal-pod-autoscaler-sync-period); desired = ceil(sum over pods with
    metrics / target), skipped within tolerance 0.1; pods without metrics (starting) count 0%
    on scale-up and 100% on scale-down, and no change if that reverses the direction;
    terminating pods are left out. Default behavior: scale-up at most max(100%, 4 pods) per
    15 s, no window; scale-down stabilized over 300 s (highest recommendation), 100% per 15 s.
    Scale-in removes pods in ReplicaSet order (unready, then newest) with the default
    terminationGracePeriodSeconds of 30 s (kubernetes.io, Pod lifecycle). The custom metric is
    as old as a Prometheus scrape (15 s) through the adapter.
    """

    config: ScalingConfig
    name: str = "hpa-plain"
    tick_seconds: float = 15.0
    victims: Victims = "replicaset"
    grace_seconds: float = 30.0
    metric_lag_seconds: float = 15.0
    tolerance: float = 0.1
    stabilization_seconds: float = 300.0
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)

    def recommend(self, view: RegionView) -> int:
        target = self.config.calls_per_pod * self.config.target_utilization
        with_metrics = [p for p in view.pods if p.state != "starting"]
        missing = len(view.pods) - len(with_metrics)
        current = view.replicas
        if not with_metrics:
            return current
        total = sum(p.calls for p in with_metrics)
        ratio = total / (target * len(with_metrics))
        if abs(ratio - 1) <= self.tolerance:
            return current
        if missing:
            assumed = total + (0 if ratio > 1 else missing * target)
            adjusted = assumed / (target * (len(with_metrics) + missing))
            if (ratio > 1) != (adjusted > 1) or abs(adjusted - 1) <= self.tolerance:
                return current
            return math.ceil(adjusted * (len(with_metrics) + missing))
        return math.ceil(ratio * len(with_metrics))

    def behave(self, now: float, current: int, recommendation: int) -> int:
        highest = stabilized(self.recommendations, now, recommendation, self.stabilization_seconds)
        if recommendation > current:
            return min(recommendation, max(2 * current, current + 4))
        return min(current, highest)

    def step(self, view: RegionView) -> int:
        return _clamp(self.behave(view.now, view.replicas, self.recommend(view)), self.config)


DRAIN_MARGIN_SECONDS = 30.0  # render/agent.py: grace = maxCallDurationSeconds + 30 s


@dataclass
class HpaVoiceop(HpaPods):
    """HpaPods over voiceop's rendering (mode hpa): the pods a scale-in removes run the preStop
    drain for up to maxCallDurationSeconds + 30 s, so their calls end before the kill."""

    name: str = "hpa"

    def __post_init__(self) -> None:
        self.grace_seconds = self.config.max_call_duration_seconds + DRAIN_MARGIN_SECONDS


@dataclass
class KedaPrometheus(HpaPods):
    """KEDA ScaledObject with a Prometheus trigger `sum(voice_active_calls)`.

    keda.sh docs (Scaling Deployments, Prometheus scaler): the HPA KEDA creates reads an
    External metric with an AverageValue target: desired = ceil(sum / threshold), tolerance
    0.1 against the current replicas, same default behavior as the HPA (15 s sync, 300 s
    scale-down window); pollingInterval 30 s only gates 0 <-> 1, which min 1 never uses. The
    sum includes pods still terminating (External metrics do not drop them) and is as old as
    a Prometheus scrape (15 s) plus KEDA's query.
    """

    name: str = "keda-plain"
    metric_lag_seconds: float = 20.0

    def recommend(self, view: RegionView) -> int:
        target = self.config.calls_per_pod * self.config.target_utilization
        current = max(1, view.replicas)
        ratio = view.calls_with_terminating / (target * current)
        if abs(ratio - 1) <= self.tolerance:
            return view.replicas
        return math.ceil(view.calls_with_terminating / target)


@dataclass
class KedaVoiceop(KedaPrometheus):
    """KedaPrometheus over voiceop's rendering (mode keda): preStop drain, long grace."""

    name: str = "keda"

    def __post_init__(self) -> None:
        self.grace_seconds = self.config.max_call_duration_seconds + DRAIN_MARGIN_SECONDS


@dataclass
class KnativeKpa:
    """Knative Pod Autoscaler (knative/serving pkg/autoscaler/scaling/autoscaler.go).

    Tick 2 s over 1 s buckets of total concurrency; stable window 60 s, panic window 6 s
    (10%); target = callsPerPod x 0.7 (container-concurrency-target-percentage); panic when
    panic-window demand / ready pods >= 2.0, ratcheting up and not scaling down until a stable
    window has passed without panic; max scale-up rate 1000, max scale-down rate 2 per tick;
    scale-down-delay 0. Victims in ReplicaSet order with terminationGracePeriodSeconds set
    from the revision timeout (300 s default, knative.dev docs "Configuring the request
    timeout"). A new decider starts in panic (pkg/autoscaler/scaling/autoscaler.go New: a
    revision that starts with pods begins panicking, so that it does not scale down at once).
    The activator's queueing is not modelled: a call with no free slot is rejected.
    """

    config: ScalingConfig
    name: str = "kpa"
    tick_seconds: float = 2.0
    victims: Victims = "replicaset"
    grace_seconds: float = 300.0
    metric_lag_seconds: float = 0.0
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    panic_since: float | None = None
    starts_in_panic: bool = True  # its first step opens a panic (at the trace's start, maybe < 0)
    max_panic_pods: int = 0

    def _average(self, now: float, window: float) -> float:
        values = [c for t, c in self.samples if t > now - window]
        return sum(values) / len(values) if values else 0.0

    def step(self, view: RegionView) -> int:
        now = view.now
        if self.starts_in_panic:
            self.panic_since, self.starts_in_panic = now, False
        self.samples.append((now, view.calls))
        while self.samples and self.samples[0][0] <= now - self.stable_window:
            self.samples.popleft()
        target = self.config.calls_per_pod * self.config.target_utilization
        ready = max(1, sum(1 for p in view.pods if p.state == "serving"))
        max_up = math.ceil(self.max_scale_up_rate * ready)
        max_down = math.floor(ready / self.max_scale_down_rate)
        stable = math.ceil(self._average(now, self.stable_window) / target)
        panic = math.ceil(self._average(now, self.panic_window) / target)
        desired_stable = min(max(stable, max_down), max_up)
        desired_panic = min(max(panic, max_down), max_up)
        if panic / ready >= self.panic_threshold:
            if self.panic_since is None:
                self.panic_since = now
            self.panic_since = now  # stays in panic while over the threshold
        elif self.panic_since is not None and self.panic_since + self.stable_window < now:
            self.panic_since = None
            self.max_panic_pods = 0
        if self.panic_since is not None:
            desired = max(desired_stable, desired_panic, self.max_panic_pods)
            self.max_panic_pods = desired
        else:
            desired = desired_stable
        return _clamp(desired, self.config)


@dataclass
class AgonesCounter:
    """Agones Fleet autoscaler, Counter policy (googleforgames/agones pkg/fleetautoscalers,
    applyCounterOrListPolicy): every 30 s (sync interval default), keep available capacity
    (sum capacity - sum count) at a buffer; a 30% buffer (desiredCap = ceil(count x 100 / 70))
    mirrors targetUtilization 0.7. Scale up by ceil((buffer - available) / capacity); scale down
    only through GameServers that hold no call (Allocated ones are never deleted), floor 1.
    """

    config: ScalingConfig
    name: str = "agones"
    tick_seconds: float = 30.0
    victims: Victims = "empty-only"
    grace_seconds: float = 0.0
    metric_lag_seconds: float = 0.0

    def step(self, view: RegionView) -> int:
        capacity = self.config.calls_per_pod
        count = view.calls
        buffer_percent = round((1 - self.config.target_utilization) * 100)
        desired_capacity = math.ceil(count * 100 / (100 - buffer_percent))
        buffer = desired_capacity - count
        aggregate = capacity * len(view.pods)
        available = aggregate - count
        replicas = len(view.pods)
        if available < buffer:
            replicas += math.ceil((buffer - available) / capacity)
        elif available > buffer:
            for pod in sorted(view.pods, key=lambda p: p.calls):
                if pod.calls or available - capacity < buffer or replicas <= 1:
                    break
                available -= capacity
                replicas -= 1
        return _clamp(replicas, self.config)


def make_autoscaler(name: str, config: ScalingConfig) -> Autoscaler:
    policies: dict[str, type] = {
        "builtin": Builtin,
        "hpa": HpaVoiceop,
        "hpa-plain": HpaPods,
        "keda": KedaVoiceop,
        "keda-plain": KedaPrometheus,
        "kpa": KnativeKpa,
        "agones": AgonesCounter,
    }
    if name not in policies:
        raise ValueError(f"unknown policy {name!r}: one of {', '.join([*policies, 'oracle'])}")
    return policies[name](config)


POLICIES = ("builtin", "hpa", "hpa-plain", "keda", "keda-plain", "kpa", "agones", "oracle")
