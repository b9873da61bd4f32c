"""Labels, owner references and metadata shared by every child object."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from voiceop.api.base import API_VERSION, CustomResource
from voiceop.api.wire import AGENT_LABEL, COMPONENT_LABEL, MANAGED_BY, REGION_LABEL


def selector_labels(agent: str, region: str) -> dict[str, str]:
    """What selects one agent's media pods in one region (immutable on a Deployment)."""
    return {AGENT_LABEL: agent, REGION_LABEL: region}


def child_labels(component: str, agent: str | None = None, region: str | None = None) -> dict[str, str]:
    """Labels of a child. Never copied from the parent: Argo CD tracking labels would follow."""
    labels = {MANAGED_BY: "voiceop", COMPONENT_LABEL: component}
    if agent is not None:
        labels[AGENT_LABEL] = agent
    if region is not None:
        labels[REGION_LABEL] = region
    return labels


def owner_references(owners: Iterable[CustomResource], *, controller: bool) -> list[dict[str, Any]]:
    """ownerReferences to the owners the API server has given a uid (none when rendering offline)."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": owner.info.kind,
            "name": owner.name,
            "uid": owner.metadata.uid,
            "controller": controller,
            "blockOwnerDeletion": controller,
        }
        for owner in owners
        if owner.metadata.uid
    ]


def object_metadata(
    name: str,
    namespace: str,
    labels: dict[str, str],
    owners: Iterable[CustomResource] = (),
    *,
    controller: bool = True,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    references = owner_references(owners, controller=controller)
    if references:
        metadata["ownerReferences"] = references
    return metadata
