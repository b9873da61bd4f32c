"""The call-trace simulator and its baselines, on traces small enough to check by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voiceop.scaling.baselines import AgonesCounter, HpaPods, KnativeKpa, RegionView
from voiceop.scaling.policy import PodView, ScalingConfig
from voiceop.scaling.simulator import Call, read_trace, simulate, summarize
from voiceop.scaling.traces import WARM_UP_SECONDS, trace

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ScalingConfig(
    calls_per_pod=2,
    target_utilization=1.0,
    pod_startup_seconds=10,
    max_replicas=10,
    scale_down_delay_seconds=0,
)


def test_oracle_packs_perfectly() -> None:
    calls = [Call(0, 10), Call(0, 10), Call(0, 10), Call(5, 20)]
    result = simulate(calls, "oracle", CONFIG)["default"]
    # 0-5 s: 3 calls -> 2 pods; 5-10 s: 4 calls -> 2 pods; 10-25 s: 1 call -> 1 pod.
    assert result.pod_seconds == pytest.approx(2 * 10 + 1 * 15)
    assert result.rejected == result.dropped == 0


def test_a_call_without_a_free_slot_is_rejected() -> None:
    calls = [Call(0, 100), Call(0.1, 100), Call(0.2, 100)]  # one pod with 2 slots at the start
    result = summarize("builtin", simulate(calls, "builtin", CONFIG))
    assert result["rejected"] == 1 and result["calls"] == 3


def test_nothing_before_0_is_counted() -> None:
    """A warm-up (calls with a negative start) runs the region but counts for nothing: of three
    calls before 0 (two of them still live at 0, four calls on a one-slot-per-call region) and one
    after, only the one after is a call, and pod-seconds run from 0."""
    calls = [Call(-100, 50), Call(-10, 30), Call(-5, 30), Call(-5, 30), Call(5, 10)]
    oracle = simulate(calls, "oracle", CONFIG)["default"]
    assert oracle.calls == 1
    assert oracle.pod_seconds == pytest.approx(2 * 20 + 1 * 5)  # 0-20 s: 3 live -> 2 pods; 20-25 s: 1
    builtin = simulate(calls, "builtin", CONFIG)["default"]
    assert builtin.calls == 1 and builtin.rejected == 0  # the call refused at -5 s is not counted
    assert builtin.seconds == 26  # latency sampled at 0, 1, ..., 25 s
    quiet = simulate([Call(-1000, 10), Call(5, 10)], "builtin", CONFIG)["default"]
    assert quiet.pod_seconds <= 10 * 15  # at most maxReplicas over 0-15 s; from -1000, over 1,000


def test_a_generated_trace_starts_with_the_calls_of_a_running_system() -> None:
    calls = trace("burst", 0)
    assert min(c.start for c in calls) < -0.99 * WARM_UP_SECONDS
    live_at_0 = sum(1 for c in calls if c.start < 0 < c.start + c.duration)
    assert live_at_0 > 100  # 1.5 calls/s of ~2 min calls: ~190


def test_replicaset_victims_drop_calls_past_the_grace_period_and_builtin_does_not() -> None:
    # A call every 3 s for 2 minutes; every fifth lasts 25 minutes, the rest under 4: when the
    # short ones are gone, the long ones sit on pods a scale-in picks.
    calls = [Call(t * 3.0, 1500 if t % 5 == 0 else 200) for t in range(40)]
    config = ScalingConfig(
        calls_per_pod=2,
        target_utilization=0.5,
        pod_startup_seconds=1,
        max_replicas=40,
        scale_down_delay_seconds=0,
    )
    hpa = simulate(calls, "hpa-plain", config)["default"]
    builtin = simulate(calls, "builtin", config)["default"]
    assert hpa.dropped > 0, "newest-first victims with a 30 s grace period cut long calls"
    assert builtin.dropped == 0
    assert builtin.rejected <= hpa.rejected
    # voiceop's rendering of mode hpa (preStop drain, grace past the longest call) cuts none.
    assert simulate(calls, "hpa", config)["default"].dropped == 0


def test_two_regions_are_simulated_side_by_side() -> None:
    calls = [Call(0, 30, "eu"), Call(1, 30, "us"), Call(2, 30, "us")]
    results = simulate(calls, "builtin", CONFIG)
    assert set(results) == {"eu", "us"}
    assert results["us"].calls == 2 and results["eu"].calls == 1


def test_hpa_rule_tolerance_and_scale_up_limit() -> None:
    hpa = HpaPods(ScalingConfig(calls_per_pod=10, target_utilization=0.7, max_replicas=100))
    pods = [PodView(f"p{i}", "serving", 7) for i in range(4)]
    assert hpa.step(RegionView(0, pods, 4, 28, 28)) == 4  # ratio 1.0: inside the tolerance
    hot = [PodView(f"p{i}", "serving", 10) for i in range(4)]
    assert hpa.step(RegionView(15, hot, 4, 40, 40)) == 6  # ceil(40 / 7)
    swamped = [PodView(f"p{i}", "serving", 10) for i in range(2)]
    assert (
        HpaPods(ScalingConfig(calls_per_pod=1, max_replicas=100)).step(RegionView(0, swamped, 2, 20, 20)) == 6
    )  # max(2N, N+4)


def test_kpa_panics_on_a_burst() -> None:
    kpa = KnativeKpa(ScalingConfig(calls_per_pod=10, target_utilization=0.7, max_replicas=100))
    pods = [PodView("a", "serving", 5)]
    for t in range(0, 60, 2):
        kpa.step(RegionView(t, pods, 1, 5, 5))
    burst = kpa.step(RegionView(60, pods, 1, 50, 50))
    assert burst >= 2 and kpa.panic_since == 60


def test_agones_never_removes_a_pod_with_calls() -> None:
    agones = AgonesCounter(ScalingConfig(calls_per_pod=10, max_replicas=100))
    pods = [PodView(f"p{i}", "serving", 1) for i in range(10)]
    assert agones.step(RegionView(0, pods, 10, 10, 10)) == 10  # every pod holds a call


def test_read_trace_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("start,duration,region\n0,10,eu\nx,10,eu\n")
    with pytest.raises(ValueError, match=r"bad.csv:3"):
        read_trace(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("begin,length\n0,1\n")
    with pytest.raises(ValueError, match="header"):
        read_trace(wrong)


def test_simulate_cli_json_and_plot(tmp_path: Path) -> None:
    trace = tmp_path / "small.csv"
    trace.write_text(
        "start,duration,region\n"
        + "".join(f"{t},{60 + t % 50},{'eu' if t % 3 else ''}\n" for t in range(0, 600, 2))
    )
    plot = tmp_path / "plot.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceop",
            "simulate",
            "--trace",
            str(trace),
            "--policy",
            "builtin,hpa",
            "--json",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["policy"] for r in rows] == ["builtin", "hpa"]
    for key in (
        "policy",
        "calls",
        "rejected",
        "dropped",
        "pod_seconds",
        "scale_events",
        "time_to_capacity_s",
    ):
        assert key in rows[0]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_cli_refuses_bad_options(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceop",
            "simulate",
            "--trace",
            str(tmp_path / "none.csv"),
            "--policy",
            "magic",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown magic" in result.stderr


def test_bundled_traces_parse() -> None:
    for name in ("diurnal", "burst", "two_regions"):
        calls = read_trace(ROOT / "benchmarks" / "traces" / f"{name}.csv")
        assert len(calls) > 10_000
    assert {c.region for c in read_trace(ROOT / "benchmarks" / "traces" / "two_regions.csv")} == {
        "eu-west",
        "us-east",
    }


def test_filling_pods_to_the_target_first_keeps_latency_that_filling_them_full_loses() -> None:
    """A full pod is over the SLO (pod_latency_ms): filling pods to callsPerPod in a fixed
    order runs the first pods hot; filling to the target utilization first, then past it only
    when every pod is there, keeps the pods packed for drains and the calls within the SLO."""
    from dataclasses import replace as replaced
    from pathlib import Path

    from voiceop.scaling.policy import ScalingConfig
    from voiceop.scaling.simulator import read_trace, simulate, summarize

    trace = read_trace(Path(__file__).resolve().parent.parent / "benchmarks" / "traces" / "burst.csv")
    config = replaced(
        ScalingConfig(calls_per_pod=10, target_utilization=0.7, pod_startup_seconds=10.0, max_replicas=1000),
        scale_down_delay_seconds=60.0,
    )
    full = summarize("builtin", simulate(trace, "builtin", config, "fill"))
    target = summarize("builtin", simulate(trace, "builtin", config, "fill-target"))
    assert full["dropped"] == target["dropped"] == 0
    assert target["over_slo_pct"] < full["over_slo_pct"] / 4
    assert target["pod_seconds"] < full["pod_seconds"]


def test_past_the_target_calls_go_to_the_pods_in_turn_as_the_edge_places_them() -> None:
    """The edge fills pods to their target share in the set's order, then (every pod at its
    target) in turn: over the target the calls spread, and no pod runs hot before the rest."""
    from voiceop.scaling.baselines import make_autoscaler
    from voiceop.scaling.simulator import RegionSim, Simulation

    config = ScalingConfig(calls_per_pod=10, target_utilization=0.7, max_replicas=10)
    region = RegionSim("default", make_autoscaler("builtin", config), config, 10.0, "fill-target")
    sim = Simulation()
    for _ in range(3):
        region.new_pod(0.0, sim, ready=True)
    calls = iter(range(100))

    def place(count: int) -> list[int]:
        for _ in range(count):
            region.place(next(calls), Call(0.0, 100.0), sim)
        return sorted((len(p.calls) for p in region.pods.values()), reverse=True)

    assert place(8) == [7, 1, 0]  # packed: the first pod to its target share (7 of 10)
    assert place(13) == [7, 7, 7]
    assert place(3) == [8, 8, 8]  # in turn past the target, not 10, 7, 7
    assert place(6) == [10, 10, 10]
    assert place(1) == [10, 10, 10] and region.result.rejected == 1
