"""The loopback API server keeps the promises of the Kubernetes API an operator relies on."""

from __future__ import annotations

import gc
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import voiceop_examples
from voiceop.api import all_crds
from voiceop.sandbox.apiserver import ApiError, LoopbackApiServer
from voiceop.sandbox.apiserver.patching import json_patch, merge_patch, server_side_apply
from voiceop.sandbox.apiserver.selectors import parse_selector
from voiceop.sandbox.apiserver.store import Store

NS = "team"


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackApiServer]:
    with LoopbackApiServer() as s:
        for crd in all_crds():
            s.apply(crd)
        s.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield s


def http(
    server: LoopbackApiServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "data": data,
    }


def test_create_assigns_identity_and_answers_201_then_409(server: LoopbackApiServer) -> None:
    code, created = http(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("identity", a="1"))
    assert code == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert "generation" not in meta  # as kube-apiserver: a ConfigMap has none (tests/cluster/test_api.py)
    code, again = http(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("identity"))
    assert code == 409 and again["reason"] == "AlreadyExists"


def test_stale_resource_version_is_a_conflict(server: LoopbackApiServer) -> None:
    _, created = http(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("versions", a="1"))
    stale = created["metadata"]["resourceVersion"]
    code, updated = http(
        server, "PUT", f"/api/v1/namespaces/{NS}/configmaps/versions", {**created, "data": {"a": "2"}}
    )
    assert code == 200 and int(updated["metadata"]["resourceVersion"]) > int(stale)
    code, conflict = http(
        server, "PUT", f"/api/v1/namespaces/{NS}/configmaps/versions", {**created, "data": {"a": "3"}}
    )
    assert code == 409 and conflict["reason"] == "Conflict"
    # kopf's finalizer patches test the resourceVersion the same way, with a JSON patch.
    patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "add", "path": "/data/b", "value": "x"},
    ]
    code, _ = http(
        server, "PATCH", f"/api/v1/namespaces/{NS}/configmaps/versions", patch, "application/json-patch+json"
    )
    assert code == 409


def test_list_filters_by_label_selector(server: LoopbackApiServer) -> None:
    for name, tier in (("sel-a", "media"), ("sel-b", "media"), ("sel-c", "control")):
        server.apply({**configmap(name, {"tier": tier, "suite": "selectors"})})
    _, listed = http(
        server, "GET", f"/api/v1/namespaces/{NS}/configmaps?labelSelector=suite%3Dselectors,tier%3Dmedia"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["sel-a", "sel-b"]
    assert int(listed["metadata"]["resourceVersion"]) > 0
    _, listed = http(server, "GET", "/api/v1/configmaps?labelSelector=tier+notin+(media),suite")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["sel-c"]


def test_label_selector_grammar() -> None:
    labels = {"app": "voice", "tier": "media"}
    assert parse_selector("app=voice,tier in (media,edge)")(labels)
    assert parse_selector("app==voice,!missing")(labels)
    assert not parse_selector("tier!=media")(labels)
    assert not parse_selector("missing")(labels)
    assert parse_selector("")(labels)


def test_status_subresource_is_isolated_and_generation_counts_spec_changes(server: LoopbackApiServer) -> None:
    region = {
        "apiVersion": "voiceop.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": "iso"},
        "spec": {},
        "status": {"mediaPods": 9},
    }
    code, created = http(server, "POST", "/apis/voiceop.dev/v1alpha1/regions", region)
    assert code == 201 and "status" not in created, "status is ignored on create"
    assert created["spec"]["maintenance"] is False, "CRD schema defaults are applied"
    code, _ = http(
        server,
        "PATCH",
        "/apis/voiceop.dev/v1alpha1/regions/iso/status",
        {"status": {"mediaPods": 2}},
        "application/merge-patch+json",
    )
    assert code == 200
    code, patched = http(
        server,
        "PATCH",
        "/apis/voiceop.dev/v1alpha1/regions/iso",
        {"spec": {"maintenance": True}, "status": {"mediaPods": 7}},
        "application/merge-patch+json",
    )
    assert patched["status"] == {"mediaPods": 2} and patched["metadata"]["generation"] == 2
    _, patched = http(
        server,
        "PATCH",
        "/apis/voiceop.dev/v1alpha1/regions/iso/status",
        {"status": {"mediaPods": 3}},
        "application/merge-patch+json",
    )
    assert patched["metadata"]["generation"] == 2, "status writes do not move generation"
    assert patched["spec"]["maintenance"] is True


