"""Media endpoints from EndpointSlices or from Pods: pure.

EndpointSlices are what a cluster publishes for the media Services and what the edge reads
by default. Pods are the same facts one step earlier (the EndpointSlice controller derives
a Ready endpoint from a pod's Ready condition, readiness gates included, and its IP): the
sandbox's pods live on 127.x addresses, which kube-apiserver refuses in an EndpointSlice,
so there the edge reads pods.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from voiceop.api.wire import AGENT_LABEL, REGION_LABEL
from voiceop.render.edge.config import EdgeInputError, MediaEndpoint
from voiceop.render.names import media_name

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def from_endpointslice(slice_: Mapping[str, Any]) -> list[MediaEndpoint]:
    meta = slice_.get("metadata", {})
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or slice_.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return []
    where = f"EndpointSlice {meta.get('namespace', 'default')}/{meta.get('name')}"
    endpoints = slice_.get("endpoints") or []
    if not isinstance(endpoints, list):
        raise EdgeInputError(f"{where}: endpoints: must be a list")
    found: list[MediaEndpoint] = []
    for i, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, dict):
            raise EdgeInputError(f"{where}: endpoints[{i}]: must be an object")
        conditions = endpoint.get("conditions") or {}
        for name in ("ready", "serving", "terminating"):
            if not isinstance(conditions.get(name, False), bool):
                raise EdgeInputError(f"{where}: endpoints[{i}].conditions.{name}: must be true or false")
        addresses = endpoint.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            raise EdgeInputError(f"{where}: endpoints[{i}].addresses: must be a non-empty list")
        for j, address in enumerate(addresses):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise EdgeInputError(
                    f"{where}: endpoints[{i}].addresses[{j}]: {address!r} is not an IP address"
                ) from None
        # API contract: an unset `ready` means ready; a terminating pod is never ready.
        ready = conditions.get("ready") is not False and not conditions.get("terminating")
        pod = (endpoint.get("targetRef") or {}).get("name") or f"{meta.get('name')}-{i}"
        found.extend(
            MediaEndpoint(meta.get("namespace", "default"), service, pod, address, ready)
            for address in addresses
        )
    return found


def from_pod(pod: Mapping[str, Any]) -> list[MediaEndpoint]:
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    agent, region = labels.get(AGENT_LABEL), labels.get(REGION_LABEL)
    address = (pod.get("status") or {}).get("podIP")
    if not agent or not region or not address:
        return []
    conditions = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") == "True" and not meta.get("deletionTimestamp")
    return [
        MediaEndpoint(
            meta.get("namespace", "default"), media_name(agent, region), meta["name"], address, ready
        )
    ]


def media_endpoints(objects: Iterable[Mapping[str, Any]]) -> list[MediaEndpoint]:
    """Endpoints of every EndpointSlice and Pod among `objects` (other kinds are ignored)."""
    found: list[MediaEndpoint] = []
    for obj in objects:
        if obj.get("kind") == "EndpointSlice":
            found.extend(from_endpointslice(obj))
        elif obj.get("kind") == "Pod":
            found.extend(from_pod(obj))
    return sorted(set(found))
