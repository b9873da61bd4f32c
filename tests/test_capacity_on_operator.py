"""A Region's capacity.maxMediaPods holds while many agents are created at once.

kopf reconciles agents concurrently; each new Deployment's replicas are the agent's minimum
within what the other agents' Deployments leave of the region. Counted from the cache alone,
agents created together each saw the region before the others' applies answered (and the
scaler's tick, from a snapshot taken at its start, before the creates meanwhile), so all got
their minimum: the region ran past its capacity until a later tick scaled them back (34 scale
patches when 300 agents converged in benchmarks/reconcile.py). Now a decided count is counted at
once (ClusterCache.reserve_replicas and the scaler's scale)."""

from __future__ import annotations

import threading
from typing import Any

from harness import (
    Cluster,
    ProbeTarget,
    condition,
    loopback_cluster,
    loopback_examples,
    running_operator,
    wait_for,
)
from test_operator import NS, example

CAPACITY = 60  # eu-west's capacity.maxMediaPods in the examples
AGENTS = 40  # billing's copies, each wanting 2 pods in eu-west: 80 > 60


def eu_west_replicas(cluster: Cluster) -> int:
    rtype = cluster.store.type_of_kind("apps/v1", "Deployment")
    items, _ = cluster.store.list(rtype, NS, "voiceop.dev/region=eu-west")
    return sum((d.get("spec") or {}).get("replicas", 1) for d in items)


class Peak:
    """The most replicas eu-west's Deployments asked for at once, sampled every 10 ms."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.most, self._stop = cluster, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.most = max(self.most, eu_west_replicas(self.cluster))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def copies_of_billing(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    copies = []
    for index in range(AGENTS):
        agent = example(examples, "VoiceAgent", "billing")
        agent["metadata"]["name"] = f"billing-{index:02d}"
        copies.append(agent)
    return copies


def test_agents_created_together_never_ask_a_region_for_more_pods_than_its_capacity() -> None:
    with ProbeTarget() as probe, loopback_cluster() as cluster:
        examples = loopback_examples(probe)
        cluster.apply_all([o for o in examples if o["kind"] in ("Namespace", "Region", "AIBackend")])
        with running_operator(cluster), Peak(cluster) as peak:
            cluster.apply_all(copies_of_billing(examples))
            wait_for(
                lambda: all(
                    condition(cluster.get("VoiceAgent", NS, f"billing-{i:02d}"), "Ready").get("status")
                    == "True"
                    for i in range(AGENTS)
                ),
                timeout=120,
                what=f"{AGENTS} agents Ready",
            )
            settled = eu_west_replicas(cluster)
    assert peak.most <= CAPACITY, (
        f"eu-west's Deployments asked for {peak.most} pods at once (capacity {CAPACITY})"
    )
    assert settled == CAPACITY  # the capacity is shared out, not left idle
