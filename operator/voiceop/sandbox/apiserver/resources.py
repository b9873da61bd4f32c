"""The resource types a loopback API server serves: built-in kinds and CRDs applied to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_NO_GENERATION = frozenset(
    {
        ("", "configmaps"),
        ("", "secrets"),
        ("", "services"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "namespaces"),
        ("", "serviceaccounts"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("coordination.k8s.io", "leases"),
        ("", "nodes"),
    }
)


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # For the scale subresource: where replicas live in spec and status, and the selector.
    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = None
    # OpenAPI schema of a custom resource: defaults and validation on writes.
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # A custom resource's additionalPrinterColumns: what a Table response shows.
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def has_generation(self) -> bool:
        """Whether kube-apiserver keeps metadata.generation for this kind: custom resources and
        kinds with a desired state do; ConfigMaps, Secrets, Services, Events, Namespaces and
        the like have none (checked against kube-apiserver v1.37)."""
        return (self.group, self.plural) not in _NO_GENERATION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """(group, plural): how objects are stored, whatever version they are read in."""
        return (self.group, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        entries = [
            {
                "name": self.plural,
                "singularName": self.kind.lower(),
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": verbs,
                "shortNames": list(self.short_names),
                "categories": list(self.categories),
            }
        ]
        for sub in sorted(self.subresources):
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": "Scale" if sub == "scale" else self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


def _builtin(
    group: str, version: str, plural: str, kind: str, namespaced: bool = True, **extra: Any
) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, **extra)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, subresources=frozenset({"status"})),
    _builtin("", "v1", "configmaps", "ConfigMap"),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "services", "Service", subresources=frozenset({"status"})),
    _builtin("", "v1", "pods", "Pod", subresources=frozenset({"status"})),
    _builtin("", "v1", "events", "Event"),
    _builtin("events.k8s.io", "v1", "events", "Event"),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        subresources=frozenset({"status", "scale"}),
        label_selector_path=".status.selector",
    ),
    _builtin(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", subresources=frozenset({"status"})
    ),
    _builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    _builtin(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        subresources=frozenset({"status"}),
    ),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        subresources=frozenset({"status"}),
    ),
)


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CustomResourceDefinition as resource types."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale") or {}
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                subresources=frozenset(subresources),
                short_names=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
                spec_replicas_path=scale.get("specReplicasPath", ".spec.replicas"),
                status_replicas_path=scale.get("statusReplicasPath", ".status.replicas"),
                label_selector_path=scale.get("labelSelectorPath"),
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return types
