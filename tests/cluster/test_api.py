"""voiceop's API on the real kube-apiserver: CRDs accepted, admission refuses what the offline
admission refuses (same field path), rendered objects and the chart pass server-side dry-run,
and kubectl reads the CRDs as users will."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterlib import ROOT, Sandbox, wait_for
from conftest import example_object
from test_admission import CEL_CASES, LIBRARY_CASES, OTHER_CASES, PATTERN_CASES, set_field
from voiceop.sandbox.cluster.controlplane import KUBERNETES_VERSION
from voiceop.sandbox.cluster.rest import RestError

NS = "contact-center"


def test_the_built_binaries_report_the_pinned_release(sandbox: Sandbox) -> None:
    assert sandbox.admin.get("/version")["gitVersion"] == KUBERNETES_VERSION
    go_mod = (ROOT / "controlplane" / "go.mod").read_text()
    assert re.search(rf"k8s.io/kubernetes {re.escape(KUBERNETES_VERSION)}\b", go_mod)


def test_every_crd_is_established_and_structural(sandbox: Sandbox) -> None:
    crds = sandbox.admin.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    ours = {c["metadata"]["name"]: c for c in crds if c["spec"]["group"] == "voiceop.dev"}
    assert set(ours) == {
        f"{p}.voiceop.dev" for p in ("regions", "aibackends", "voiceagents", "voiceendpoints")
    }
    for crd in ours.values():
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True"
        assert conditions.get("NonStructuralSchema", "False") == "False"


def _ensure_namespace(sandbox: Sandbox, name: str) -> None:
    sandbox.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _server_refusal(sandbox: Sandbox, obj: dict[str, Any]) -> str:
    try:
        # A create: validation runs before the existence check, so an object of the same name
        # applied by another test does not hide a refusal.
        sandbox.admin.request(
            "POST",
            sandbox.discovery.path(obj, named=False),
            obj,
            params={"fieldManager": "test", "dryRun": "All", "fieldValidation": "Strict"},
        )
    except RestError as error:
        if error.code == 409:
            return ""
        assert error.code in (400, 422), error
        return str(error)
    return ""


@pytest.mark.parametrize(
    "kind,name,path,value,field,text",
    CEL_CASES + PATTERN_CASES + OTHER_CASES,
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_the_real_api_server_refuses_each_admission_case_at_the_same_field(
    sandbox: Sandbox, kind: str, name: str, path: str, value: Any, field: str, text: str
) -> None:
    _ensure_namespace(sandbox, NS)
    obj = set_field(example_object(kind, name), path, value)
    message = _server_refusal(sandbox, obj)
    assert message, f"kube-apiserver accepted {kind} with {path}={value!r}"
    # kube-apiserver names list entries by index and fields by dots, as the offline admission does.
    assert field in message, message


@pytest.mark.parametrize("kind,name,path,value,field,text", LIBRARY_CASES)
def test_library_checks_are_the_operators_not_the_schemas(
    sandbox: Sandbox, kind: str, name: str, path: str, value: Any, field: str, text: str
) -> None:
    """Phone-number validity needs libphonenumber: no CRD rule can say it, the operator does
    (Ready=False naming the field; see the operator tests)."""
    _ensure_namespace(sandbox, NS)
    obj = set_field(example_object(kind, name), path, value)
    assert _server_refusal(sandbox, obj) == ""


def _dry_run_server(
    sandbox: Sandbox, documents: list[dict[str, Any]], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return sandbox.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=test", "-f", str(path)
    )


def test_rendered_examples_pass_server_side_dry_run(sandbox: Sandbox, tmp_path: Path) -> None:
    _ensure_namespace(sandbox, NS)
    rendered = subprocess.run(
        [sys.executable, "-m", "voiceop", "render", "-f", str(ROOT / "examples")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    keda = [d for d in documents if d["apiVersion"].startswith("keda.sh/")]
    documents = [d for d in documents if d not in keda]  # KEDA's CRDs are not installed here
    assert {d["kind"] for d in documents} >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"}
    result = _dry_run_server(sandbox, documents, tmp_path)
    assert result.stdout.count("(server dry run)") == len(documents), result.stdout


def test_the_charts_render_passes_server_side_dry_run(sandbox: Sandbox, tmp_path: Path) -> None:
    from test_chart import render  # the real Helm engine (helm-python-sdk)

    documents = render({"edge": {"enabled": True}})  # the operator and the SIP edge
    # ServiceMonitor and PrometheusRule need the Prometheus Operator's CRDs, absent here.
    skipped = {"ServiceMonitor", "PrometheusRule"}
    documents = [copy.deepcopy(d) for d in documents if d and d["kind"] not in skipped]
    assert {d["kind"] for d in documents} >= {
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "Service",
    }
    _ensure_namespace(sandbox, "voiceop-system")
    result = _dry_run_server(sandbox, documents, tmp_path)
    assert result.stdout.count("(server dry run)") == len(documents), result.stdout


def test_kubectl_explain_prints_the_field_descriptions(sandbox: Sandbox) -> None:
    # kube-apiserver publishes a new CRD's OpenAPI a few seconds after it is Established.
    result = wait_for(
        lambda: (
            (r := sandbox.kubectl("explain", "voiceagent.spec.scaling", check=False)).returncode == 0 and r
        ),
        timeout=60,
        what="the CRD's OpenAPI published",
    )
    out = result.stdout
    assert "targetUtilization" in out and "scaleDownDelaySeconds" in out
    assert "DESCRIPTION" in out.upper() and len(out.splitlines()) > 10


GENERATION_PROBES = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gen-probe"}, "data": {"a": "b"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gen-probe"}, "stringData": {"a": "b"}},
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "gen-probe"},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 5060, "protocol": "UDP"}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gen-probe"},
        "spec": {"containers": [{"name": "c", "image": "media-sim"}]},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gen-probe"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    },
]


@pytest.mark.parametrize("obj", GENERATION_PROBES, ids=lambda o: o["kind"])
def test_the_loopback_server_keeps_generation_for_the_kinds_the_real_one_does(
    sandbox: Sandbox, obj: dict[str, Any]
) -> None:
    from voiceop.sandbox.apiserver import LoopbackApiServer

    _ensure_namespace(sandbox, "generation")
    deadline = time.monotonic() + 30
    while True:
        try:
            created = sandbox.admin.request(
                "POST",
                sandbox.discovery.path(obj, named=False, namespace="generation"),
                {**obj, "metadata": {**obj["metadata"], "namespace": "generation"}},
                params={"dryRun": "All"},
            )
            break
        except RestError as error:  # a Pod waits for the namespace's default ServiceAccount
            if "serviceaccount" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with LoopbackApiServer() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "generation"}})
        loopback = server.apply(
            {**copy.deepcopy(obj), "metadata": {**obj["metadata"], "namespace": "generation"}}
        )
    assert ("generation" in loopback["metadata"]) == ("generation" in created["metadata"]), created[
        "metadata"
    ]


def _service(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "media", "namespace": "applied"},
        "spec": {"ports": ports},
    }


# voiceop applies its port, another manager adds one, voiceop re-applies a changed port list.
SSA_STEPS = [
    ("voiceop", [{"name": "sip", "port": 5060, "protocol": "UDP"}, {"name": "old", "port": 5070}]),
    ("platform-team", [{"name": "debug", "port": 7000}]),
    ("voiceop", [{"name": "sip", "port": 5060, "protocol": "UDP"}, {"name": "sip-tcp", "port": 5060}]),
]


def test_the_loopback_server_merges_associative_lists_on_apply_as_the_real_one_does(
    sandbox: Sandbox,
) -> None:
    """Service ports are keyed by port and protocol: the other manager's entry survives, the one
    voiceop left out goes (with lists replaced whole, the loopback server lost `debug`)."""
    from voiceop.sandbox.apiserver import LoopbackApiServer

    _ensure_namespace(sandbox, "applied")
    path = sandbox.discovery.path(_service([]))
    for manager, ports in SSA_STEPS:
        real = sandbox.admin.apply(path, _service(ports), manager=manager)
    with LoopbackApiServer() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "applied"}})
        rtype = server.store.type_of_kind("v1", "Service")
        for manager, ports in SSA_STEPS:
            loopback = server.store.patch(
                rtype,
                "applied",
                "media",
                "application/apply-patch+yaml",
                _service(ports),
                field_manager=manager,
            )

    def entries(service: dict[str, Any]) -> set[tuple[str, int, str]]:
        return {(p["name"], p["port"], p.get("protocol", "TCP")) for p in service["spec"]["ports"]}

    assert entries(real) == {("sip", 5060, "UDP"), ("sip-tcp", 5060, "TCP"), ("debug", 7000, "TCP")}
    assert entries(loopback) == entries(real)


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_the_loopback_server_serves_the_same_tables_as_the_real_one(sandbox: Sandbox) -> None:
    """What `kubectl get` shows: the CRD's printer columns, the same cells (ages aside)."""
    import json
    import urllib.request

    from voiceop.api import all_crds
    from voiceop.sandbox.apiserver import LoopbackApiServer

    objects = [example_object("AIBackend", "openai-realtime"), example_object("VoiceAgent", "billing")]
    for obj in objects:
        obj["metadata"]["namespace"] = "tables"
    ready = {
        "status": "True",
        "reason": "Converged",
        "message": "",
        "lastTransitionTime": "2026-12-01T00:00:00Z",
    }
    statuses = [
        {"conditions": [{"type": "Available", **ready}], "probeLatencyMs": {"p95": 120}},
        {
            "replicas": 5,
            "readyReplicas": 4,
            "activeCalls": 0,
            "activeBackend": "openai-realtime",
            "conditions": [{"type": "Progressing", **ready, "status": "False"}, {"type": "Ready", **ready}],
        },
    ]
    _ensure_namespace(sandbox, "tables")
    try:
        real = []
        for obj, status in zip(objects, statuses, strict=True):
            sandbox.apply(obj)
            sandbox.admin.patch(sandbox.discovery.path(obj) + "/status", {"status": status})
            real.append(sandbox.admin.request("GET", sandbox.discovery.path(obj), accept=TABLE))
        with LoopbackApiServer() as server:
            for crd in all_crds():
                server.apply(crd)
            server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tables"}})
            loopback = []
            for obj, status in zip(objects, statuses, strict=True):
                server.apply(obj)
                rtype = server.store.type_of_kind(obj["apiVersion"], obj["kind"])
                name = obj["metadata"]["name"]
                patch = {"status": status}
                server.store.patch(
                    rtype, "tables", name, "application/merge-patch+json", patch, subresource="status"
                )
                path = sandbox.discovery.path(obj)
                request = urllib.request.Request(server.url + path, headers={"Accept": TABLE})
                with urllib.request.urlopen(request, timeout=10) as response:
                    loopback.append(json.loads(response.read()))
    finally:
        for obj in objects:
            sandbox.admin.request("DELETE", sandbox.discovery.path(obj))

    def shown(answer: dict[str, Any]) -> tuple[Any, ...]:
        dates = [i for i, c in enumerate(answer["columnDefinitions"]) if c["type"] == "date"]
        (row,) = answer["rows"]
        cells = [bool(re.fullmatch(r"\d+s", c)) if i in dates else c for i, c in enumerate(row["cells"])]
        assert cells.count(None) < len(cells) // 2, cells  # the status columns are filled
        return answer["kind"], answer["columnDefinitions"], cells, row["object"]["kind"]

    for got, want in zip(loopback, real, strict=True):
        for column, (mine, theirs) in enumerate(zip(shown(got), shown(want), strict=True)):
            assert mine == theirs, (column, mine, theirs)


