"""Routing: nearest by caller country, measured latency, then distance; maintenance drains."""

from __future__ import annotations

from typing import Any

from conftest import example_object
from voiceop.api import parse_object
from voiceop.api.v1alpha1 import Region, VoiceAgent, VoiceEndpoint
from voiceop.render.routes import routes_for
from voiceop.routing import caller_country, rank_nearest
from voiceop.routing.policy import share_percent


def region(name: str, **spec: Any) -> Region:
    return parse_object(
        {"apiVersion": "voiceop.dev/v1alpha1", "kind": "Region", "metadata": {"name": name}, "spec": spec}
    )  # type: ignore[return-value]


def world(**region_changes: dict[str, Any]) -> dict[str, Region]:
    regions = {}
    for name in ("eu-west", "us-east", "ap-southeast"):
        raw = example_object("Region", name)
        raw["spec"].update(region_changes.get(name.replace("-", "_"), {}))
        regions[name] = parse_object(raw)
    return regions  # type: ignore[return-value]


def endpoint(name: str, **spec_changes: Any) -> VoiceEndpoint:
    raw = example_object("VoiceEndpoint", name)
    raw["spec"].update(spec_changes)
    return parse_object(raw)  # type: ignore[return-value]


def agent(name: str) -> VoiceAgent:
    return parse_object(example_object("VoiceAgent", name))  # type: ignore[return-value]


def route_table(routes: list[Any]) -> dict[str, list[tuple[str, int]]]:
    return {r.caller_country: [(t.name, t.weight) for t in r.regions] for r in routes}


def test_caller_country_comes_from_the_number() -> None:
    assert caller_country("+35315551234") == "IE"
    assert caller_country("+12025550143") == "US"
    assert caller_country("+6565550123") == "SG"
    assert caller_country("+80012345678") is None  # international freephone: no country


def test_home_region_first_then_measured_latency_then_distance() -> None:
    regions = world()
    candidates = list(regions.values())
    assert [r.name for r in rank_nearest(candidates, "DE")] == ["eu-west", "us-east", "ap-southeast"]
    # AU's home is ap-southeast; eu-west is measured closer to it (180 ms) than us-east (210 ms).
    assert [r.name for r in rank_nearest(candidates, "AU")] == ["ap-southeast", "eu-west", "us-east"]
    # No home region for Japan: great-circle distance decides.
    assert [r.name for r in rank_nearest(candidates, "JP")][0] == "ap-southeast"
    # No home, no location: Brazil is closer to Washington than to Dublin.
    assert [r.name for r in rank_nearest(candidates, "BR")][:2] == ["us-east", "eu-west"]


def test_measured_latency_beats_distance() -> None:
    near = region("near", location={"latitude": 50.1, "longitude": 8.7})
    far = region("far", location={"latitude": 40.7, "longitude": -74.0})
    home = region("home", countries=["GB"], latencyMs={"far": 20, "near": 90})
    assert [r.name for r in rank_nearest([near, far, home], "GB")] == ["home", "far", "near"]


def test_nearest_routes_per_country_with_failover_order() -> None:
    routes = route_table(routes_for(endpoint("billing-lines"), agent("billing"), world()))
    assert routes["IE"] == [("eu-west", 100), ("us-east", 0), ("ap-southeast", 0)]
    assert routes["US"] == [("us-east", 100), ("eu-west", 0), ("ap-southeast", 0)]
    assert routes["SG"][0] == ("ap-southeast", 100)
    assert list(routes)[-1] == "*" and routes["*"][0] == ("eu-west", 100)


def test_region_in_maintenance_gets_no_calls() -> None:
    routes = route_table(
        routes_for(endpoint("billing-lines"), agent("billing"), world(eu_west={"maintenance": True}))
    )
    assert routes["IE"] == [("us-east", 100), ("ap-southeast", 0)]
    assert all("eu-west" not in [n for n, _ in targets] for targets in routes.values())


def test_region_without_ready_pods_fails_over_only_when_failover_is_on() -> None:
    billing = agent("billing")
    on = route_table(routes_for(endpoint("billing-lines"), billing, world(), unavailable={"eu-west"}))
    assert on["IE"][0] == ("us-east", 100)
    off = endpoint("billing-lines", routing={"policy": "nearest", "failover": False})
    pinned_in_place = route_table(routes_for(off, billing, world(), unavailable={"eu-west"}))
    assert pinned_in_place["IE"] == [("eu-west", 100)]


def test_pinned_keeps_listed_order() -> None:
    pinned = endpoint(
        "billing-lines", routing={"policy": "pinned", "regions": [{"name": "us-east"}, {"name": "eu-west"}]}
    )
    assert route_table(routes_for(pinned, agent("billing"), world())) == {
        "*": [("us-east", 100), ("eu-west", 0)]
    }


def test_weighted_shares_add_up_to_100() -> None:
    routes = route_table(routes_for(endpoint("support-web"), agent("support"), world()))
    assert routes == {"*": [("us-east", 75), ("eu-west", 25)]}
    assert share_percent([1, 1, 1]) == [34, 33, 33]
    assert sum(share_percent([7, 3, 5, 11])) == 100


def test_no_usable_region_means_no_route() -> None:
    everything_down = world(eu_west={"maintenance": True}, us_east={"maintenance": True})
    assert routes_for(endpoint("support-web"), agent("support"), everything_down) == []
