"""Every autoscaling policy on generated call traces, held out from tuning: one table.

Traces come from `voiceop.scaling.traces`: seven shapes a contact centre sees, each drawn from
ten seeds (constants may be tuned on seeds 0-4; seeds 5-9 are the held-out judges; both are
printed). Each trace starts warm (its first rate for 20 minutes before 0, not counted: a
running system, not one pod meeting 2 calls/s cold). At 10 calls per pod, target utilization
0.7, 10 s pod start-up. Per shape and policy:
mean and worst over the seeds of rejected calls, dropped calls (cut by a scale-in), pod-seconds
against perfect packing (the oracle: no start-up, no headroom) and against the hold bound (what
a clairvoyant policy that keeps the target utilization and holds pods for scaleDownDelaySeconds
needs), and the share of seconds with p95 voice latency over the 800 ms SLO (the simulator's
latency model: a pod's latency rises with its load).

Rows: `builtin` as it ships (the SIP edge fills pods in a fixed order, each to its target share
of calls first and past it only when every pod is there), `builtin fill-full` (each pod filled
to callsPerPod in turn: the edge before it knew targets; a full pod runs hot), `builtin spread`
(least-connections); the baselines as their users get them:
`hpa`, `keda` (voiceop's rendering: preStop drain, grace past the longest call), `hpa-plain`,
`keda-plain` (a stock Deployment, 30 s grace), `kpa` (Knative), `agones`. Builtin runs at
scaleDownDelaySeconds 300 and 60; the baselines at their own 300 s windows.

    python benchmarks/autoscale.py [--seeds 10] [--jobs 2] [--shapes burst,tv_spike]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from voiceop.scaling.policy import ScalingConfig
from voiceop.scaling.simulator import Call, simulate, summarize, trace_end
from voiceop.scaling.traces import HELD_OUT_SEEDS, SHAPES, TUNING_SEEDS, WARM_UP_SECONDS, trace

CONFIG = ScalingConfig(calls_per_pod=10, target_utilization=0.7, pod_startup_seconds=10.0, max_replicas=1000)
BASELINES = ("hpa", "hpa-plain", "keda", "keda-plain", "kpa", "agones")
BUILTINS = (("builtin", "fill-target"), ("builtin fill-full", "fill"), ("builtin spread", "spread"))


def hold_bound(calls: list[Call], config: ScalingConfig) -> float:
    """Pod-seconds of max(need over the last scale-down delay), need at target, per second,
    counted from 0 as the simulator counts (the warm-up before it fills the window)."""
    total = 0.0
    first = min(0, math.floor(min((c.start for c in calls), default=0.0)))
    end = int(trace_end(calls)) + 1
    for region in sorted({c.region for c in calls}):
        deltas = [0] * (end - first + 1)
        for call in (c for c in calls if c.region == region):
            deltas[math.floor(call.start) - first] += 1
            deltas[min(end, math.floor(call.start + call.duration)) - first] -= 1
        live, window = 0, deque[tuple[int, int]]()
        for second in range(first, end):
            live += deltas[second - first]
            need = max(1, math.ceil(live / (config.calls_per_pod * config.target_utilization)))
            while window and window[-1][1] <= need:
                window.pop()
            window.append((second, need))
            while window[0][0] < second - config.scale_down_delay_seconds:
                window.popleft()
            if second >= 0:
                total += window[0][1]
    return total


def run_trace(shape: str, seed: int) -> dict[str, Any]:
    """Every policy on one trace: {row: {delay: summary}}, plus the oracle and hold bounds."""
    calls = trace(shape, seed)
    oracle = summarize("oracle", simulate(calls, "oracle", CONFIG))["pod_seconds"]
    out: dict[str, Any] = {"oracle": oracle, "hold": {}, "rows": {}}
    for delay in (300.0, 60.0):
        config = replace(CONFIG, scale_down_delay_seconds=delay)
        out["hold"][delay] = hold_bound(calls, config)
        for row, placement in BUILTINS:
            out["rows"].setdefault(row, {})[delay] = summarize(
                row, simulate(calls, "builtin", config, placement)
            )
    for policy in BASELINES:
        out["rows"][policy] = {300.0: summarize(policy, simulate(calls, policy, CONFIG))}
    return out


def fmt(values: list[float], digits: int = 2) -> str:
    return f"{statistics.fmean(values):.{digits}f}/{max(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per shape (0..N-1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    seeds = list(range(args.seeds))
    jobs = [(shape, seed) for shape in shapes for seed in seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(zip(jobs, pool.map(run_trace, *zip(*jobs, strict=True)), strict=True))

    print(
        f"{len(shapes)} shapes x {len(seeds)} seeds; 10 calls/pod, target 0.7, 10 s start-up; "
        f"counted after a {WARM_UP_SECONDS / 60:.0f} min warm-up; mean/worst over the seeds"
    )
    header = (
        f"{'shape':<14} {'seeds':<6} {'policy':<20} {'delay':>5} {'rejected %':>13} {'dropped':>9} "
        f"{'pod-s/oracle':>13} {'pod-s/hold':>11} {'p95>SLO %':>11}"
    )
    verdicts: list[tuple[str, str, str, bool]] = []
    for group, group_seeds in (("0-4", TUNING_SEEDS), ("5-9", HELD_OUT_SEEDS)):
        print()
        print(f"seeds {group} ({'tuning' if group == '0-4' else 'held out'})")
        print(header)
        for shape in shapes:
            runs = [results[(shape, s)] for s in group_seeds if (shape, s) in results]
            if not runs:
                continue
            for row in [r for r, _ in BUILTINS] + list(BASELINES):
                for delay in sorted(runs[0]["rows"][row], reverse=True):
                    summaries = [r["rows"][row][delay] for r in runs]
                    print(
                        f"{shape:<14} {group:<6} {row:<20} {delay:>5.0f} "
                        f"{fmt([s['rejected_pct'] for s in summaries], 3):>13} "
                        f"{fmt([s['dropped'] for s in summaries], 0):>9} "
                        f"{fmt([s['pod_seconds'] / r['oracle'] for s, r in zip(summaries, runs, strict=True)]):>13} "
                        f"{fmt([s['pod_seconds'] / r['hold'][delay] for s, r in zip(summaries, runs, strict=True)]):>11} "
                        f"{fmt([s['over_slo_pct'] for s in summaries], 1):>11}"
                    )
            verdicts += judge(shape, group, runs)
    print()
    for shape, group, criterion, holds in verdicts:
        print(f"{'PASS' if holds else 'FAIL'}  {shape:<14} seeds {group}  {criterion}")


def judge(shape: str, group: str, runs: list[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    """The criteria of the builtin policy as it ships, on every seed of the group."""

    def every(check: Any) -> bool:
        return all(check(r) for r in runs)

    def b(r: dict[str, Any], delay: float = 300.0) -> dict[str, Any]:
        return r["rows"]["builtin"][delay]

    def baseline_cost_and_slo(r: dict[str, Any]) -> bool:
        # Lowest p95-over-SLO share at equal or lower pod-seconds than each baseline it beats.
        mine = b(r)
        return all(
            mine["over_slo_pct"] <= r["rows"][p][300.0]["over_slo_pct"]
            for p in BASELINES
            if mine["pod_seconds"] <= r["rows"][p][300.0]["pod_seconds"]
        )

    return [
        (shape, group, "builtin drops no call (300 s and 60 s)", every(lambda r: b(r)["dropped"] == 0 == b(r, 60.0)["dropped"])),
        (shape, group, "builtin rejects <= 0.1%", every(lambda r: b(r)["rejected_pct"] <= 0.1 and b(r, 60.0)["rejected_pct"] <= 0.1)),
        (shape, group, "builtin rejects no more than any baseline", every(lambda r: all(b(r)["rejected"] <= r["rows"][p][300.0]["rejected"] for p in BASELINES))),
        (shape, group, "builtin pod-s <= 1.05x hold bound at 300 s", every(lambda r: b(r)["pod_seconds"] <= 1.05 * r["hold"][300.0])),
        (shape, group, "builtin pod-s <= 1.05x hold bound at 60 s", every(lambda r: b(r, 60.0)["pod_seconds"] <= 1.05 * r["hold"][60.0])),
        (shape, group, "builtin pod-s <= 1.5x perfect packing at 60 s", every(lambda r: b(r, 60.0)["pod_seconds"] <= 1.5 * r["oracle"])),
        (shape, group, "builtin p95>SLO lowest where it costs no more", every(baseline_cost_and_slo)),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