def test_a_stale_resource_version_on_a_status_patch_conflicts_on_both_servers(sandbox: Sandbox) -> None:
    """The scaler's readiness-gate write is guarded so; the loopback server dropped the guard on
    /status (it kept only the status of the patched object) and never answered 409 there."""
    from voiceop.api import all_crds
    from voiceop.sandbox.apiserver import ApiError, LoopbackApiServer

    region = example_object("Region", "eu-west")
    region["metadata"] = {"name": "conflict-probe"}
    path = sandbox.discovery.path(region)
    created = sandbox.admin.apply(path, region, manager="test")
    stale = created["metadata"]["resourceVersion"]
    sandbox.admin.patch(path + "/status", {"status": {"observedGeneration": 1}})
    with pytest.raises(RestError) as real:
        sandbox.admin.patch(
            path + "/status", {"metadata": {"resourceVersion": stale}, "status": {"observedGeneration": 2}}
        )
    sandbox.admin.delete(path)
    with LoopbackApiServer() as server:
        for crd in all_crds():
            server.apply(crd)
        loopback = server.apply(region)
        rtype = server.store.type_of_kind(region["apiVersion"], "Region")
        merge = "application/merge-patch+json"
        server.store.patch(
            rtype, None, "conflict-probe", merge, {"status": {"observedGeneration": 1}}, subresource="status"
        )
        with pytest.raises(ApiError) as mine:
            server.store.patch(
                rtype,
                None,
                "conflict-probe",
                merge,
                {"metadata": {"resourceVersion": loopback["metadata"]["resourceVersion"]}, "status": {}},
                subresource="status",
            )
    assert real.value.code == mine.value.code == 409


