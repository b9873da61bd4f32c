"""The operator's cache keeps the newest version of each object, whatever order versions come in."""

from __future__ import annotations

from typing import Any

from voiceop.controller.cache import ClusterCache


def deployment(version: str, ready: int, uid: str = "u-1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "billing-eu-west", "namespace": "cc", "uid": uid, "resourceVersion": version,
                     "labels": {"app.kubernetes.io/managed-by": "voiceop"}},
        "status": {"readyReplicas": ready},
    }  # fmt: skip


def test_a_writes_late_answer_does_not_turn_back_a_newer_watch_event() -> None:
    cache = ClusterCache()
    cache.upsert(deployment("102", ready=2))  # the controller's status, by watch
    cache.upsert(deployment("101", ready=0))  # voiceop's apply, answered after it
    assert cache.child("Deployment", "cc", "billing-eu-west")["status"]["readyReplicas"] == 2
    cache.upsert(deployment("103", ready=3))
    assert cache.child("Deployment", "cc", "billing-eu-west")["status"]["readyReplicas"] == 3


def test_an_object_made_again_replaces_the_old_one_whatever_its_version() -> None:
    cache = ClusterCache()
    cache.upsert(deployment("500", ready=2))
    cache.upsert(deployment("7", ready=0, uid="u-2"))  # deleted and made again (a restored backup)
    assert cache.child("Deployment", "cc", "billing-eu-west")["metadata"]["uid"] == "u-2"
