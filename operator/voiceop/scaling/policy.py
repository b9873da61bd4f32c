"""The builtin autoscaling policy: pure, per agent and region, one decision per tick.

    desired = ceil(calls / (callsPerPod x targetUtilization))

raised ahead of climbing demand by what will arrive while a new pod starts (the net growth of
live calls over a short window, and the climb of the arrival rate, projected over the start-up
time: Knative's panic idea, on calls; and the projection's upper edge, as random arrivals
scatter it, fitted in full pods), and by one step when p95 voice latency breaches the SLO;
bounded by min/max, the Region's capacity and the AIBackend's quota, but never below what the
live calls need (`ceil(calls / callsPerPod)`), whatever a bound says.

Two numbers come out of a decision. `desired` is the serving set: the pods taking new calls.
It follows demand with a short stabilization (a minute, as Knative's stable window), so the
pods that are no longer needed start draining early. `replicas` is the Deployment's size: the
highest recommendation of the last `scaleDownDelaySeconds` (the HPA's stabilization), and
never fewer than the serving pods plus the draining pods that still hold calls. So pods are
held for the delay before going down, as every stock autoscaler holds them, but they spend
the delay finishing their calls while staying warm: when the delay ends they are empty and go
at once, and when demand comes back they serve again without a new pod having to start.

Scale-in is call-safe: pods leave the serving set (readiness gate false, lowest
pod-deletion-cost) fewest-calls first, and are removed only when empty or past
`maxCallDurationSeconds`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

PodState = Literal["starting", "serving", "draining"]

GROWTH_WINDOW_SECONDS = 6.0  # short, like Knative's panic window: react within seconds
LATENCY_STEP = 0.1  # a latency breach adds 10% (at least one pod)
# ...once per this long: new pods must start and show in a latency window before the next step,
# or a breach that pods cannot fix (a slow AI backend) would add 10% every tick up to the max.
LATENCY_STEP_SECONDS = 30.0
# ...and only while the serving pods carry at least half their target load: on idle pods a slow
# p95 is the backend's or the network's, and more media pods would not lower it.
LATENCY_MIN_LOAD = 0.5
PROJECTION_HOLD = 2  # start-up horizons a projected need is kept
SERVING_WINDOW_SECONDS = 60.0  # the serving set goes down once demand stayed down this long
# A projection is planned at this utilization, between the target and full: the target's own
# headroom already absorbs part of the growth, and planning it twice costs pods all day.
PROJECTION_UTILIZATION = 0.85
# Calls arrive at random (Poisson): where n more are expected live at the horizon, more than
# n + z*sqrt(n) come about one time in fifty at z = 2. The projection's upper edge must fit in
# full pods, or a small region refuses calls before a new pod serves: two 8-call pods at 10
# calls, a mean projection of 13, and 6 calls came in the next 2 s (the demo, 0.7% refused).
ARRIVAL_NOISE_Z = 2.0


@dataclass(frozen=True)
class PodView:
    name: str
    state: PodState
    calls: int  # live calls, or the last count seen when this tick's reading failed
    draining_since: float | None = None  # when it left the serving set
    fresh: bool = True  # False: its metrics did not answer this tick, so it is not known empty


@dataclass(frozen=True)
class ScalingConfig:
    calls_per_pod: int
    target_utilization: float = 0.7
    pod_startup_seconds: float = 10.0
    tick_seconds: float = 2.0
    latency_slo_ms: int = 800
    scale_down_delay_seconds: float = 300.0
    min_replicas: int = 1
    max_replicas: int = 100
    max_call_duration_seconds: float = 3600.0
    # Further caps, each with the name ScalingLimited reports: e.g. {"Region eu-west
    # capacity.maxMediaPods": 12, "AIBackend gpt limits.maxConcurrentSessions": 40}.
    caps: tuple[tuple[str, int], ...] = ()


@dataclass
class ScalerMemory:
    """What one region's scaler remembers between ticks."""

    calls: deque[tuple[float, int]] = field(default_factory=deque)  # (time, live calls)
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)  # real demand: pods kept
    serving: deque[tuple[float, int]] = field(default_factory=deque)  # real demand: serving set
    projections: deque[tuple[float, int]] = field(default_factory=deque)  # projected demand
    arrivals: deque[tuple[float, float]] = field(default_factory=deque)  # (time, calls/s arriving)
    latency_step: tuple[float, int] | None = None  # (when, pods) of the last latency step


