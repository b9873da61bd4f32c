"""Cross-object references: what each object names, and which of those do not exist.

Pure: given what exists, list the broken references of an object, each as a FieldError on the
field that names the missing object. `voiceop render` refuses input with any; the operator
reports them as `Ready=False, reason: MissingReference` and heals when they appear.
"""

from __future__ import annotations

from collections.abc import Mapping

from voiceop.api import FieldError
from voiceop.api.v1alpha1 import AIBackend, Region, VoiceAgent, VoiceEndpoint


def agent_reference_errors(
    agent: VoiceAgent, regions: Mapping[str, Region], backends: Mapping[str, AIBackend]
) -> list[FieldError]:
    """`backends` holds the AIBackends of the agent's namespace, by name."""
    errors = [
        FieldError(f"spec.regions[{i}].name", f"Region {r.name!r} not found")
        for i, r in enumerate(agent.spec.regions)
        if r.name not in regions
    ]
    errors += [
        FieldError(f"spec.backends[{i}].name", f"AIBackend {agent.namespace}/{b.name} not found")
        for i, b in enumerate(agent.spec.backends)
        if b.name not in backends
    ]
    return errors


def endpoint_reference_errors(endpoint: VoiceEndpoint, agents: Mapping[str, VoiceAgent]) -> list[FieldError]:
    """`agents` holds the VoiceAgents of the endpoint's namespace, by name."""
    agent = agents.get(endpoint.spec.agent_ref.name)
    if agent is None:
        return [
            FieldError(
                "spec.agentRef.name",
                f"VoiceAgent {endpoint.namespace}/{endpoint.spec.agent_ref.name} not found",
            )
        ]
    agent_regions = {r.name for r in agent.spec.regions}
    return [
        FieldError(
            f"spec.routing.regions[{i}].name",
            f"Region {r.name!r} is not one of VoiceAgent {agent.name}'s regions",
        )
        for i, r in enumerate(endpoint.spec.routing.regions)
        if r.name not in agent_regions
    ]