def test_a_child_written_for_an_owner_that_is_gone_is_collected_on_both_servers(sandbox: Sandbox) -> None:
    """An operator racing its owner's deletion may write a child after the owner went: kube's
    garbage collector deletes a dependent none of whose owners exists; the loopback server
    does the same (it once kept such runtime ConfigMaps for ever: the chaos benchmark's orphans)."""
    from voiceop.sandbox.apiserver import LoopbackApiServer

    _ensure_namespace(sandbox, "orphans")
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "gone-agent-runtime",
            "namespace": "orphans",
            "ownerReferences": [
                {
                    "apiVersion": "voiceop.dev/v1alpha1",
                    "kind": "VoiceAgent",
                    "name": "gone-agent",
                    "uid": "00000000-0000-4000-8000-00000000dead",
                    "controller": True,
                }
            ],
        },
        "data": {"runtime.json": "{}"},
    }
    sandbox.apply(child)
    path = "/api/v1/namespaces/orphans/configmaps/gone-agent-runtime"
    wait_for(lambda: sandbox.admin.get_or_none(path) is None, timeout=60, what="kube's GC collects it")
    with LoopbackApiServer() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "orphans"}})
        server.apply(copy.deepcopy(child))
        assert server.store.find("v1", "ConfigMap", "orphans", "gone-agent-runtime") is None


