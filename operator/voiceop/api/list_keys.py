"""The associative lists of built-in Kubernetes objects: which fields identify an entry.

Server-side apply merges these lists entry by entry (`x-kubernetes-list-type: map` with its
`x-kubernetes-list-map-keys` in the OpenAPI of kube-apiserver), so an entry another field
manager added survives voiceop's apply. Both the operator's "already up to date?" check and
the loopback API server's apply read them from here. Only the lists of the kinds voiceop owns
or reads are listed; any other list is atomic (replaced whole), as the API's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Field name -> the entry's keys. Ports are either a container's or a Service's: told apart
# by the fields an entry carries.
_MAP_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "resizePolicy": ("resourceName",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
}
_CONTAINER_PORT_KEYS = ("containerPort", "protocol")
_SERVICE_PORT_KEYS = ("port", "protocol")
_DEFAULTS = {"protocol": "TCP"}  # a key left out has its API default

Key = tuple[Any, ...]


def map_keys(field: str | None, entries: Sequence[Any]) -> tuple[str, ...] | None:
    """The keys of the list under `field`, or None for an atomic list."""
    if not field or not entries or not all(isinstance(e, dict) for e in entries):
        return None
    if field == "ports":
        return _CONTAINER_PORT_KEYS if "containerPort" in entries[0] else _SERVICE_PORT_KEYS
    return _MAP_KEYS.get(field)


def entry_key(entry: dict[str, Any], keys: tuple[str, ...]) -> Key:
    return tuple(entry.get(k, _DEFAULTS.get(k)) for k in keys)
