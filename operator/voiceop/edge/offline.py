"""`voiceop edge render`: the edge's files from manifests, offline, as `voiceop render` does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voiceop.api.wire import ROUTES_CONFIGMAP
from voiceop.inputs.loading import load_inventory
from voiceop.inputs.yamlio import read_manifests
from voiceop.render import NameConflict, render_all
from voiceop.render.edge.config import (
    EdgeInputError,
    EdgeSettings,
    MediaEndpoint,
    edge_files,
    routes_of_configmap,
)
from voiceop.render.edge.endpoints import from_endpointslice, from_pod


@dataclass
class RenderedEdge:
    files: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    endpoints: int = 0


def render_edge(paths: Sequence[str], settings: EdgeSettings) -> RenderedEdge:
    """Routes rendered from the manifests; Ready endpoints from EndpointSlices (or Pods) among them."""
    result = RenderedEdge()
    loaded = load_inventory(paths)
    result.errors.extend(loaded.errors)
    documents, _ = read_manifests(paths)  # read errors are already in loaded.errors
    endpoints: list[MediaEndpoint] = []
    for document in documents:
        kind = document.obj.get("kind")
        try:
            if kind == "EndpointSlice":
                endpoints.extend(from_endpointslice(document.obj))
            elif kind == "Pod":
                endpoints.extend(from_pod(document.obj))
        except EdgeInputError as error:
            result.errors.append(f"{document.path}: {error}")
    if result.errors:
        return result
    try:
        objects = render_all(loaded.inventory)
    except NameConflict as conflict:
        result.errors.append(str(conflict))
        return result
    routes: dict[str, dict[str, Any]] = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == ROUTES_CONFIGMAP:
            namespace, table = routes_of_configmap(obj)
            routes[namespace] = table
    result.files = edge_files(settings, routes, endpoints)
    result.endpoints = len(endpoints)
    return result
