"""CPU the builtin scaler spends per 2 s tick, for many agents, regions and media pods.

Every region of every agent gets one decision per tick (`voiceop.scaling.policy.decide`, with
its memory, on live calls that wander like real traffic). The baseline, measured in the same
run, is the least any scaler must do: read each pod's calls once and sum them per region.
The last column is the share of the 2 s tick the decisions take on one core: what is left
for the operator's watches and writes.

    python benchmarks/scaler.py [--ticks N]
"""

from __future__ import annotations

import argparse
import random
import time

from voiceop.scaling.policy import PodView, ScalerMemory, ScalingConfig, decide

TICK_SECONDS = 2.0
TARGET_SHARE = 0.02  # the decisions for 900 regions take at most 2% of a tick
CONFIG = ScalingConfig(calls_per_pod=10, max_replicas=200)


def traffic(regions: int, pods_per_region: int, ticks: int, seed: int = 1) -> list[list[list[PodView]]]:
    """Per tick, per region: the pods and their live calls (a bounded random walk)."""
    rng = random.Random(seed)
    level = [rng.randint(10, 7 * pods_per_region) for _ in range(regions)]
    out = []
    for _ in range(ticks):
        tick = []
        for region in range(regions):
            level[region] = max(0, min(10 * pods_per_region, level[region] + rng.randint(-3, 3)))
            share, extra = divmod(level[region], pods_per_region)
            tick.append(
                [
                    PodView(f"r{region}-p{i}", "serving", share + (1 if i < extra else 0))
                    for i in range(pods_per_region)
                ]
            )
        out.append(tick)
    return out


def decisions(ticks: list[list[list[PodView]]], memories: list[ScalerMemory]) -> float:
    """Seconds per tick to decide every region."""
    started = time.perf_counter()
    for index, tick in enumerate(ticks):
        for region, pods in enumerate(tick):
            decide(pods, index * TICK_SECONDS, CONFIG, memories[region])
    return (time.perf_counter() - started) / len(ticks)


def sums(ticks: list[list[list[PodView]]]) -> float:
    """Seconds per tick to read every pod's calls once and sum them per region."""
    started = time.perf_counter()
    for tick in ticks:
        for pods in tick:
            sum(p.calls for p in pods)
    return (time.perf_counter() - started) / len(ticks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50)
    args = parser.parse_args()
    print(
        f"{'agents':>7} {'regions':>8} {'pods':>7} {'decide ms/tick':>15} {'sum ms/tick':>12} "
        f"{'ratio':>7} {'tick share':>11} {'target':>8} {'verdict':>8}"
    )
    for agents, pods_per_region in ((30, 4), (300, 4), (300, 20)):
        regions = agents * 3
        ticks = traffic(regions, pods_per_region, args.ticks)
        decide_s = decisions(ticks, [ScalerMemory() for _ in range(regions)])
        sum_s = sums(ticks)
        share = decide_s / TICK_SECONDS
        target, verdict = (
            ("<= 2%", "PASS" if share <= TARGET_SHARE else "FAIL") if regions >= 900 else ("-", "-")
        )
        print(
            f"{agents:>7} {regions:>8} {regions * pods_per_region:>7} {decide_s * 1000:>15.2f} "
            f"{sum_s * 1000:>12.2f} {decide_s / sum_s:>7.1f} {share:>10.1%} {target:>8} {verdict:>8}"
        )


if __name__ == "__main__":
    main()
