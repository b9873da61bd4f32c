"""Every autoscaling policy on the bundled traces: one table, ratios against the oracle.

At 10 s pod start-up, 10 calls per pod and target utilization 0.7 (scaleDownDelaySeconds at
its API default of 300 s). The oracle packs calls perfectly with no start-up time: the lower
bound of pod-seconds. The `hold bound` row is what a clairvoyant policy that keeps the
target utilization and the 300 s scale-down hold (the max of the need over the last 300 s)
would use: no real policy with that hold can go below it. A second table runs the builtin on
the burst trace at shorter delays, to show what the hold costs and what the call-safe drain
costs on its own (pods leave the serving set with calls on them and stay until those end).

    python benchmarks/autoscale.py [--plot-dir DIR]
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from dataclasses import replace
from pathlib import Path

from voiceop.scaling.baselines import POLICIES
from voiceop.scaling.policy import ScalingConfig
from voiceop.scaling.report import plot
from voiceop.scaling.simulator import Call, read_trace, simulate, summarize, trace_end

TRACES = Path(__file__).resolve().parent / "traces"
CONFIG = ScalingConfig(calls_per_pod=10, target_utilization=0.7, pod_startup_seconds=10.0, max_replicas=1000)


def hold_bound(calls: list[Call], config: ScalingConfig) -> float:
    """Pod-seconds of max(need over the last scale-down delay), need at target, per second."""
    total = 0.0
    end = int(trace_end(calls)) + 1
    for region in sorted({c.region for c in calls}):
        deltas = [0] * (end + 1)
        for call in (c for c in calls if c.region == region):
            deltas[int(call.start)] += 1
            deltas[min(end, int(call.start + call.duration))] -= 1
        live, window = 0, deque()
        for second in range(end):
            live += deltas[second]
            need = max(1, math.ceil(live / (config.calls_per_pod * config.target_utilization)))
            while window and window[-1][1] <= need:
                window.pop()
            window.append((second, need))
            while window[0][0] < second - config.scale_down_delay_seconds:
                window.popleft()
            total += window[0][1]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-dir", type=Path, help="write one PNG per trace here")
    args = parser.parse_args()
    verdicts = []
    print(
        f"{'trace':<16} {'policy':<10} {'rejected %':>11} {'dropped':>8} {'pod-s/oracle':>13} "
        f"{'to capacity s':>14} {'scale ev':>9}"
    )
    for trace in ("diurnal", "burst", "two_regions"):
        calls = read_trace(TRACES / f"{trace}.csv")
        results = {policy: simulate(calls, policy, CONFIG) for policy in POLICIES}
        rows = {policy: summarize(policy, result) for policy, result in results.items()}
        oracle = rows["oracle"]["pod_seconds"]
        for policy, row in rows.items():
            print(
                f"{trace:<16} {policy:<10} {row['rejected_pct']:>11.3f} {row['dropped']:>8} "
                f"{row['pod_seconds'] / oracle:>13.2f} {row['time_to_capacity_s']:>14.1f} {row['scale_events']:>9}"
            )
        print(f"{trace:<16} {'hold bound':<10} {'':>11} {'':>8} {hold_bound(calls, CONFIG) / oracle:>13.2f}")
        builtin, hpa = rows["builtin"], rows["hpa"]
        verdicts += [
            (trace, "builtin drops no call", builtin["dropped"] == 0),
            (trace, "builtin rejects <= 0.1%", builtin["rejected_pct"] <= 0.1),
            (trace, "builtin pod-seconds <= 1.8x oracle", builtin["pod_seconds"] <= 1.8 * oracle),
            (trace, "builtin rejects no more than hpa", builtin["rejected"] <= hpa["rejected"]),
        ]
        if args.plot_dir:
            args.plot_dir.mkdir(parents=True, exist_ok=True)
            plot(results, args.plot_dir / f"{trace}.png", f"{trace}: 10 calls/pod, 10 s start-up, target 0.7")
    print()
    print("burst, builtin by scaleDownDelaySeconds (the hold bound is what the hold alone costs)")
    print(f"{'delay s':>8} {'rejected %':>11} {'dropped':>8} {'pod-s/oracle':>13} {'hold bound':>11}")
    calls = read_trace(TRACES / "burst.csv")
    oracle = summarize("oracle", simulate(calls, "oracle", CONFIG))["pod_seconds"]
    for delay in (0.0, 60.0, 120.0, 300.0):
        config = replace(CONFIG, scale_down_delay_seconds=delay)
        row = summarize("builtin", simulate(calls, "builtin", config))
        print(
            f"{delay:>8.0f} {row['rejected_pct']:>11.3f} {row['dropped']:>8} "
            f"{row['pod_seconds'] / oracle:>13.2f} {hold_bound(calls, config) / oracle:>11.2f}"
        )
    print()
    print("builtin, pods filled in a fixed order (the SIP edge) against spread (least-connections)")
    print(
        f"{'trace':<12} {'delay s':>8} {'placement':<10} {'rejected %':>11} {'dropped':>8} {'pod-s/oracle':>13}"
    )
    for trace in ("diurnal", "burst", "two_regions"):
        calls = read_trace(TRACES / f"{trace}.csv")
        oracle = summarize("oracle", simulate(calls, "oracle", CONFIG))["pod_seconds"]
        for delay in (60.0, 300.0):
            config = replace(CONFIG, scale_down_delay_seconds=delay)
            for placement in ("spread", "fill"):
                row = summarize("builtin", simulate(calls, "builtin", config, placement))
                print(
                    f"{trace:<12} {delay:>8.0f} {placement:<10} {row['rejected_pct']:>11.3f} {row['dropped']:>8} "
                    f"{row['pod_seconds'] / oracle:>13.2f}"
                )
    print()
    for trace, criterion, holds in verdicts:
        print(f"{'PASS' if holds else 'FAIL'}  {trace:<12} {criterion}")


if __name__ == "__main__":
    main()
