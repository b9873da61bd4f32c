"""The one table of kinds voiceop reads or writes: API version, plural, scope and role.

Everything that needs a list of kinds (the API client's paths, the cache, kopf's watches, the
initial listing, the chart's RBAC) derives it from here, so the lists cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# voiceop: a kind of voiceop's API. child: made by the operator (watched by label selector).
# observed: made by others from voiceop's children, read (and patched) by the operator.
# event: written only.
Role = Literal["voiceop", "child", "observed", "event"]


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    role: Role
    namespaced: bool = True
    # Absent on clusters without the add-on (KEDA): a 404 on listing means "none".
    optional: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def resource(self) -> tuple[str, ...]:
        """(group, version, plural), or (version, plural) for the core group, as kopf takes it."""
        return (self.group, self.version, self.plural) if self.group else (self.version, self.plural)

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("voiceop.dev/v1alpha1", "Region", "regions", "voiceop", namespaced=False),
        Kind("voiceop.dev/v1alpha1", "AIBackend", "aibackends", "voiceop"),
        Kind("voiceop.dev/v1alpha1", "VoiceAgent", "voiceagents", "voiceop"),
        Kind("voiceop.dev/v1alpha1", "VoiceEndpoint", "voiceendpoints", "voiceop"),
        Kind("apps/v1", "Deployment", "deployments", "child"),
        Kind("v1", "Service", "services", "child"),
        Kind("v1", "ConfigMap", "configmaps", "child"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", "child"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", "child"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "child"),
        Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects", "child", optional=True),
        # Made by ReplicaSets from voiceop's Deployments (they carry its labels); the scaler reads them.
        Kind("v1", "Pod", "pods", "observed"),
        Kind("v1", "Event", "events", "event"),
    )
}

VOICEOP_KINDS: tuple[str, ...] = tuple(k.kind for k in KINDS.values() if k.role == "voiceop")
# Watched and listed with the managed-by selector.
WATCHED_CHILD_KINDS: tuple[str, ...] = tuple(
    k.kind for k in KINDS.values() if k.role in ("child", "observed")
)
