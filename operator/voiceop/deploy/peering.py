"""kopf's peering resources: how replicas of the operator agree on which one acts.

kopf coordinates replicas through a KopfPeering object (not a Lease): each replica writes its
priority there, the highest acts, the others pause their watches; replicas of equal priority
all pause. The chart ships these CRDs and the `voiceop` ClusterKopfPeering object.
"""

from __future__ import annotations

from typing import Any

PEERING_NAME = "voiceop"


def _peering_crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Operator replicas and their priorities (kopf peering).",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "description": "Peers by identity, written by kopf.",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    return [
        _peering_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _peering_crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]


def cluster_peering(name: str = PEERING_NAME) -> dict[str, Any]:
    return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
