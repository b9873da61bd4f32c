"""The operator's cache keeps the newest version of each object, whatever order versions come in."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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


def child(kind: str, name: str, version: int, agent: str | None, managed: bool = True) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "voiceop"} if managed else {}
    if agent is not None:
        labels["voiceop.dev/agent"] = agent
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "cc", "uid": f"u-{name}", "resourceVersion": str(version),
                     "labels": labels},
    }  # fmt: skip


def scanned(cache: ClusterCache, namespace: str, agent: str) -> dict[tuple[str, str], Any]:
    """What children_of must answer: every non-Pod child labelled with the agent, by a full scan."""
    return {
        (kind, name): raw
        for kind, table in cache.children.items()
        if kind != "Pod"
        for (ns, name), raw in table.items()
        if ns == namespace
        and raw["metadata"]["labels"].get("voiceop.dev/agent") == agent
        and raw["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "voiceop"
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "remove"]),
            st.sampled_from(["Deployment", "Service", "ConfigMap", "Pod"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["billing", "support", None]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_an_agents_children_are_what_a_full_scan_finds_through_relabels_and_deletes(
    events: list[tuple[str, str, str, str | None, bool]],
) -> None:
    cache = ClusterCache()
    for version, (action, kind, name, agent, managed) in enumerate(events, start=1):
        raw = child(kind, name, version, agent, managed)
        cache.upsert(raw) if action == "upsert" else cache.remove(raw)
        for owner in ("billing", "support"):
            assert cache.children_of("cc", owner) == scanned(cache, "cc", owner)


def test_cached_children_share_their_strings_and_equal_what_came() -> None:
    cache = ClusterCache()
    first, second = (
        json.loads(json.dumps(deployment("1", 0))),
        json.loads(json.dumps(deployment("1", 0, "u-2"))),
    )
    second["metadata"]["name"] = "billing-us-east"
    cache.upsert(first)
    cache.upsert(second)
    a, b = (cache.child("Deployment", "cc", n) for n in (first["metadata"]["name"], "billing-us-east"))
    assert a == first and b == second
    assert a is not None and b is not None
    key_a = next(k for k in a if k == "metadata")
    key_b = next(k for k in b if k == "metadata")
    assert key_a is key_b  # one string for every cached object, not one per decoded event
    assert a["metadata"]["namespace"] is b["metadata"]["namespace"]


def test_the_cache_keeps_everything_but_managed_fields() -> None:
    cache = ClusterCache()
    sent = deployment("1", 2)
    sent["metadata"]["managedFields"] = [
        {"manager": "voiceop", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
    ]
    cache.upsert(sent)
    kept = cache.child("Deployment", "cc", "billing-eu-west")
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept == {**sent, "metadata": {k: v for k, v in sent["metadata"].items() if k != "managedFields"}}
    assert "managedFields" in sent["metadata"]  # what the caller holds is not changed


def region_deployment(name: str, version: int, region: str | None, replicas: int | None) -> dict[str, Any]:
    raw = child("Deployment", name, version, "billing")
    if region is not None:
        raw["metadata"]["labels"]["voiceop.dev/region"] = region
    if replicas is not None:
        raw["spec"] = {"replicas": replicas}
    return raw


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "remove"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["eu-west", "us-east", None]),
            st.one_of(st.none(), st.integers(0, 9)),
        ),
        max_size=40,
    )
)
def test_the_replica_count_is_what_a_full_scan_finds_through_scaling_relabels_and_deletes(
    events: list[tuple[str, str, str | None, int | None]],
) -> None:
    cache = ClusterCache()
    for version, (action, name, region, replicas) in enumerate(events, start=1):
        raw = region_deployment(name, version, region, replicas)
        cache.upsert(raw) if action == "upsert" else cache.remove(raw)
        scan: dict[str, int] = {}
        for raw in cache.children["Deployment"].values():
            if (in_region := raw["metadata"]["labels"].get("voiceop.dev/region")) is not None:
                scan[in_region] = scan.get(in_region, 0) + (raw.get("spec") or {}).get("replicas", 1)
        kept = {r: n for r, n in cache.replica_count.by_region.items() if n or r in scan}
        assert kept == scan


def media_pod() -> dict[str, Any]:
    """A media pod as kube-apiserver sends it (trimmed where nothing is read either way)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "billing-eu-west-7d9f-abcde", "namespace": "cc", "uid": "p-1", "resourceVersion": "42",
            "creationTimestamp": "2026-12-05T10:00:00Z",
            "labels": {"app.kubernetes.io/managed-by": "voiceop", "voiceop.dev/agent": "billing",
                       "voiceop.dev/region": "eu-west"},
            "annotations": {"voiceop.dev/draining-since": "2026-12-05T10:05:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "billing-eu-west-7d9f"}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
        },
        "spec": {
            "containers": [{"name": "media", "image": "ghcr.io/voiceop/media-sim:0.1",
                            "env": [{"name": "VOICEOP_REGION", "value": "eu-west"}] * 20}],
            "volumes": [{"name": "runtime", "configMap": {"name": "billing-runtime"}}],
            "readinessGates": [{"conditionType": "voiceop.dev/accepting-calls"}],
            "nodeName": "sandbox-0",
        },
        "status": {
            "phase": "Running", "podIP": "127.0.1.5", "podIPs": [{"ip": "127.0.1.5"}], "hostIP": "127.0.0.1",
            "conditions": [
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-05T10:00:04Z"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-05T10:00:00Z"},
            ],
            "containerStatuses": [{"name": "media", "ready": True, "restartCount": 0, "state": {"running": {}}}],
        },
    }  # fmt: skip