def _media_deployment(replicas: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "owned"}},
        "template": {
            "metadata": {"labels": {"app": "owned"}},
            # No node has this label: the pods stay Pending, only the Deployment is looked at.
            "spec": {
                "nodeSelector": {"voiceop.dev/nowhere": "true"},
                "containers": [{"name": "media", "image": "voiceop/media-sim:test"}],
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "owned", "namespace": "owners"},
        "spec": spec,
    }


# (step, manager, replicas applied or scaled to; None: left out of the apply)
REPLICA_STEPS: list[tuple[str, str, int | None]] = [
    ("apply", "voiceop", 3),
    ("apply", "voiceop", None),  # voiceop alone owned it: removed, and defaulted to 1
    ("apply", "voiceop", 3),
    ("scale", "scaler", 5),  # an update that changes it takes it from the applier
    ("apply", "voiceop", None),  # kept: the scaler owns it now
    ("apply", "voiceop", 5),  # the same value: owned by both
    ("apply", "voiceop", None),  # kept: the scaler still owns it
    ("apply", "voiceop", 2),  # force takes it back
    ("handover", "voiceop-handover", 2),  # the same value, without force: owned by both
    ("apply", "voiceop", None),  # kept: voiceop-handover still owns it
]


def test_replicas_left_out_of_an_apply_are_removed_only_when_nobody_else_owns_them_on_both_servers(
    sandbox: Sandbox,
) -> None:
    """What voiceop's switch between scaling modes rests on: the loopback server once removed a
    field its applier left out even after another manager (the scaler, through /scale) had
    changed it, while kube-apiserver keeps it for its new owner."""
    from voiceop.sandbox.apiserver import LoopbackApiServer

    _ensure_namespace(sandbox, "owners")
    path = sandbox.discovery.path(_media_deployment(None))
    real = []
    for step, manager, replicas in REPLICA_STEPS:
        if step == "scale":
            sandbox.admin.patch(path + "/scale", {"spec": {"replicas": replicas}})
        else:
            sandbox.admin.apply(path, _media_deployment(replicas), manager=manager, force=step == "apply")
        real.append(sandbox.admin.get(path)["spec"]["replicas"])
    sandbox.admin.delete(path)
    loopback = []
    with LoopbackApiServer() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "owners"}})
        rtype = server.store.type_of_kind("apps/v1", "Deployment")
        for step, manager, replicas in REPLICA_STEPS:
            if step == "scale":
                server.store.patch(
                    rtype,
                    "owners",
                    "owned",
                    "application/merge-patch+json",
                    {"spec": {"replicas": replicas}},
                    subresource="scale",
                )
            else:
                server.store.patch(
                    rtype,
                    "owners",
                    "owned",
                    "application/apply-patch+yaml",
                    _media_deployment(replicas),
                    field_manager=manager,
                    force=step == "apply",
                )
            loopback.append(server.store.find("apps/v1", "Deployment", "owners", "owned")["spec"]["replicas"])
    assert real == [3, 1, 3, 5, 5, 5, 5, 2, 2, 2]
    assert loopback == real