def test_custom_resources_are_validated_by_their_crd(server: LoopbackApiServer) -> None:
    agent = {
        "apiVersion": "voiceop.dev/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": "invalid", "namespace": NS},
        "spec": {
            "image": "x",
            "backends": [{"name": "b"}],
            "regions": [{"name": "r", "minReplicas": 5, "maxReplicas": 2}],
        },
    }
    code, answer = http(server, "POST", f"/apis/voiceop.dev/v1alpha1/namespaces/{NS}/voiceagents", agent)
    assert code == 422 and answer["reason"] == "Invalid"
    assert answer["details"]["causes"][0]["field"] == "spec.regions[0].minReplicas"


def test_apply_creates_then_removes_what_the_manager_dropped(server: LoopbackApiServer) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps/applied?fieldManager=voiceop&force=true"
    code, _ = http(server, "PATCH", path, configmap("applied", a="1", b="2"), "application/apply-patch+yaml")
    assert code == 201
    # Another manager adds a key; voiceop's next apply drops b but must keep c.
    http(
        server,
        "PATCH",
        f"/api/v1/namespaces/{NS}/configmaps/applied",
        {"data": {"c": "3"}},
        "application/merge-patch+json",
    )
    code, result = http(server, "PATCH", path, configmap("applied", a="1"), "application/apply-patch+yaml")
    assert code == 200 and result["data"] == {"a": "1", "c": "3"}


def test_apply_merges_associative_lists_entry_by_entry() -> None:
    """As kube-apiserver: env entries are keyed by name, Service ports by port and protocol; an
    entry another manager added stays, one this manager applied and now leaves out goes."""

    def pod(*env: tuple[str, str]) -> dict[str, Any]:
        variables = [{"name": n, "value": v} for n, v in env]
        return {"spec": {"containers": [{"name": "media", "image": "m", "env": variables}]}}

    live = server_side_apply(pod(), pod(("A", "1"), ("B", "2")), None)
    live["spec"]["containers"][0]["env"].append({"name": "INJECTED", "value": "x"})  # another manager
    live["spec"]["containers"].append({"name": "sidecar", "image": "s"})
    after = server_side_apply(live, pod(("A", "9")), pod(("A", "1"), ("B", "2")))
    media, sidecar = after["spec"]["containers"]
    assert media["env"] == [{"name": "A", "value": "9"}, {"name": "INJECTED", "value": "x"}]
    assert sidecar["name"] == "sidecar"
    ports = {"spec": {"ports": [{"port": 5060, "protocol": "UDP"}, {"port": 5060, "name": "tcp"}]}}
    applied = {"spec": {"ports": [{"port": 5060, "protocol": "UDP", "name": "sip"}]}}
    assert server_side_apply(ports, applied, None)["spec"]["ports"] == [
        {"port": 5060, "protocol": "UDP", "name": "sip"},
        {"port": 5060, "name": "tcp"},  # protocol TCP by default: another entry
    ]
    # Custom resources' lists are atomic here.
    assert server_side_apply(
        {"spec": {"env": [{"name": "X"}]}}, {"spec": {"env": [{"name": "Y"}]}}, None, associative_lists=False
    ) == {"spec": {"env": [{"name": "Y"}]}}


def test_patch_formats() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    doc = {"items": [1, 2], "m": {"k": "v"}}
    patched = json_patch(
        doc,
        [
            {"op": "add", "path": "/items/-", "value": 3},
            {"op": "remove", "path": "/m/k"},
            {"op": "replace", "path": "/items/0", "value": 0},
        ],
    )
    assert patched == {"items": [0, 2, 3], "m": {}}
    assert server_side_apply(
        {"spec": {"replicas": 4, "image": "a"}}, {"spec": {"image": "b"}}, {"spec": {"image": "a"}}
    ) == {"spec": {"replicas": 4, "image": "b"}}


