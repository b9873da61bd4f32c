"""A Region's capacity.maxMediaPods is shared by every agent there: each agent's cap is what the
other agents' Deployments in that region leave."""

from __future__ import annotations

import copy
from typing import Any

from conftest import voiceop_examples
from voiceop.api.wire import AGENT_LABEL, MANAGED_BY, REGION_LABEL
from voiceop.controller.cache import ClusterCache
from voiceop.controller.scaler import Scaler
from voiceop.render.names import media_name

NS = "contact-center"
CAP = "Region eu-west capacity.maxMediaPods"


def deployment(agent: str, region: str, replicas: int, rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": media_name(agent, region),
            "namespace": NS,
            "uid": f"uid-{agent}-{region}",
            "resourceVersion": rv,
            "labels": {MANAGED_BY: "voiceop", AGENT_LABEL: agent, REGION_LABEL: region},
        },
        "spec": {"replicas": replicas},
    }


def a_cache(others: dict[str, int], own: int) -> ClusterCache:
    """billing in eu-west (capacity 60 in the example) with `own` replicas, other agents with theirs."""
    cache = ClusterCache()
    for obj in voiceop_examples():
        obj = copy.deepcopy(obj)
        obj["metadata"].update(uid=f"uid-{obj['metadata']['name']}", resourceVersion="1", generation=1)
        cache.upsert(obj)
    cache.upsert(deployment("billing", "eu-west", own))
    cache.upsert(deployment("billing", "us-east", 7))  # another region's pods do not count
    for agent, replicas in others.items():
        cache.upsert(deployment(agent, "eu-west", replicas))
    return cache


def eu_west_cap(scaler: Scaler) -> int:
    billing = scaler.cache.agents(NS)[(NS, "billing")]
    return dict(scaler.config_for(billing, "eu-west").caps)[CAP]


def test_an_agents_share_of_a_region_is_what_the_others_leave() -> None:
    scaler = Scaler(client=None, cache=a_cache({"sales": 20, "support": 15}, own=4), reconciler=None)  # type: ignore[arg-type]
    assert eu_west_cap(scaler) == 60 - 20 - 15
    assert scaler.count_replicas().by_region == {"eu-west": 4 + 20 + 15, "us-east": 7}
    scaler.cache.upsert(deployment("sales", "eu-west", 30, rv="2"))
    assert eu_west_cap(scaler) == 60 - 30 - 15


def test_a_share_counted_in_a_tick_follows_the_ticks_own_scaling() -> None:
    """Within a tick the count is one snapshot, moved only by the tick's own decisions: a newer
    watch event of the agent's own Deployment does not make it count itself twice or not at all."""
    scaler = Scaler(client=None, cache=a_cache({"sales": 20}, own=4), reconciler=None)  # type: ignore[arg-type]
    count = scaler.count_replicas()
    assert count.others("eu-west", NS, "billing-eu-west") == 20
    count.set(NS, "sales-eu-west", "eu-west", 25)  # the tick scaled sales up
    assert count.others("eu-west", NS, "billing-eu-west") == 25
    assert count.others("eu-west", NS, "sales-eu-west") == 4
    scaler.cache.upsert(deployment("billing", "eu-west", 9, rv="2"))  # a watch event mid-tick
    scaler._replicas = count
    assert eu_west_cap(scaler) == 60 - 25