def test_a_list_read_in_chunks_is_the_same_on_both_servers(sandbox: Sandbox, tmp_path: Path) -> None:
    """The operator lists in chunks (limit and continue) so that a relist holds one chunk, not
    every object of a kind, and its relist asks for metadata only; the loopback server serves
    the same chunks, in the same order, each with the first chunk's resourceVersion and a
    continue token on all but the last, and the same PartialObjectMetadata items."""
    import asyncio

    from voiceop.api.kinds import KINDS
    from voiceop.kube import METADATA_ONLY, KubeClient, connection_from_kubeconfig
    from voiceop.sandbox.apiserver import LoopbackApiServer

    namespace = "chunked-list"
    config_maps = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"cm-{i}", "namespace": namespace, "labels": {"probe": "chunks"}}}
        for i in (3, 0, 6, 1, 5, 2, 4)
    ]  # fmt: skip

    async def read(kubeconfig: Path) -> tuple[list[list[str]], list[dict[str, Any]]]:
        client = KubeClient.connect(connection_from_kubeconfig(kubeconfig))
        try:
            names = [
                [c["metadata"]["name"] for c in chunk]
                async for chunk in client.list_chunks(
                    KINDS["ConfigMap"], namespace, "probe=chunks", chunk_size=3
                )
            ]
            # The relist's form: metadata alone (PartialObjectMetadata), in the same chunks.
            slim = [
                chunk
                async for chunk in client.list_chunks(
                    KINDS["ConfigMap"], namespace, "probe=chunks", chunk_size=3, metadata_only=True
                )
            ]
            assert [[c["metadata"]["name"] for c in chunk] for chunk in slim] == names
            shapes.append({(c.get("apiVersion"), c.get("kind"), *sorted(c)) for chunk in slim for c in chunk})
            assert all(c["metadata"]["labels"] == {"probe": "chunks"} for chunk in slim for c in chunk)
            # A kind with nothing to list: kube-apiserver sends `"items": null` in a
            # PartialObjectMetadataList (`[]` in a full list); a relist read it as a list and
            # died on the first empty kind (VoiceEndpoints in a fleet with none).
            for accept in (None, METADATA_ONLY):
                empty = await client.request(
                    "GET", KINDS["ConfigMap"].path(namespace), verb="list",
                    params={"labelSelector": "probe=none", "limit": "3"}, accept=accept,
                )  # fmt: skip
                empties.append(empty.get("items", "absent"))
            for metadata_only in (False, True):
                chunks = client.list_chunks(
                    KINDS["ConfigMap"], namespace, "probe=none", chunk_size=3, metadata_only=metadata_only
                )
                assert [chunk async for chunk in chunks] == [[]]
            metas, params = [], {"labelSelector": "probe=chunks", "limit": "3"}
            while True:
                page = await client.request(
                    "GET", KINDS["ConfigMap"].path(namespace), verb="list", params=params
                )
                metas.append(page["metadata"])
                if not page["metadata"].get("continue"):
                    return names, metas
                params = {**params, "continue": page["metadata"]["continue"]}
        finally:
            await client.close()

    def table_rows(kubeconfig: Path) -> list[str]:
        """`kubectl get`'s table (what a user reads), three rows a page."""
        shown = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "configmaps", "-n", namespace,
             "-l", "probe=chunks", "--chunk-size=3", "--no-headers"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        return [line.split()[0] for line in shown.splitlines()]

    shapes: list[set[tuple[Any, ...]]] = []
    empties: list[Any] = []
    _ensure_namespace(sandbox, namespace)
    for obj in config_maps:
        sandbox.apply(obj)
    real_names, real_metas = asyncio.run(read(sandbox.admin_kubeconfig))
    real_table = table_rows(sandbox.admin_kubeconfig)
    with LoopbackApiServer() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for obj in config_maps:
            server.apply(obj)
        loopback_kubeconfig = server.write_kubeconfig(tmp_path / "loopback")
        mine_names, mine_metas = asyncio.run(read(loopback_kubeconfig))
        mine_table = table_rows(loopback_kubeconfig)
    # kubectl pages its tables as well: every row, not the first page's.
    assert real_table == mine_table == [f"cm-{i}" for i in range(7)]
    expected = [["cm-0", "cm-1", "cm-2"], ["cm-3", "cm-4", "cm-5"], ["cm-6"]]
    assert real_names == mine_names == expected
    assert empties == [[], None] * 2  # full, then metadata-only: kube-apiserver, then loopback
    assert (
        shapes[0]
        == shapes[1]
        == {("meta.k8s.io/v1", "PartialObjectMetadata", "apiVersion", "kind", "metadata")}
    )
    for metas in (real_metas, mine_metas):
        assert len({m["resourceVersion"] for m in metas}) == 1
        assert [bool(m.get("continue")) for m in metas] == [True, True, False]