def test_scale_subresource(server: LoopbackApiServer) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "scaled", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    server.apply(deployment)
    code, scale = http(
        server,
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/scaled/scale",
        {"spec": {"replicas": 4}},
        "application/merge-patch+json",
    )
    assert (
        code == 200
        and scale["kind"] == "Scale"
        and scale["spec"]["replicas"] == 4
        and scale["status"]["selector"] == "app=x"
    )
    _, got = http(server, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/scaled")
    assert got["spec"]["replicas"] == 4


def test_finalizers_hold_deletion_and_owners_take_dependents(server: LoopbackApiServer) -> None:
    _, owner = http(
        server,
        "POST",
        f"/api/v1/namespaces/{NS}/configmaps",
        {**configmap("owner"), "metadata": {"name": "owner", "finalizers": ["test/hold"]}},
    )
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    http(
        server,
        "POST",
        f"/api/v1/namespaces/{NS}/configmaps",
        {**configmap("dependent"), "metadata": {"name": "dependent", "ownerReferences": [reference]}},
    )
    code, marked = http(server, "DELETE", f"/api/v1/namespaces/{NS}/configmaps/owner")
    assert code == 200 and marked["metadata"]["deletionTimestamp"]
    assert http(server, "GET", f"/api/v1/namespaces/{NS}/configmaps/owner")[0] == 200, "held by its finalizer"
    assert http(server, "GET", f"/api/v1/namespaces/{NS}/configmaps/dependent")[0] == 200
    http(
        server,
        "PATCH",
        f"/api/v1/namespaces/{NS}/configmaps/owner",
        {"metadata": {"finalizers": None}},
        "application/merge-patch+json",
    )
    assert http(server, "GET", f"/api/v1/namespaces/{NS}/configmaps/owner")[0] == 404
    assert http(server, "GET", f"/api/v1/namespaces/{NS}/configmaps/dependent")[0] == 404, "garbage-collected"


def test_watch_replays_from_a_resource_version_and_filters_by_label(server: LoopbackApiServer) -> None:
    _, listed = http(server, "GET", f"/api/v1/namespaces/{NS}/configmaps")
    since = listed["metadata"]["resourceVersion"]
    server.apply(configmap("watched", {"watch": "yes"}, a="1"))
    server.apply(configmap("unwatched", {"watch": "no"}))
    server.apply(configmap("watched", {"watch": "no"}, a="2"))  # leaves the selector: seen as deleted
    url = f"{server.url}/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion={since}&labelSelector=watch%3Dyes&timeoutSeconds=1"
    with urllib.request.urlopen(url, timeout=10) as stream:
        events = [json.loads(line) for line in stream.read().splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "watched"),
        ("DELETED", "watched"),
    ]


def test_too_old_resource_version_is_gone(server: LoopbackApiServer) -> None:
    store = server.store
    rtype = store.resource_type("", "v1", "configmaps")
    for index in range(store._log.maxlen + 5):
        store.patch(rtype, NS, "identity", "application/merge-patch+json", {"data": {"n": str(index)}})
    with pytest.raises(ApiError) as gone:
        store.open_watch(rtype, NS, None, None, "1", loop=None)  # type: ignore[arg-type]
    assert gone.value.code == 410


def test_dropped_watch_ends_the_stream(server: LoopbackApiServer) -> None:
    url = f"{server.url}/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion={server.store.resource_version}"
    ended = threading.Event()

    def read() -> None:
        with urllib.request.urlopen(url, timeout=10) as stream:
            stream.read()
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for _ in range(100):
        if server.store.watch_count("configmaps"):
            break
        threading.Event().wait(0.02)
    assert server.store.drop_watches() >= 1
    assert ended.wait(5)


