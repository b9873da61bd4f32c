"""A consistent set of voiceop objects: what `render` and the operator reason over."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from voiceop.api import FieldError
from voiceop.api.base import CustomResource
from voiceop.api.references import agent_reference_errors, endpoint_reference_errors
from voiceop.api.v1alpha1 import AIBackend, Region, VoiceAgent, VoiceEndpoint


@dataclass
class Inventory:
    regions: dict[str, Region] = field(default_factory=dict)
    # Namespaced kinds: namespace -> name -> object.
    backends: dict[str, dict[str, AIBackend]] = field(default_factory=lambda: defaultdict(dict))
    agents: dict[str, dict[str, VoiceAgent]] = field(default_factory=lambda: defaultdict(dict))
    endpoints: dict[str, dict[str, VoiceEndpoint]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def of(cls, resources: Iterable[CustomResource]) -> Inventory:
        inventory = cls()
        for resource in resources:
            inventory.add(resource)
        return inventory

    def add(self, resource: CustomResource) -> CustomResource | None:
        """Add an object; returns the one it replaced (same kind, namespace and name), if any."""
        if isinstance(resource, Region):
            previous: CustomResource | None = self.regions.get(resource.name)
            self.regions[resource.name] = resource
            return previous
        tables: dict[type, dict[str, dict[str, Any]]] = {
            AIBackend: self.backends,
            VoiceAgent: self.agents,
            VoiceEndpoint: self.endpoints,
        }
        table = tables[type(resource)]
        previous = table[resource.namespace].get(resource.name)
        table[resource.namespace][resource.name] = resource
        return previous

    def namespaces(self) -> list[str]:
        return sorted(set(self.backends) | set(self.agents) | set(self.endpoints))

    def reference_errors(self) -> list[tuple[CustomResource, list[FieldError]]]:
        """Every object with a reference to something not in the inventory."""
        broken: list[tuple[CustomResource, list[FieldError]]] = []
        for namespace in self.namespaces():
            for agent in self.agents[namespace].values():
                errors = agent_reference_errors(agent, self.regions, self.backends[namespace])
                if errors:
                    broken.append((agent, errors))
            for endpoint in self.endpoints[namespace].values():
                errors = endpoint_reference_errors(endpoint, self.agents[namespace])
                if errors:
                    broken.append((endpoint, errors))
        return broken
