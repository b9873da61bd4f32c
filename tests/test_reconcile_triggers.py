"""What a change to the cache wakes: everything it affects, and nothing for a change that is not one.

A watch event that repeats the version the cache holds (the echo of voiceop's own write, whose
answer is already there) wakes nothing; a Region's own status write wakes only the Region; the
writes a reconcile makes do not queue that reconcile again. Before these, 300 agents converging
ran ~1,500 agent reconciles (and ~2,000 more on a restart) where 600 do the same work."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from conftest import voiceop_examples
from voiceop.controller.cache import ClusterCache
from voiceop.controller.reconciler import Reconciler

NS = "contact-center"


def a_reconciler() -> Reconciler:
    """The examples in a cache, nothing queued (as after a pass over everything)."""
    reconciler = Reconciler(client=None, cache=ClusterCache())  # type: ignore[arg-type]
    for obj in voiceop_examples():
        obj = copy.deepcopy(obj)
        obj["metadata"].update(uid=f"uid-{obj['metadata']['name']}", resourceVersion="1", generation=1)
        reconciler.observe(obj, deleted=False)
    reconciler.queue._pending.clear()
    return reconciler


def queued(reconciler: Reconciler) -> set[tuple[str, str, str]]:
    keys = set(reconciler.queue._pending)
    reconciler.queue._pending.clear()
    return keys


def deployment(version: str, ready: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "billing-eu-west",
            "namespace": NS,
            "uid": "uid-deployment",
            "resourceVersion": version,
            "labels": {
                "app.kubernetes.io/managed-by": "voiceop",
                "voiceop.dev/agent": "billing",
                "voiceop.dev/region": "eu-west",
            },
        },
        "spec": {"replicas": 2},
        "status": {"readyReplicas": ready},
    }


def test_a_watch_event_repeating_the_version_held_wakes_nothing() -> None:
    reconciler = a_reconciler()
    reconciler.observe(deployment("10", ready=0), deleted=False)
    woken = {("agent", NS, "billing"), ("routes", NS, ""), ("region", "", "eu-west")}
    assert queued(reconciler) == woken
    reconciler.observe(deployment("10", ready=0), deleted=False)  # the echo of the apply
    assert queued(reconciler) == set()
    reconciler.observe(deployment("9", ready=0), deleted=False)  # older: not a change either
    assert queued(reconciler) == set()
    reconciler.observe(deployment("11", ready=2), deleted=False)  # the controller's status
    assert queued(reconciler) == woken
    reconciler.observe(deployment("11", ready=2), deleted=True)
    assert queued(reconciler) == woken
    reconciler.observe(deployment("11", ready=2), deleted=True)  # gone already (voiceop pruned it)
    assert queued(reconciler) == set()


def region(version: str, generation: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(
        next(o for o in voiceop_examples() if o["kind"] == "Region" and o["metadata"]["name"] == "eu-west")
    )
    obj["metadata"].update(uid="uid-eu-west", resourceVersion=version, generation=generation)
    if status is not None:
        obj["status"] = status
    return obj


def test_a_regions_status_wakes_the_region_and_its_spec_wakes_its_agents_and_routes() -> None:
    reconciler = a_reconciler()
    reconciler.observe(region("2", generation=1, status={"mediaPods": 4}), deleted=False)
    assert queued(reconciler) == {("region", "", "eu-west")}
    changed = region("3", generation=2, status={"mediaPods": 4})
    changed["spec"]["maintenance"] = True
    reconciler.observe(changed, deleted=False)
    assert {("region", "", "eu-west"), ("agent", NS, "billing"), ("routes", NS, "")} <= queued(reconciler)


def test_an_agents_status_wakes_the_agent_and_its_spec_wakes_the_routes_too() -> None:
    reconciler = a_reconciler()
    billing = copy.deepcopy(reconciler.cache.seen("VoiceAgent", NS, "billing").raw)  # type: ignore[union-attr]
    billing["metadata"]["resourceVersion"] = "2"
    billing["status"] = {"readyReplicas": 5}
    reconciler.observe(billing, deleted=False)
    assert queued(reconciler) == {("agent", NS, "billing")}
    billing = copy.deepcopy(billing)
    billing["metadata"].update(resourceVersion="3", generation=2)
    billing["spec"]["image"] = "ghcr.io/example/voice-runtime:2"
    reconciler.observe(billing, deleted=False)
    assert queued(reconciler) == {("agent", NS, "billing"), ("routes", NS, "")}


def test_the_writes_of_a_reconcile_do_not_queue_it_again_but_wake_the_rest() -> None:
    reconciler = a_reconciler()

    class Applying:
        async def reconcile(self, namespace: str, name: str) -> None:
            reconciler.cache.upsert(deployment("20", ready=0))  # an apply's answer

    reconciler.agents = Applying()  # type: ignore[assignment]
    asyncio.run(reconciler.reconcile(("agent", NS, "billing")))
    assert queued(reconciler) == {("routes", NS, ""), ("region", "", "eu-west")}
    reconciler.observe(deployment("21", ready=2), deleted=False)  # a change from outside: all of it
    assert ("agent", NS, "billing") in queued(reconciler)
