"""The pure decisions the reconcilers hand over to: failover choice, and every kind's status."""

from __future__ import annotations

from typing import Any

from conftest import example_object
from voiceop.api import parse_object
from voiceop.api.v1alpha1 import AIBackend, VoiceAgent
from voiceop.backends import active_backend, backend_available
from voiceop.status import endpoint_status, refused_status, region_status, scaling_limited

NOW, LATER = "2026-12-02T10:00:00Z", "2026-12-02T10:05:00Z"


def backend(name: str, available: str | None) -> AIBackend:
    raw = example_object("AIBackend", "openai-realtime")
    raw["metadata"]["name"] = name
    if available is not None:
        raw["status"] = {
            "conditions": [
                {
                    "type": "Available",
                    "status": available,
                    "reason": "Probed",
                    "message": "",
                    "lastTransitionTime": NOW,
                }
            ]
        }
    parsed = parse_object(raw)
    assert isinstance(parsed, AIBackend)
    return parsed


def billing() -> VoiceAgent:
    parsed = parse_object(example_object("VoiceAgent", "billing"))
    assert isinstance(parsed, VoiceAgent)
    return parsed


def test_an_unprobed_backend_counts_as_available_and_a_failed_probe_does_not() -> None:
    assert backend_available(backend("a", None))
    assert backend_available(backend("a", "Unknown"))
    assert not backend_available(backend("a", "False"))


def test_the_active_backend_is_the_first_available_in_the_agents_order() -> None:
    agent = billing()
    first, second = (ref.name for ref in agent.spec.backends)
    assert active_backend(agent, {first: backend(first, "True"), second: backend(second, "True")}) == first
    assert active_backend(agent, {first: backend(first, "False"), second: backend(second, "True")}) == second
    assert active_backend(agent, {first: backend(first, "False"), second: backend(second, "False")}) is None
    assert active_backend(agent, {second: backend(second, "True")}) == second  # first one missing


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_a_region_in_maintenance_is_not_ready_and_keeps_its_transition_time_until_it_flips() -> None:
    serving = region_status({}, 3, maintenance=False, pods=4, calls=9, now=NOW)
    assert serving["mediaPods"] == 4 and serving["activeCalls"] == 9 and serving["observedGeneration"] == 3
    assert condition(serving, "Ready")["status"] == "True"
    again = region_status(serving, 3, maintenance=False, pods=5, calls=2, now=LATER)
    assert condition(again, "Ready")["lastTransitionTime"] == NOW
    drained = region_status(again, 4, maintenance=True, pods=5, calls=2, now=LATER)
    ready = condition(drained, "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", "Maintenance", LATER)


def test_an_endpoint_without_routes_is_not_ready() -> None:
    routed = endpoint_status({}, 1, [{"match": {"callerCountry": "*"}, "regions": []}], NOW)
    assert condition(routed, "Ready")["reason"] == "Routed"
    unrouted = endpoint_status(routed, 2, [], LATER)
    assert condition(unrouted, "Ready")["reason"] == "NoRegionAvailable"
    assert unrouted["routes"] == []


def test_a_refused_object_keeps_the_rest_of_its_status() -> None:
    live = {"activeCalls": 7, "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": NOW}]}
    refused = refused_status(live, 5, "InvalidSpec", "spec.regions[0].name: Required value", LATER)
    assert refused["activeCalls"] == 7 and refused["observedGeneration"] == 5
    ready = condition(refused, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "spec.regions[0].name: Required value"


def test_scaling_limited_names_each_limited_region_in_order() -> None:
    assert scaling_limited({"us-east": None, "eu-west": None}).status == "False"
    limited = scaling_limited({"us-east": "maxReplicas 30", "eu-west": "Region capacity 12", "ap": None})
    assert (limited.status, limited.reason) == ("True", "LimitReached")
    assert limited.message == "eu-west: Region capacity 12; us-east: maxReplicas 30"
