"""Region-affinity routing of callers: pure functions, no I/O."""

from voiceop.routing.policy import (
    ANY_CALLER,
    Route,
    RouteTarget,
    caller_country,
    endpoint_routes,
    rank_nearest,
)

__all__ = ["ANY_CALLER", "Route", "RouteTarget", "caller_country", "endpoint_routes", "rank_nearest"]
