"""The fewest calls any policy must refuse on a spike, if it holds the target's headroom.

A pod ordered when a spike begins serves a start-up later; until then the calls arriving
meet only the pods that ran before it. For a policy that runs pods for its live calls at the
target utilization (the hold bound's assumption) and orders more the very instant the spike
begins, at least

    arrivals in [onset, onset + start-up) - calls ending meanwhile - free slots at onset

calls are refused. No policy that waits for a signal does better; one that does better holds
more idle pods all day. Per seed of the generated `tv_spike` and `burst` traces, at
autoscale.py's 10 calls per pod, target 0.7, 10 s start-up:

    python benchmarks/spike_bound.py
"""

from __future__ import annotations

import math

from autoscale import CONFIG
from voiceop.scaling.traces import HELD_OUT_SEEDS, SPIKES, TUNING_SEEDS, onset, trace


def fewest_refused(shape: str, seed: int) -> tuple[int, int]:
    """(calls that must be refused, calls counted) for one trace."""
    calls = trace(shape, seed)
    start, startup = onset(shape, seed), CONFIG.pod_startup_seconds
    live = sum(1 for c in calls if c.start < start < c.start + c.duration)
    per_pod = CONFIG.calls_per_pod
    free = math.ceil(live / (per_pod * CONFIG.target_utilization)) * per_pod - live
    arriving = sum(1 for c in calls if start <= c.start < start + startup)
    ending = sum(1 for c in calls if c.start < start <= c.start + c.duration < start + startup)
    return max(0, arriving - ending - free), sum(1 for c in calls if c.start >= 0)


def main() -> None:
    print(f"{'shape':<10} {'seed':>4} {'refused at least':>17} {'of calls':>9} {'%':>7}  verdict vs <= 0.1%")
    for shape in SPIKES:
        for seed in (*TUNING_SEEDS, *HELD_OUT_SEEDS):
            refused, counted = fewest_refused(shape, seed)
            share = 100 * refused / counted
            print(
                f"{shape:<10} {seed:>4} {refused:>17} {counted:>9} {share:>7.3f}  "
                f"{'reachable' if share <= 0.1 else 'UNREACHABLE at the target headroom'}"
            )


if __name__ == "__main__":
    main()