@dataclass(frozen=True)
class Decision:
    desired: int  # pods that should serve calls
    replicas: int  # the Deployment's replicas: desired, plus draining pods kept or still busy
    drain: tuple[str, ...]  # leave the serving set now
    undrain: tuple[str, ...]  # back into the serving set
    remove: tuple[str, ...]  # empty (or past the longest call): delete now
    limited_by: str | None  # the bound that kept `desired` below what demand asked
    wanted: int  # what demand asked before bounds


def growth(
    memory: ScalerMemory, now: float, calls: int, arrivals_per_second: float | None = None
) -> tuple[float, float]:
    """Live calls gained per second over the growth window, and how fast that gain grows.

    Both are 0 when calls are steady or falling; the second catches a ramp (a TV spot) that a
    straight-line projection would fall behind. It is read from the arrival rate's climb when
    the pods report their calls taken (`voice_calls_total`), else from the live calls' own
    curve (noisier: calls ending add their noise to it).
    """
    memory.calls.append((now, calls))
    while memory.calls and memory.calls[0][0] < now - 2 * GROWTH_WINDOW_SECONDS:
        memory.calls.popleft()

    def rate(since: float, until: float) -> float | None:
        inside = [(t, c) for t, c in memory.calls if since <= t <= until]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    recent = rate(now - GROWTH_WINDOW_SECONDS, now)
    if arrivals_per_second is not None:
        memory.arrivals.append((now, arrivals_per_second))
        while memory.arrivals and memory.arrivals[0][0] < now - GROWTH_WINDOW_SECONDS:
            memory.arrivals.popleft()
        then, before = memory.arrivals[0]
        speeding = max(0.0, (arrivals_per_second - before) / (now - then)) if now > then else 0.0
    else:
        earlier = rate(now - 2 * GROWTH_WINDOW_SECONDS, now - GROWTH_WINDOW_SECONDS)
        speeding = max(0.0, ((recent or 0.0) - (earlier or 0.0)) / GROWTH_WINDOW_SECONDS)
    if recent is None or recent <= 0:
        return 0.0, 0.0
    return recent, speeding


def stabilized(history: deque[tuple[float, int]], now: float, value: int, window: float) -> int:
    """The highest value of the last `window` seconds: down only once it stayed down.

    `history` keeps only the values that can still be that highest one, falling from oldest
    to newest (a sliding-window maximum): a value is dropped once a later one is as high,
    since the later one outlives it. A region ticking every second with a 300 s delay kept 300
    samples per window before; it keeps one while demand is steady, and the answer is the same.
    """
    while history and history[-1][1] <= value:
        history.pop()
    history.append((now, value))
    while history[0][0] < now - window:
        history.popleft()
    return history[0][1]


def bounded(wanted: int, floor: int, config: ScalingConfig) -> tuple[int, str | None]:
    """Apply min/max and caps; the live-call floor beats every upper bound."""
    desired = max(wanted, config.min_replicas)
    limited_by = None
    for name, cap in (("maxReplicas", config.max_replicas), *config.caps):
        if desired > cap:
            desired, limited_by = cap, name
    return max(desired, floor), limited_by