def test_the_sandbox_kubelet_posts_ready_again_once_a_node_was_marked_unknown(sandbox: Sandbox) -> None:
    """The node lifecycle controller marks a node whose heartbeats lapsed Unknown (and taints
    it: nothing is scheduled there); only the kubelet posts Ready again. Without that, one slow
    pass at 1,000 agents had left every node Unknown and every new pod Pending for good."""
    from voiceop.sandbox.cluster.nodes import NodeSpec, node_is_ready

    spec = NodeSpec("node-heartbeat-probe", {"voiceop.dev/test": "heartbeat"})
    path = f"/api/v1/nodes/{spec.name}"
    sandbox.kubelet.register(spec)
    try:
        conditions = sandbox.admin.get(path)["status"]["conditions"]
        unknown = [
            {**c, "status": "Unknown", "reason": "NodeStatusUnknown"} if c["type"] == "Ready" else c
            for c in conditions
        ]
        sandbox.admin.patch(f"{path}/status", {"status": {"conditions": unknown}}, kind="strategic")
        assert not node_is_ready(sandbox.admin.get(path))
        wait_for(lambda: node_is_ready(sandbox.admin.get(path)), timeout=30, what="the node Ready again")
    finally:
        sandbox.kubelet.nodes.pop(spec.name, None)
        sandbox.admin.delete(path)
