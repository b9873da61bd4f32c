"""Pure rendering of every object voiceop makes, from the resources that ask for them."""

from __future__ import annotations

from typing import Any

from voiceop.api.inventory import Inventory
from voiceop.render.agent import render_agent, render_errors
from voiceop.render.options import DEFAULT_OPTIONS, RenderOptions
from voiceop.render.routes import routes_configmap, routes_for


class NameConflict(ValueError):
    """Two parents would make a child of the same kind and name."""


def render_problems(inventory: Inventory, options: RenderOptions = DEFAULT_OPTIONS) -> list[tuple[Any, Any]]:
    """(agent, FieldError) for every agent these options cannot render (see render_errors)."""
    return [
        (agent, error)
        for namespace in inventory.namespaces()
        for agent in sorted(inventory.agents[namespace].values(), key=lambda a: a.name)
        for error in render_errors(agent, options)
    ]


def render_all(inventory: Inventory, options: RenderOptions = DEFAULT_OPTIONS) -> list[dict[str, Any]]:
    """Every child of every object in a reference-complete inventory, in a stable order."""
    objects: list[dict[str, Any]] = []
    owners: dict[tuple[str, str, str], str] = {}
    for namespace in inventory.namespaces():
        backends = inventory.backends[namespace]
        agents = inventory.agents[namespace]
        for agent in sorted(agents.values(), key=lambda a: a.name):
            for child in render_agent(agent, inventory.regions, backends, options=options):
                key = (child["kind"], namespace, child["metadata"]["name"])
                if key in owners:
                    raise NameConflict(
                        f"{key[0]} {namespace}/{key[2]} would be made for both {owners[key]} and {agent.ref}"
                    )
                owners[key] = agent.ref
                objects.append(child)
        endpoints = sorted(inventory.endpoints[namespace].values(), key=lambda e: e.name)
        if endpoints:
            routes = {
                e.name: routes_for(e, agents[e.spec.agent_ref.name], inventory.regions) for e in endpoints
            }
            objects.append(routes_configmap(namespace, endpoints, routes, agents))
    return objects


__all__ = ["NameConflict", "RenderOptions", "render_agent", "render_all", "render_problems"]
