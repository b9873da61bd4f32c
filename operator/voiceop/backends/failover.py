"""The failover choice: an agent's first available backend, in the order it lists them."""

from __future__ import annotations

from collections.abc import Mapping

from voiceop.api.v1alpha1 import AIBackend, VoiceAgent


def backend_available(backend: AIBackend) -> bool:
    """Unprobed or unknown counts as available: a backend is given up only on evidence."""
    for condition in backend.status.conditions if backend.status else []:
        if condition.type == "Available":
            return condition.status != "False"
    return True


def active_backend(agent: VoiceAgent, backends: Mapping[str, AIBackend]) -> str | None:
    """The first available backend in the agent's failover order; None when none is."""
    for ref in agent.spec.backends:
        backend = backends.get(ref.name)
        if backend is not None and backend_available(backend):
            return ref.name
    return None
