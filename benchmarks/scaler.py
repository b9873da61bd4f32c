"""CPU the builtin scaler spends per 2 s tick, for many agents, regions and media pods.

Every region of every agent gets one decision per tick (`voiceop.scaling.policy.decide`, with
its memory, on live calls that wander like real traffic). The baseline, measured in the same
run, is the least any scaler must do: read each pod's calls once and sum them per region.
The last column is the share of the 2 s tick the decisions take on one core: what is left
for the operator's watches and writes.

A second table times what the tick does around the decisions, from the operator's own cache:
each region's ScalingConfig (`Scaler.config_for`: bounds, the AIBackend's session quota, and
the share of a Region's `capacity.maxMediaPods` the other agents' Deployments leave, which
once scanned every Deployment per region), with the decisions' share added.

    python benchmarks/scaler.py [--ticks N]
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path
from typing import Any

from voiceop.api import is_voiceop_object
from voiceop.api.wire import AGENT_LABEL, MANAGED_BY, REGION_LABEL
from voiceop.controller.cache import ClusterCache
from voiceop.controller.scaler import Scaler
from voiceop.inputs.yamlio import read_manifests
from voiceop.render.names import media_name
from voiceop.scaling.policy import PodView, ScalerMemory, ScalingConfig, decide

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

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


def fleet_cache(agents: int) -> ClusterCache:
    """The examples' Regions (eu-west with a capacity) and AIBackends, `agents` copies of the
    billing agent, and each one's media Deployment in every region, as the operator caches them."""
    cache = ClusterCache()
    read, errors = read_manifests([str(EXAMPLES)])
    assert not errors, errors
    documents = [d.obj for d in read if is_voiceop_object(d.obj)]
    billing = next(o for o in documents if o["kind"] == "VoiceAgent" and o["metadata"]["name"] == "billing")
    objects = [o for o in documents if o["kind"] in ("Region", "AIBackend")]
    for index in range(agents):
        agent = copy.deepcopy(billing)
        agent["metadata"]["name"] = f"agent-{index:04d}"
        objects.append(agent)
    for obj in objects:
        obj["metadata"].update(uid=f"uid-{obj['metadata']['name']}", resourceVersion="1", generation=1)
        cache.upsert(obj)
        if obj["kind"] == "VoiceAgent":
            for region in obj["spec"]["regions"]:
                name = media_name(obj["metadata"]["name"], region["name"])
                deployment: dict[str, Any] = {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {
                        "name": name,
                        "namespace": obj["metadata"]["namespace"],
                        "uid": f"uid-{name}",
                        "resourceVersion": "1",
                        "labels": {
                            MANAGED_BY: "voiceop",
                            AGENT_LABEL: obj["metadata"]["name"],
                            REGION_LABEL: region["name"],
                        },
                    },
                    "spec": {"replicas": region.get("minReplicas", 1)},
                }
                cache.upsert(deployment)
    return cache


def configurations(cache: ClusterCache, repeats: int) -> tuple[float, int]:
    """Seconds per tick to build every region's ScalingConfig as the scaler's tick does, and
    how many regions that is."""
    scaler = Scaler(client=None, cache=cache, reconciler=None)  # type: ignore[arg-type]
    pairs = [(agent, r.name) for agent in cache.agents().values() for r in agent.spec.regions]
    started = time.perf_counter()
    for _ in range(repeats):
        for agent, region in pairs:
            scaler.config_for(agent, region)
    return (time.perf_counter() - started) / repeats, len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50)
    args = parser.parse_args()
    print(
        f"{'agents':>7} {'regions':>8} {'pods':>7} {'decide ms/tick':>15} {'sum ms/tick':>12} "
        f"{'ratio':>7} {'tick share':>11} {'target':>8} {'verdict':>8}"
    )
    decide_ms: dict[int, float] = {}  # regions -> decisions' ms per tick, 4 pods a region
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
        decide_ms.setdefault(regions, decide_s * 1000)
    print()
    print(
        f"{'agents':>7} {'regions':>8} {'config ms/tick':>15} {'+ decide ms':>12} {'tick share':>11} "
        f"{'target':>8} {'verdict':>8}"
    )
    for agents in (30, 300, 1000):
        config_s, regions = configurations(fleet_cache(agents), repeats=5)
        decide_part = decide_ms.get(regions, decide_ms[900] * regions / 900)  # 4 pods a region
        share = (config_s * 1000 + decide_part) / 1000 / TICK_SECONDS
        target, verdict = (
            ("<= 2%", "PASS" if share <= TARGET_SHARE else "FAIL") if regions == 900 else ("-", "-")
        )
        print(
            f"{agents:>7} {regions:>8} {config_s * 1000:>15.2f} {decide_part:>12.2f} {share:>10.1%} "
            f"{target:>8} {verdict:>8}"
        )


if __name__ == "__main__":
    main()