def test_discovery_serves_applied_crds_with_their_subresources(server: LoopbackApiServer) -> None:
    _, groups = http(server, "GET", "/apis")
    assert "voiceop.dev" in [g["name"] for g in groups["groups"]]
    _, resources = http(server, "GET", "/apis/voiceop.dev/v1alpha1")
    names = {r["name"] for r in resources["resources"]}
    assert {"voiceagents", "voiceagents/status", "voiceagents/scale", "regions", "regions/status"} <= names
    _, core = http(server, "GET", "/api/v1")
    assert "namespaces" in {r["name"] for r in core["resources"]}


def test_injected_faults_answer_once(server: LoopbackApiServer) -> None:
    server.store.fail_next("POST", code=409, count=1, plural="configmaps")
    code, _ = http(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("faulty"))
    assert code == 409
    code, _ = http(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("faulty"))
    assert code == 201


def test_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError):
        LoopbackApiServer(host="0.0.0.0")


def test_the_pod_simulator_deletes_pods_in_the_replicaset_controllers_order() -> None:
    """Unscheduled, Pending and not-Ready pods go before pod-deletion-cost is looked at."""
    from voiceop.sandbox.pods import deletion_order

    def pod(
        name: str,
        *,
        phase: str = "Running",
        ready: bool = True,
        cost: int = 0,
        node: bool = True,
        created: str = "2026-01-01T00:00:00Z",
        ready_at: str = "2026-01-01T00:01:00Z",
    ) -> dict:
        return {
            "metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {"controller.kubernetes.io/pod-deletion-cost": str(cost)}},
            "spec": {"nodeName": "n1"} if node else {},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_at}]},
        }  # fmt: skip

    pods = [
        pod("drained-cheapest", cost=-1000),
        pod("pending", phase="Pending", ready=False, cost=500),
        pod("unscheduled", phase="Pending", ready=False, cost=900, node=False),
        pod("not-ready", ready=False, cost=700),
        pod("ready-recently", ready_at="2026-01-01T00:05:00Z"),
        pod("ready-long-ago", ready_at="2026-01-01T00:00:30Z"),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=deletion_order)]
    assert order == [
        "unscheduled",
        "pending",
        "not-ready",
        "drained-cheapest",
        "ready-recently",
        "ready-long-ago",
    ]


def test_an_object_written_with_only_missing_owners_is_garbage_collected(server: LoopbackApiServer) -> None:
    server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    owner = server.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": "default"}}
    )

    def dependent(name: str, uids: list[str]) -> dict[str, Any]:
        references = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": uid} for uid in uids]
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "ownerReferences": references},
        }

    server.apply(dependent("orphan", ["00000000-0000-4000-8000-00000000dead"]))
    server.apply(dependent("kept", ["00000000-0000-4000-8000-00000000dead", owner["metadata"]["uid"]]))
    assert server.store.find("v1", "ConfigMap", "default", "orphan") is None
    assert server.store.find("v1", "ConfigMap", "default", "kept") is not None


def test_every_server_admits_each_kind_by_its_own_schema() -> None:
    """Servers come and go in one test process, and so do their CRDs' schemas. Admission is
    compiled once per schema; a cache keyed by the schema's id() handed a later server's
    VoiceEndpoint the admission of a freed VoiceAgent schema whose address it reused, and the
    valid endpoint was refused for lacking spec.image (a flake seen twice in full CI runs)."""
    examples = voiceop_examples()
    assert {obj["kind"] for obj in examples} == {"Region", "AIBackend", "VoiceAgent", "VoiceEndpoint"}
    for round_ in range(60):
        store = Store()
        crd_type = store.resource_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crds = all_crds()
        for crd in crds if round_ % 2 else reversed(crds):  # vary which schema lands where
            store.create(crd_type, None, crd)
        for obj in examples:
            group, version = obj["apiVersion"].split("/")
            plural = obj["kind"].lower() + "s"
            rtype = store.resource_type(group, version, plural)
            namespace = obj["metadata"].get("namespace", "default") if rtype.namespaced else None
            store.create(rtype, namespace, obj)  # raises ApiError 422 if judged by another schema
        del store, crds, crd_type, rtype
        gc.collect()
