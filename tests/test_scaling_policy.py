"""The builtin policy: call-safe, bounded, quick on the way up, steady under steady load."""

from __future__ import annotations

import math
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from voiceop.scaling.policy import PodView, ScalerMemory, ScalingConfig, decide, stabilized

CONFIG = ScalingConfig(calls_per_pod=10, target_utilization=0.7, min_replicas=1, max_replicas=50)


def serving(*calls: int) -> list[PodView]:
    return [PodView(f"pod-{i}", "serving", c) for i, c in enumerate(calls)]


def test_desired_is_calls_over_target_capacity() -> None:
    decision = decide(serving(7, 7, 7, 7), 0.0, CONFIG, ScalerMemory())
    assert decision.desired == 4  # 28 calls / 7 per pod
    decision = decide(serving(10, 10, 10, 10), 0.0, CONFIG, ScalerMemory())
    assert decision.desired == math.ceil(40 / 7)


def test_growth_is_met_ahead_of_time() -> None:
    memory = ScalerMemory()
    desired = [
        decide(serving(*[c // 4] * 4), t, CONFIG, memory).desired
        for t, c in ((0, 40), (2, 52), (4, 64), (6, 76))
    ]
    assert desired[-1] > math.ceil(76 / 7), "climbing calls are provisioned for what arrives during start-up"


def test_a_climbing_arrival_rate_is_provisioned_for() -> None:
    """Same live-call curve; arrivals that speed up (a TV spot starting) ask for more pods."""

    def last_desired(arrivals: list[float]) -> int:
        memory = ScalerMemory()
        steps = zip((0, 2, 4, 6), (40, 52, 64, 76), arrivals, strict=True)
        return [decide(serving(*[c // 4] * 4), t, CONFIG, memory, None, a) for t, c, a in steps][-1].desired

    assert last_desired([12.0, 16.0, 20.0, 24.0]) > last_desired([6.0, 6.0, 6.0, 6.0])


def test_a_small_region_plans_for_the_calls_chance_brings_not_only_their_mean() -> None:
    """The demo's first ramp: two 8-call pods, calls 2, 3, 6 while arrivals climb to 1/s. The
    mean projection (12.6 calls in 5 s) fits two pods at 85%; random arrivals often bring more
    (6 came in the next 2 s, 16 calls: both pods full), so a third pod is asked for now."""
    config = ScalingConfig(calls_per_pod=8, target_utilization=0.7, pod_startup_seconds=3.0, min_replicas=2)
    memory = ScalerMemory()
    steps = ((0.0, 2, 0.5), (2.0, 3, 0.5), (4.0, 6, 1.0))
    desired = [decide(serving(c - c // 2, c // 2), t, config, memory, None, a).desired for t, c, a in steps]
    assert desired == [2, 2, 3]


def test_steady_calls_with_random_arrivals_add_no_pod() -> None:
    """At the target, the target's own headroom holds the arrivals' scatter: no pod more."""
    config = ScalingConfig(calls_per_pod=8, target_utilization=0.7, pod_startup_seconds=3.0, min_replicas=1)
    memory = ScalerMemory()
    # 11 calls of ~19 s: 0.6 arriving a second, as many ending.
    desired = {decide(serving(6, 5), float(t), config, memory, None, 0.6).desired for t in range(0, 120, 2)}
    assert desired == {2}


def test_calls_too_short_to_stay_live_ask_for_no_pod() -> None:
    """Hand-offs of 300 ms at 2/s: the ticks see calls arriving but none live. Only what stays
    live can fill a pod, so the scatter of arrivals adds nothing (it had asked for a second
    pod with no call live, and a scale-in later took the pod that held the hand-off records)."""
    config = ScalingConfig(calls_per_pod=6, target_utilization=0.7, pod_startup_seconds=3.0, min_replicas=1)
    memory = ScalerMemory()
    desired = [
        decide(serving(0), t, config, memory, None, a).desired
        for t, a in ((0.0, 0.0), (2.0, 2.0), (4.0, 2.0))
    ]
    assert desired == [1, 1, 1]


def test_latency_over_slo_adds_pods() -> None:
    calm = decide(serving(5, 5, 5, 5), 0.0, CONFIG, ScalerMemory(), p95_latency_ms=500)
    slow = decide(serving(5, 5, 5, 5), 0.0, CONFIG, ScalerMemory(), p95_latency_ms=1200)
    assert slow.desired > calm.desired and slow.desired >= 5
    idle = decide(serving(1, 1, 1, 1), 0.0, CONFIG, ScalerMemory(), p95_latency_ms=1200)
    quiet = decide(serving(1, 1, 1, 1), 0.0, CONFIG, ScalerMemory(), p95_latency_ms=500)
    assert idle.desired == quiet.desired == 4, "idle pods are not what makes voice slow: no step"


def test_a_latency_breach_pods_cannot_fix_adds_a_step_per_window_not_per_tick() -> None:
    """A slow AI backend keeps p95 high whatever the media pods do: growth must stay paced."""
    memory = ScalerMemory()
    pods = serving(5, 5, 5, 5, 5, 5, 5, 5, 5, 5)
    desired = []
    for tick in range(30):  # 60 s of breach
        decision = decide(pods, tick * 2.0, CONFIG, memory, p95_latency_ms=1500)
        desired.append(decision.desired)
        pods = pods + [PodView(f"new-{tick}-{i}", "serving", 0) for i in range(decision.desired - len(pods))]
    assert desired[0] == 11
    assert desired[14] == 11, "no second step before the first could show in latency"
    assert desired[15] == 11 + math.ceil(11 * 0.1) and desired[-1] == desired[15]


def test_scale_down_drains_the_emptiest_pods_early_and_holds_them_for_the_delay() -> None:
    memory = ScalerMemory()
    decide(serving(7, 7, 7, 7, 7, 7), 0.0, CONFIG, memory)
    noise = decide(serving(1, 3, 0, 2, 1, 1), 30.0, CONFIG, memory)
    assert noise.desired == 6 and noise.drain == (), "a dip shorter than a minute changes nothing"
    early = decide(serving(1, 3, 0, 2, 1, 1), 61.0, CONFIG, memory)
    assert early.desired == math.ceil(8 / 7)
    assert set(early.drain) == {"pod-2", "pod-0", "pod-4", "pod-5"}  # fewest calls first
    assert early.remove == () and early.replicas == 6, "pods are held for scaleDownDelaySeconds"
    pods = [
        *serving(1, 3),
        *(PodView(f"pod-{i}", "draining", c, 61.0) for i, c in ((2, 0), (3, 2), (4, 0), (5, 1))),
    ]
    held = decide(pods, 200.0, CONFIG, memory)
    assert held.remove == () and held.replicas == 6
    late = decide(pods, 301.0, CONFIG, memory)
    assert set(late.remove) == {"pod-2", "pod-4"}, "after the delay the empty ones go, the busy ones stay"
    assert late.replicas == 4


def test_draining_pods_go_only_when_empty_or_past_the_longest_call() -> None:
    config = ScalingConfig(calls_per_pod=10, max_call_duration_seconds=600, scale_down_delay_seconds=0)
    pods = [
        PodView("a", "serving", 1),
        PodView("b", "draining", 2, draining_since=0.0),
        PodView("c", "draining", 0, draining_since=0.0),
    ]
    decision = decide(pods, 100.0, config, ScalerMemory())
    assert decision.remove == ("c",)
    decision = decide(pods, 700.0, config, ScalerMemory())
    assert set(decision.remove) == {"b", "c"}


def test_first_sight_holds_the_pods_running_now() -> None:
    """After an operator restart, surplus pods are not cut before the delay (as the HPA seeds)."""
    memory = ScalerMemory()
    first = decide(serving(0, 0, 0, 0), 0.0, CONFIG, memory)
    assert first.replicas == 4 and first.remove == ()
    drained = decide(serving(0, 0, 0, 0), 301.0, CONFIG, memory)
    assert drained.drain == ("pod-0", "pod-1", "pod-2") and drained.remove == ()
    views = [PodView("pod-3", "serving", 0)] + [
        PodView(n, "draining", 0, draining_since=301.0) for n in drained.drain
    ]
    assert decide(views, 305.0, CONFIG, memory).replicas == 1


def test_a_pod_drained_in_this_decision_is_not_removed_in_the_same_one() -> None:
    """Until its readiness has reached the edge a just-drained pod can still be sent a call:
    removing it on the reading that drained it could cut that call."""
    config = ScalingConfig(calls_per_pod=10, scale_down_delay_seconds=0)
    decision = decide(serving(0, 0), 100.0, config, ScalerMemory())
    assert decision.drain and decision.remove == ()
    just = [PodView("pod-0", "serving", 0), PodView("pod-1", "draining", 0, draining_since=99.0)]
    assert decide(just, 100.0, config, ScalerMemory()).remove == ()
    assert decide(just, 104.0, config, ScalerMemory()).remove == ("pod-1",)


def test_a_pod_whose_metrics_did_not_answer_is_not_taken_for_empty() -> None:
    config = ScalingConfig(calls_per_pod=10, max_call_duration_seconds=600, scale_down_delay_seconds=0)
    pods = [
        PodView("a", "serving", 1),
        PodView("silent", "draining", 0, draining_since=0.0, fresh=False),
        PodView("stuck", "draining", 0, draining_since=0.0, fresh=False),
    ]
    assert decide(pods, 100.0, config, ScalerMemory()).remove == ()
    assert set(decide(pods, 700.0, config, ScalerMemory()).remove) == {"silent", "stuck"}, (
        "past the longest call"
    )


def test_returning_demand_reuses_draining_pods_before_starting_new_ones() -> None:
    pods = [*serving(7, 7), PodView("warm", "draining", 3, draining_since=0.0)]
    decision = decide(pods, 10.0, CONFIG, ScalerMemory())
    assert decision.undrain == ("warm",)
    assert decision.desired == 3


def test_scaling_limited_names_the_cap() -> None:
    config = ScalingConfig(
        calls_per_pod=10, max_replicas=50, caps=(("Region eu-west capacity.maxMediaPods", 3),)
    )
    decision = decide(serving(7, 7, 7, 7, 7), 0.0, config, ScalerMemory())
    assert decision.limited_by == "Region eu-west capacity.maxMediaPods"
    assert decision.desired == 4, "35 live calls need 4 pods whatever the cap says"
    assert decide(serving(2), 0.0, config, ScalerMemory()).limited_by is None


pod_lists = st.lists(
    st.tuples(
        st.sampled_from(["starting", "serving", "draining"]),
        st.integers(0, 10),
        st.booleans(),  # metrics answered this tick
        st.sampled_from([0.0, 3000.0]),  # left the serving set: an hour ago, or ten minutes ago
    ),
    min_size=0,
    max_size=30,
)
NOW = 4000.0


@settings(max_examples=300, deadline=None)
@given(
    pod_lists,
    st.integers(0, 20),
    st.integers(1, 60),
    st.floats(0.1, 1.0),
    st.floats(0, 5000),
    st.sampled_from([0.0, 300.0]),
)
def test_never_below_live_call_needs_and_within_bounds(
    raw: list[tuple[str, int, bool, float]], low: int, high: int, utilization: float, p95: float, delay: float
) -> None:
    config = ScalingConfig(
        calls_per_pod=10,
        target_utilization=utilization,
        min_replicas=min(low, high),
        max_replicas=high,
        scale_down_delay_seconds=delay,
    )
    pods = [
        PodView(
            f"p{i}",
            state,  # type: ignore[arg-type]
            0 if state == "starting" else calls,
            since if state == "draining" else None,
            fresh=fresh,
        )
        for i, (state, calls, fresh, since) in enumerate(raw)
    ]
    decision = decide(pods, NOW, config, ScalerMemory(), p95_latency_ms=p95)
    live_need = math.ceil(sum(p.calls for p in pods if p.state != "draining") / 10)
    assert decision.desired >= live_need
    assert decision.desired >= config.min_replicas
    assert decision.desired <= max(config.max_replicas, live_need)
    for pod in pods:
        if pod.name in decision.remove:
            overdue = (
                pod.draining_since is not None
                and NOW - pod.draining_since >= config.max_call_duration_seconds
            )
            assert (pod.calls == 0 and pod.fresh) or overdue, "only known-empty or overdue pods go"
    assert decision.replicas >= decision.desired
    serving_after = (
        sum(1 for p in pods if p.state != "draining") - len(decision.drain) + len(decision.undrain)
    )
    started = max(0, decision.desired - serving_after)
    assert decision.replicas == len(pods) - len(decision.remove) + started, (
        "the Deployment's size is what runs"
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 120), min_size=10, max_size=120), st.sampled_from([0.0, 20.0, 60.0, 300.0]))
def test_pods_are_held_for_the_delay_and_live_calls_always_fit(walk: list[int], delay: float) -> None:
    """Whatever calls do, the Deployment keeps the highest need of the last scaleDownDelaySeconds
    (up to maxReplicas) and the serving set always has room for the calls on it."""
    config = ScalingConfig(
        calls_per_pod=10, target_utilization=0.7, max_replicas=40, scale_down_delay_seconds=delay
    )
    memory = ScalerMemory()
    pods: dict[str, str] = {"p0": "serving"}  # name -> state; pods start at once here
    made, needs = 1, []
    for tick, calls in enumerate(walk):
        now = tick * 10.0
        serving = [n for n, s in pods.items() if s == "serving"]
        views = [
            PodView(n, "serving", calls // len(serving) + (i < calls % len(serving)))
            for i, n in enumerate(serving)
        ]
        views += [PodView(n, "draining", 0, 0.0) for n, s in pods.items() if s == "draining"]
        decision = decide(views, now, config, memory)
        needs.append((now, math.ceil(calls / 7)))
        held = max(n for t, n in needs if t >= now - delay)
        assert decision.replicas >= min(held, config.max_replicas), "pods went before the delay"
        assert decision.desired * 10 >= calls, "live calls must fit the serving set"
        for name in decision.drain:
            pods[name] = "draining"
        for name in decision.undrain:
            pods[name] = "serving"
        for name in decision.remove:
            del pods[name]
        while sum(1 for s in pods.values() if s == "serving") < decision.desired:
            pods[f"p{made}"], made = "serving", made + 1
        assert len(pods) == decision.replicas


def run_steady(total_calls: int, start_pods: int, ticks: int) -> list[tuple[int, int, int, int]]:
    """Apply each decision (pods start at once) under a constant number of live calls."""
    memory = ScalerMemory()
    pods = [f"p{i}" for i in range(start_pods)]
    draining: set[str] = set()
    made = start_pods
    log = []
    for tick in range(ticks):
        now = tick * 2.0
        active = [p for p in pods if p not in draining]
        share = (
            [
                total_calls // len(active) + (1 if i < total_calls % len(active) else 0)
                for i in range(len(active))
            ]
            if active
            else []
        )
        views = [PodView(p, "serving", c) for p, c in zip(active, share, strict=True)] + [
            PodView(p, "draining", 0, 0.0) for p in draining
        ]
        decision = decide(views, now, CONFIG, memory)
        draining |= set(decision.drain)
        draining -= set(decision.undrain)
        for name in decision.remove:
            pods.remove(name)
            draining.discard(name)
        new = decision.desired - len([p for p in pods if p not in draining])
        for _ in range(max(0, new)):
            pods.append(f"p{made}")
            made += 1
        log.append((decision.desired, len(decision.drain), len(decision.undrain), max(0, new)))
    return log


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 40))
def test_no_flapping_under_constant_load(total_calls: int, start_pods: int) -> None:
    log = run_steady(total_calls, start_pods, 400)  # 800 s: past the 300 s scale-down delay
    settled = log[200:]
    assert len({desired for desired, *_ in settled}) == 1
    assert all(drained == undrained == new == 0 for _, drained, undrained, new in settled)


def test_pod_startup_time_is_learned_from_pods() -> None:
    from voiceop.controller.scaler import StartupTimes

    def pod(uid: str, ready: str | None) -> dict[str, object]:
        conditions = (
            [{"type": "ContainersReady", "status": "True", "lastTransitionTime": ready}] if ready else []
        )
        meta = {"uid": uid, "name": uid, "creationTimestamp": "2026-11-27T10:00:00Z"}
        return {"metadata": meta, "status": {"conditions": conditions}}

    times = StartupTimes()
    assert times.observe([pod("d", None)]) is None
    pods = [
        pod("a", "2026-11-27T10:00:04Z"),
        pod("b", "2026-11-27T10:00:06Z"),
        pod("c", "2026-11-27T10:00:30Z"),
        pod("d", None),
    ]
    assert times.observe(pods) == 6.0  # the median of what was seen


def test_a_pod_drained_and_serving_again_does_not_count_its_age_as_start_up() -> None:
    """Its readiness went False while it drained and True again 80 s later: it still took 4 s
    to start (read again, the scaler planned 89 s ahead and held pods at 0 calls)."""
    from voiceop.controller.scaler import StartupTimes

    def pod(uid: str, ready: str) -> dict[str, object]:
        conditions = [{"type": "ContainersReady", "status": "True", "lastTransitionTime": ready}]
        meta = {"uid": uid, "name": uid, "creationTimestamp": "2026-11-27T10:00:00Z"}
        return {"metadata": meta, "status": {"conditions": conditions}}

    times = StartupTimes()
    times.observe([pod("a", "2026-11-27T10:00:04Z"), pod("b", "2026-11-27T10:00:04Z")])
    again = [pod("a", "2026-11-27T10:01:24Z"), pod("b", "2026-11-27T10:01:24Z")]
    assert times.observe(again) == 4.0
    assert times.observe([pod("b", "2026-11-27T10:01:24Z")]) == 4.0  # a is gone, b is still known
    assert times.seconds.keys() == {"b"}


def test_the_scaler_plans_a_tick_past_the_start_up_it_learned() -> None:
    """A new pod serves only when the readiness gate opens, on the tick after its containers
    are ready: the scaler plans that far ahead (the demo's 1 s pods took 3 s to serve)."""
    from voiceop.controller.scaler import DEFAULT_STARTUP_SECONDS, Scaler, StartupTimes

    scaler = Scaler.__new__(Scaler)  # startup_of reads only these two fields
    scaler.tick_seconds, scaler.startup = 2.0, {}
    key = ("cc", "billing", "eu-west")
    assert scaler.startup_of(key) == DEFAULT_STARTUP_SECONDS  # nothing learned yet
    scaler.startup[key] = StartupTimes(median=1.0)
    assert scaler.startup_of(key) == 3.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(0, 40)), max_size=200),
    st.floats(0.0, 30.0),
)
def test_the_stabilization_window_answers_as_the_highest_of_all_its_samples(
    steps: list[tuple[float, int]], window: float
) -> None:
    """The window keeps only values that can still be its highest; the answer is the highest
    of every sample in the window, as when all were kept."""
    kept: deque[tuple[float, int]] = deque()
    every: list[tuple[float, int]] = []
    now = 0.0
    for gap, value in steps:
        now += gap
        every.append((now, value))
        assert stabilized(kept, now, value, window) == max(v for t, v in every if t >= now - window)
        assert len(kept) <= sum(1 for t, _ in every if t >= now - window)


def test_a_steady_window_keeps_one_sample() -> None:
    kept: deque[tuple[float, int]] = deque()
    for second in range(900):
        assert stabilized(kept, float(second), 5, 300.0) == 5
    assert len(kept) == 1
