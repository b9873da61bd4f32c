"""How much any choice of which pods to drain could save: builtin as it ships, against builtin
whose drains are chosen knowing when every call will end.

At scale-in builtin drains the serving pods with the fewest calls. A drained pod runs until its
last call ends, so the cost left over the hold bound is mostly draining pods (at a 60 s delay
the serving set alone is ~0.99x the bound). A choice that knew each call's end (no operator
can: the best it could read is the calls' ages, if the media contract exposed them) would
drain the pods whose last call ends first; no choice by what an operator can know does better.
If even that stays over 1.05x the hold bound, #15's cost criteria cannot be met by the drain
choice, only by moving calls (which SIP media cannot) or by holding fewer pods (which the hold
forbids). Same pods, placement and policy otherwise; autoscale.py's config:

    python benchmarks/drain_choice.py [--seeds 10] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from autoscale import CONFIG, hold_bound
from voiceop.scaling.policy import Decision
from voiceop.scaling.simulator import Call, RegionSim, SimPod, Simulation, simulate
from voiceop.scaling.traces import SHAPES, trace

DELAYS = (300.0, 60.0)


class ClairvoyantDrain(RegionSim):
    """Drains as many pods as the policy asked, starting ones first as the policy does, then
    the serving pods whose last call ends soonest (each call's end noted when it is placed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends: dict[int, float] = {}

    def place(self, call_id: int, call: Call, sim: Simulation) -> None:
        self.ends[call_id] = call.start + call.duration
        super().place(call_id, call, sim)

    def apply_decision(self, decision: Decision, now: float, sim: Simulation) -> None:
        if decision.drain:
            pods = [p for p in self.pods.values() if p.state in ("starting", "serving")]
            starting = sorted((p for p in pods if p.state == "starting"), key=lambda p: p.name)
            serving = sorted((p for p in pods if p.state == "serving"), key=lambda p: self._last_end(p, now))
            chosen = (starting + serving)[: len(decision.drain)]
            decision = replace(decision, drain=tuple(p.name for p in chosen))
        super().apply_decision(decision, now, sim)

    def _last_end(self, pod: SimPod, now: float) -> float:
        return max((self.ends[c] for c in pod.calls), default=now)


def pod_seconds(calls: list[Call], delay: float, clairvoyant: bool) -> float:
    config = replace(CONFIG, scale_down_delay_seconds=delay)
    region_type = ClairvoyantDrain if clairvoyant else RegionSim
    results = simulate(calls, "builtin", config, "fill-target", region_type).values()
    assert all(r.dropped == 0 for r in results)
    return sum(r.pod_seconds for r in results)


def run(shape: str, seed: int) -> list[tuple[Any, ...]]:
    calls = trace(shape, seed)
    rows = []
    for delay in DELAYS:
        hold = hold_bound(calls, replace(CONFIG, scale_down_delay_seconds=delay))
        shipped, knowing = pod_seconds(calls, delay, False) / hold, pod_seconds(calls, delay, True) / hold
        rows.append((shape, seed, delay, shipped, knowing))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per shape (0..N-1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    jobs = [(shape, seed) for shape in SHAPES for seed in range(args.seeds)]
    table: dict[tuple[str, float], list[tuple[float, float]]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for rows in pool.map(run, *zip(*jobs, strict=True)):
            for shape, _, delay, shipped, knowing in rows:
                table.setdefault((shape, delay), []).append((shipped, knowing))
    print(
        f"pod-seconds / hold bound, mean/worst over seeds 0-{args.seeds - 1}: builtin as shipped (fewest calls"
    )
    print("drained first) vs drains chosen knowing when every call ends (no operator can);")
    print("10 calls/pod, target 0.7, 10 s start-up")
    print(f"{'shape':<14} {'delay':>5} {'shipped':>11} {'knowing':>11}  verdict vs <= 1.05x on every seed")
    for (shape, delay), pairs in table.items():
        shipped, knowing = [p[0] for p in pairs], [p[1] for p in pairs]
        verdict = "within" if max(knowing) <= 1.05 else "OVER even knowing every call's end"
        print(
            f"{shape:<14} {delay:>5.0f} {statistics.fmean(shipped):>5.3f}/{max(shipped):.3f} "
            f"{statistics.fmean(knowing):>5.3f}/{max(knowing):.3f}  {verdict}"
        )


if __name__ == "__main__":
    main()
