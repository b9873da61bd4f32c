"""Which region serves which caller: pure ranking of regions per caller country.

Policy `nearest` ranks a caller's candidate regions by
1. home: regions whose `spec.countries` list the caller's country come first;
2. measured latency: `spec.latencyMs` between a home region and the candidate (either side);
3. great-circle distance from the caller's country to the region's `spec.location`;
then by name, so the order is total and stable. `pinned` keeps the listed order; `weighted`
shares calls by weight. Regions in maintenance never receive new calls.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import phonenumbers

from voiceop.api.countries import country_coordinates
from voiceop.api.v1alpha1 import Region, VoiceAgent, VoiceEndpoint
from voiceop.routing.geo import great_circle_km

ANY_CALLER = "*"


@dataclass(frozen=True)
class RouteTarget:
    name: str
    target: str
    weight: int


@dataclass(frozen=True)
class Route:
    caller_country: str
    regions: tuple[RouteTarget, ...]

    def to_wire(self) -> dict[str, object]:
        return {
            "match": {"callerCountry": self.caller_country},
            "regions": [{"name": r.name, "target": r.target, "weight": r.weight} for r in self.regions],
        }


def caller_country(phone_number: str) -> str | None:
    """ISO country of an E.164 number (+49... -> DE); None for non-geographic numbers."""
    try:
        parsed = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "001" else None


def _measured_ms(home: Region, candidate: Region) -> float:
    if home.name == candidate.name:
        return 0.0
    measured = [
        ms
        for ms in (home.spec.latency_ms.get(candidate.name), candidate.spec.latency_ms.get(home.name))
        if ms is not None
    ]
    return float(min(measured)) if measured else math.inf


def _distance_km(country: str, region: Region) -> float:
    origin = country_coordinates().get(country)
    if origin is None or region.spec.location is None:
        return math.inf
    return great_circle_km(
        origin.latitude, origin.longitude, region.spec.location.latitude, region.spec.location.longitude
    )


def rank_nearest(candidates: Sequence[Region], country: str) -> list[Region]:
    """Candidates in order of preference for a caller from `country`."""
    homes = [region for region in candidates if country in region.spec.countries]

    def key(region: Region) -> tuple[int, float, float, str]:
        is_home = region in homes
        latency = 0.0 if is_home else min((_measured_ms(h, region) for h in homes), default=math.inf)
        return (0 if is_home else 1, latency, _distance_km(country, region), region.name)

    return sorted(candidates, key=key)


def share_percent(weights: Sequence[int]) -> list[int]:
    """Integer percentages proportional to weights that add up to 100 (largest remainder)."""
    total = sum(weights)
    if total == 0:
        return [0 for _ in weights]
    exact = [100 * w / total for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


def _preferred_first(names: Sequence[str], targets: Mapping[str, str]) -> tuple[RouteTarget, ...]:
    return tuple(RouteTarget(name, targets[name], 100 if i == 0 else 0) for i, name in enumerate(names))


def endpoint_routes(
    endpoint: VoiceEndpoint,
    agent: VoiceAgent,
    regions: Mapping[str, Region],
    targets: Mapping[str, str],
    unavailable: Collection[str] = (),
) -> list[Route]:
    """Routes of an endpoint, most specific first, ending with the catch-all `*` route.

    `targets` maps region name -> address of the agent's media Service there; `unavailable`
    names regions where the agent has no ready pods. Regions in maintenance are always left
    out; unavailable ones only when `routing.failover` is on (else calls stay where they are
    routed, e.g. for data residency). Without failover each route keeps its first region only.
    """
    routing = endpoint.spec.routing
    agent_regions = [r.name for r in agent.spec.regions if r.name in regions and r.name in targets]
    listed = [r.name for r in routing.regions if r.name in agent_regions]
    pool = listed if listed else agent_regions
    skip = set(unavailable) if routing.failover else set()
    open_regions = [n for n in pool if not regions[n].spec.maintenance]
    # With no region ready at all there is nothing to fail over to: route as if all were, so
    # calls go where pods will be (a region in maintenance still takes none).
    usable = [n for n in open_regions if n not in skip] or open_regions
    if not usable:
        return []

    def cut(route_regions: tuple[RouteTarget, ...]) -> tuple[RouteTarget, ...]:
        return route_regions if routing.failover else route_regions[:1]

    if routing.policy == "weighted":
        weight_of = {r.name: r.weight for r in routing.regions}
        weighted = sorted(usable, key=lambda n: -weight_of[n])  # stable: ties keep listed order
        shares = share_percent([weight_of[n] for n in weighted])
        if sum(shares) == 0:  # every region with weight went away: fail over by listed order
            shares = [100 if i == 0 else 0 for i in range(len(weighted))]
        kept = [
            RouteTarget(n, targets[n], s)
            for n, s in zip(weighted, shares, strict=False)
            if s > 0 or routing.failover
        ]
        return [Route(ANY_CALLER, tuple(kept))]
    if routing.policy == "pinned":
        return [Route(ANY_CALLER, cut(_preferred_first(usable, targets)))]

    candidates = [regions[n] for n in usable]
    countries = {c for region in candidates for c in region.spec.countries}
    countries |= {c for c in map(caller_country, endpoint.spec.phone_numbers) if c}
    routes = [
        Route(country, cut(_preferred_first([r.name for r in rank_nearest(candidates, country)], targets)))
        for country in sorted(countries)
    ]
    # Callers from anywhere else: the agent's own order of regions.
    routes.append(Route(ANY_CALLER, cut(_preferred_first(usable, targets))))
    return routes