def test_a_cached_pod_is_what_the_scaler_reads_of_it_and_nothing_else() -> None:
    from voiceop.controller.scaler import draining_since, pod_state, took_to_start

    cache = ClusterCache()
    sent = media_pod()
    cache.upsert(sent)
    kept = cache.child("Pod", "cc", sent["metadata"]["name"])
    assert kept is not None
    assert kept["metadata"] == {k: v for k, v in sent["metadata"].items() if k != "managedFields"}
    assert kept["spec"] == {"readinessGates": sent["spec"]["readinessGates"]}
    assert kept["status"] == {k: sent["status"][k] for k in ("phase", "podIP", "podIPs", "conditions")}
    for read in (pod_state, draining_since, took_to_start):
        assert read(kept) == read(sent), read.__name__
    assert "containers" in sent["spec"]  # what the caller holds is not changed
    # Kinds voiceop renders are kept whole: their fields are compared with the render.
    cache.upsert({**deployment("1", 2), "spec": {"template": {"spec": {"containers": [{"name": "m"}]}}}})
    assert cache.child("Deployment", "cc", "billing-eu-west")["spec"]["template"]["spec"]["containers"]  # type: ignore[index]


def test_a_status_write_keeps_the_admitted_spec_and_any_other_change_is_parsed_again() -> None:
    """A version that differs only in status (and resourceVersion) is not admitted again: the
    cached agent is the one parse_object would give, its spec the one admitted before; any
    other change, even one the API server does not count as a new generation, is parsed."""
    import copy

    from conftest import example_object
    from voiceop.api import parse_object

    cache = ClusterCache()
    agent = example_object("VoiceAgent", "billing")
    agent["metadata"].update(uid="u-1", generation=1, resourceVersion="10")
    cache.upsert(agent)
    first = cache.seen("VoiceAgent", agent["metadata"]["namespace"], "billing").resource

    def newer(change: Any) -> Any:
        version = copy.deepcopy(agent)
        version["metadata"]["resourceVersion"] = str(int(agent["metadata"]["resourceVersion"]) + 1)
        change(version)
        cache.upsert(version)
        agent.clear()
        agent.update(version)
        return cache.seen("VoiceAgent", version["metadata"]["namespace"], "billing").resource

    status = {"replicas": 3, "activeBackend": "openai-realtime"}
    held = newer(lambda v: v.update(status=status))
    assert held.spec is first.spec, "the admitted spec was kept"
    assert held == parse_object(agent)
    held = newer(lambda v: v.update(status={"replicas": "many"}))  # unreadable: none, as parse_object
    assert held.status is None and held == parse_object(agent)
    held = newer(lambda v: v["metadata"].update(labels={"team": "a"}))
    assert held.metadata.labels["team"] == "a" and held == parse_object(agent)
    held = newer(lambda v: v["spec"]["capacity"].update(callsPerPod=3))  # no generation bump
    assert held.spec.capacity.calls_per_pod == 3 and held == parse_object(agent)
    held = newer(lambda v: v["spec"]["capacity"].update(callsPerPod=0))  # refused, not kept
    assert held is None and cache.seen("VoiceAgent", agent["metadata"]["namespace"], "billing").errors