def decide(
    pods: Sequence[PodView],
    now: float,
    config: ScalingConfig,
    memory: ScalerMemory,
    p95_latency_ms: float | None = None,
    arrivals_per_second: float | None = None,
) -> Decision:
    calls = sum(p.calls for p in pods)
    serving = [p for p in pods if p.state == "serving"]
    starting = [p for p in pods if p.state == "starting"]
    draining = [p for p in pods if p.state == "draining"]
    active = len(serving) + len(starting)
    per_pod_target = config.calls_per_pod * config.target_utilization
    if not memory.recommendations and config.scale_down_delay_seconds > 0:
        # First sight (or an operator restart): what runs now counts as just recommended, so
        # nothing is scaled in before the delay has passed (the HPA seeds its window the same way).
        memory.recommendations.append((now, active + len(draining)))
        memory.serving.append((now, active))

    # What the calls of now need. Only real demand is held: a projection that did not come
    # true must not keep pods for five minutes.
    need_now = math.ceil(calls / per_pod_target)
    loaded = calls >= LATENCY_MIN_LOAD * active * per_pod_target
    if p95_latency_ms is not None and p95_latency_ms > config.latency_slo_ms and loaded:
        last = memory.latency_step
        if last is None or now - last[0] >= LATENCY_STEP_SECONDS:
            memory.latency_step = last = (now, active + max(1, math.ceil(active * LATENCY_STEP)))
        need_now = max(need_now, last[1])
    held = stabilized(memory.recommendations, now, need_now, config.scale_down_delay_seconds)
    serve_window = min(SERVING_WINDOW_SECONDS, config.scale_down_delay_seconds)
    serving_need = stabilized(memory.serving, now, need_now, serve_window)
    # What will be live when a pod started now can serve: growth, and its own growth.
    gain, speeding = growth(memory, now, calls, arrivals_per_second)
    horizon = config.pod_startup_seconds + config.tick_seconds
    projected = calls + gain * horizon + 0.5 * speeding * horizon**2
    # The scatter is that of the arrivals still live at the horizon, a part of the calls
    # projected live then: at most min(rate x horizon, projected). Without the bound, a test's
    # 300 ms hand-offs at 10/s (no call live at any tick) asked for a second pod.
    rate = gain if arrivals_per_second is None else arrivals_per_second
    arriving = min(rate * horizon, projected)
    projected_need = max(
        math.ceil(
            projected / (config.calls_per_pod * max(PROJECTION_UTILIZATION, config.target_utilization))
        ),
        math.ceil((projected + ARRIVAL_NOISE_Z * math.sqrt(max(0.0, arriving))) / config.calls_per_pod),
    )
    # A projection is held for a few start-up times, so that noise does not flap pods.
    ahead = stabilized(memory.projections, now, projected_need, PROJECTION_HOLD * horizon)
    wanted = max(serving_need, ahead)

    # Calls on pods already draining stay there; the serving set must hold the rest.
    floor = math.ceil(sum(p.calls for p in serving + starting) / config.calls_per_pod)
    desired, limited_by = bounded(wanted, floor, config)
    if limited_by is not None and desired >= wanted:
        limited_by = None
    keep, _ = bounded(held, desired, config)  # pods kept running: the hold, at least the serving set

    drain: list[str] = []
    undrain: list[str] = []
    if desired > active:
        # Draining pods are warm: they take calls again before any new pod is started.
        back = sorted(draining, key=lambda p: -p.calls)[: desired - active]
        undrain = [p.name for p in back]
        draining = [p for p in draining if p.name not in undrain]
    elif desired < active:
        # Starting pods go first (no calls, not yet useful), then the emptiest serving pods.
        candidates = sorted(starting, key=lambda p: p.name) + sorted(serving, key=lambda p: (p.calls, p.name))
        drain = [p.name for p in candidates[: active - desired]]
        draining = draining + [p for p in pods if p.name in drain]

    # Past the longest call a pod goes whatever it holds; an empty one goes once the pods
    # kept for the delay no longer need it.
    overdue = [
        p.name
        for p in draining
        if p.draining_since is not None and now - p.draining_since >= config.max_call_duration_seconds
    ]
    running = desired + len(draining) - len(overdue)
    spare = max(0, running - keep)
    # Empty, and out of the serving set for two ticks: a pod drained in this very decision is
    # still routable until its readiness reaches the edge, so a call may land between the
    # reading and the removal (seen on the real control plane).
    settled_drain = 2 * config.tick_seconds
    empty = [
        p.name
        for p in draining
        if p.calls == 0
        and p.fresh
        and p.name not in overdue
        and p.draining_since is not None
        and now - p.draining_since >= settled_drain
    ]
    remove = overdue + empty[:spare]
    replicas = desired + len(draining) - len(remove)
    return Decision(desired, replicas, tuple(drain), tuple(undrain), tuple(remove), limited_by, wanted)
