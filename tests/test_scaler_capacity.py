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
    assert scaler.cache.replica_count.by_region == {"eu-west": 4 + 20 + 15, "us-east": 7}
    scaler.cache.upsert(deployment("sales", "eu-west", 30, rv="2"))
    assert eu_west_cap(scaler) == 60 - 30 - 15


def test_a_share_counts_the_creates_and_scales_decided_but_not_yet_answered() -> None:
    """An agent's share is what the others leave, counting what is decided and not yet written:
    a Deployment about to be created (reserved) and one the scaler is scaling. A watch event of
    the agent's own Deployment moves its own part, never the others' share."""
    scaler = Scaler(client=None, cache=a_cache({"sales": 20}, own=4), reconciler=None)  # type: ignore[arg-type]
    cache = scaler.cache
    cache.reserve_replicas(NS, "support-eu-west", "eu-west", 6)  # support's create is in flight
    assert eu_west_cap(scaler) == 60 - 20 - 6
    cache.replica_count.set(NS, "sales-eu-west", "eu-west", 25)  # the scaler is scaling sales up
    assert eu_west_cap(scaler) == 60 - 25 - 6
    cache.upsert(deployment("billing", "eu-west", 9, rv="2"))  # billing's own watch event
    assert eu_west_cap(scaler) == 60 - 25 - 6
    assert cache.replica_count.by_region["eu-west"] == 9 + 25 + 6


def test_a_reservation_gives_way_to_the_created_deployment_and_goes_if_the_create_fails() -> None:
    cache = a_cache({}, own=4)
    cache.reserve_replicas(NS, "support-eu-west", "eu-west", 6)
    cache.upsert(deployment("support", "eu-west", 3))  # created (the API's answer or its watch event)
    cache.reserve_replicas(NS, "support-eu-west", "eu-west", 6)  # a later decision: the live count stands
    assert cache.replica_count.by_region["eu-west"] == 4 + 3
    cache.release_replicas(NS, "support-eu-west")  # only a reservation is released
    assert cache.replica_count.by_region["eu-west"] == 4 + 3

    cache.reserve_replicas(NS, "sales-eu-west", "eu-west", 2)
    cache.release_replicas(NS, "sales-eu-west")  # its create failed
    assert cache.replica_count.by_region["eu-west"] == 4 + 3
