"""The namespace's `voiceop-routes` ConfigMap: what a SIP edge or SBC reads to place calls."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from voiceop.api.v1alpha1 import Region, VoiceAgent, VoiceEndpoint
from voiceop.api.wire import ROUTES_CONFIGMAP
from voiceop.render import names
from voiceop.render.metadata import child_labels, object_metadata
from voiceop.render.templates import load
from voiceop.routing import Route, endpoint_routes

ROUTES_KEY = "routes.json"


def media_targets(agent: VoiceAgent) -> dict[str, str]:
    """Region name -> SIP URI of the agent's media Service there."""
    sip = agent.spec.transport.sip
    scheme = "sips" if sip.protocol == "TLS" else "sip"
    transport = "udp" if sip.protocol == "UDP" else "tcp"
    return {
        r.name: f"{scheme}:{names.media_name(agent.name, r.name)}.{agent.namespace}.svc:{sip.port};transport={transport}"
        for r in agent.spec.regions
    }


def routes_for(
    endpoint: VoiceEndpoint,
    agent: VoiceAgent,
    regions: Mapping[str, Region],
    unavailable: Collection[str] = (),
) -> list[Route]:
    return endpoint_routes(endpoint, agent, regions, media_targets(agent), unavailable)


def handoff_of(agent: VoiceAgent | None) -> dict[str, str] | None:
    """Where the agent's media pods hand callers to: the edge relays there, and only there."""
    fallback = agent.spec.fallback if agent is not None else None
    if fallback is None or fallback.human_handoff is None:
        return None
    return fallback.human_handoff.to_wire()


def routes_configmap(
    namespace: str,
    endpoints: Sequence[VoiceEndpoint],
    routes: Mapping[str, Sequence[Route]],
    agents: Mapping[str, VoiceAgent],
) -> dict[str, Any]:
    """One ConfigMap for all endpoints of a namespace; `routes` is by endpoint name."""
    table = [
        {
            "endpoint": endpoint.name,
            "agent": endpoint.spec.agent_ref.name,
            "phoneNumbers": list(endpoint.spec.phone_numbers),
            "sipUris": list(endpoint.spec.sip_uris),
            "webrtcPath": endpoint.spec.webrtc.path if endpoint.spec.webrtc else None,
            "routes": [route.to_wire() for route in routes.get(endpoint.name, [])],
            "handoff": handoff_of(agents.get(endpoint.spec.agent_ref.name)),
        }
        for endpoint in sorted(endpoints, key=lambda e: e.name)
    ]
    return load(
        "configmap",
        metadata=object_metadata(
            ROUTES_CONFIGMAP,
            namespace,
            child_labels("routes"),
            sorted(endpoints, key=lambda e: e.name),
            # Shared by all endpoints: gone when the last one is, controlled by none.
            controller=False,
        ),
        data={ROUTES_KEY: json.dumps({"endpoints": table}, indent=2, sort_keys=True) + "\n"},
    )
