"""The operator as it ships (own process, the chart's ServiceAccount and RBAC) on the real
control plane: children, garbage collection, zero writes on restart and relist, kubectl, and
call-safe builtin autoscaling with media-sim pods run by the sandbox kubelet."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from clusterlib import OperatorProcess, Sandbox, condition, independent_client, operator_process, wait_for
from harness import ProbeTarget, loopback_examples

NS = "contact-center"
MINIMUMS = {"eu-west": 2, "us-east": 2, "ap-southeast": 1}
WATCHED_RESOURCES = {
    "regions",
    "aibackends",
    "voiceagents",
    "voiceendpoints",
    "deployments",
    "services",
    "configmaps",
    "poddisruptionbudgets",
    "horizontalpodautoscalers",
}  # Events are posted by every controller: voiceop's own are counted by their reporter.


@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeTarget]:
    with ProbeTarget() as target:
        yield target


def agent(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    return sandbox.get("voiceop.dev/v1alpha1", "VoiceAgent", NS, name)


def settled(sandbox: Sandbox) -> bool:
    """Both agents Ready, done rolling out, billing at its minimums with every pod Ready."""
    billing, support = agent(sandbox, "billing"), agent(sandbox, "support")
    if not all(condition(a, "Ready").get("status") == "True" for a in (billing, support)):
        return False
    if condition(billing, "Progressing").get("status") != "False":
        return False
    regions = ((billing or {}).get("status") or {}).get("regions") or []
    return {r["name"]: r["readyReplicas"] for r in regions} == MINIMUMS


def operator_writes(operator: OperatorProcess) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        match = re.match(r"voiceop_api_requests_total\{(.*)\} (\S+)", line)
        if match and re.search(r'verb="(apply|patch|patch_status|delete|create_event)"', match.group(1)):
            total += float(match.group(2))
    return total


def voiceop_writes(sandbox: Sandbox) -> dict[tuple[str, str, str], float]:
    """Writes to what voiceop owns or reads, from kube-apiserver's own apiserver_request_total."""
    return {
        key: count
        for key, count in sandbox.write_requests().items()
        if key[1] in WATCHED_RESOURCES or (key[1] == "pods" and key[2] == "")
    }


@pytest.fixture(scope="module")
def converged(
    sandbox: Sandbox, probe: ProbeTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    objects = loopback_examples(probe)
    for obj in objects:
        # Probes write AIBackend status on their own clock (latency figures); the loopback tier
        # tests them. Here every write must be a reconcile's.
        obj.get("spec", {}).pop("healthCheck", None)
    sandbox.apply_all(objects)
    with operator_process(sandbox, tmp_path_factory.mktemp("operator")) as operator:
        wait_for(lambda: settled(sandbox), timeout=120, what="agents Ready at their minimum pods")
        yield operator


def test_children_carry_owner_references_and_labels_and_agents_are_ready(
    sandbox: Sandbox, converged: OperatorProcess
) -> None:
    billing = agent(sandbox, "billing")
    assert billing is not None
    deployments = sandbox.list("apps/v1", "Deployment", NS, "voiceop.dev/agent=billing")
    assert {d["metadata"]["name"] for d in deployments} == {f"billing-{r}" for r in MINIMUMS}
    apps = k8s.AppsV1Api(independent_client(sandbox))  # the official client, not voiceop's
    for deployment in apps.list_namespaced_deployment(NS, label_selector="voiceop.dev/agent=billing").items:
        (owner,) = deployment.metadata.owner_references
        assert (owner.kind, owner.uid) == ("VoiceAgent", billing["metadata"]["uid"])
        assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "voiceop"
    pods = sandbox.list("v1", "Pod", NS, "voiceop.dev/agent=billing")
    assert all(p["status"]["podIP"].startswith("127.") for p in pods)
    zones = {
        p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"]["voiceop.dev/region"] == "eu-west"
    }
    assert len(zones) == 2, "the real scheduler spreads eu-west's two pods over its two zones"
    routes = sandbox.get("v1", "ConfigMap", NS, "voiceop-routes")
    assert routes is not None and "routes.json" in routes["data"]
    assert condition(billing, "BackendAvailable")["status"] == "True"


def test_kubectl_shows_printer_columns_waits_and_scales(sandbox: Sandbox, converged: OperatorProcess) -> None:
    table = sandbox.kubectl("get", "voiceagents", "-n", NS).stdout
    header = table.splitlines()[0].split()
    assert header[:3] == ["NAME", "REPLICAS", "READY-PODS"] and "BACKEND" in header and "READY" in header
    assert re.search(r"^billing\s+5\s+5\s", table, re.M), table
    sandbox.kubectl("wait", "--for=condition=Ready", "voiceagent/billing", "-n", NS, "--timeout=30s")
    scaled = sandbox.kubectl("scale", "voiceagent/support", "-n", NS, "--replicas=3")
    assert "scaled" in scaled.stdout
    assert (agent(sandbox, "support") or {})["spec"]["replicas"] == 3


DEBUG_PORT = {"name": "debug", "port": 7000, "protocol": "TCP"}


def add_a_port_as_another_manager(sandbox: Sandbox, service: str) -> None:
    """A platform team's tool adds a port to a media Service with its own server-side apply."""
    sandbox.admin.apply(
        f"/api/v1/namespaces/{NS}/services/{service}",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": NS},
            "spec": {"ports": [DEBUG_PORT]},
        },
        manager="platform-team",
    )


def test_a_restarted_operator_writes_nothing(
    sandbox: Sandbox, converged: OperatorProcess, tmp_path: Path
) -> None:
    # Server-side apply keeps the entry another manager added to an associative list: it is no
    # reason to write (an operator that wanted its lists equal would re-apply on every resync).
    add_a_port_as_another_manager(sandbox, "billing-eu-west")
    time.sleep(2)  # the running operator sees it and settles
    converged.process.terminate()
    converged.process.wait(15)
    time.sleep(3)  # a scaler tick of the old one could still be in flight
    before = voiceop_writes(sandbox)
    restarted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with operator_process(sandbox, tmp_path) as second:
        wait_for(
            lambda: 'voiceop_reconciles_total{result="ok",target="agent"}' in second.metrics(),
            timeout=60,
            what="the new operator reconciled",
        )
        time.sleep(8)  # four scaler ticks, a probe interval
        after = voiceop_writes(sandbox)
        ours = [
            e
            for e in sandbox.list("v1", "Event", NS)
            if e.get("reportingComponent") == "voiceop.dev/operator"
        ]
        assert not [e for e in ours if e["metadata"]["creationTimestamp"] >= restarted], ours
        assert operator_writes(second) == 0, [
            m for m in second.metrics().splitlines() if "api_requests_total{" in m
        ]
        assert {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)} == {}
        # A relist after kube-apiserver restarts (every watch dropped): still no write.
        second.stop_checking_rbac()
        sandbox.plane.restart_apiserver()
        time.sleep(10)
        assert operator_writes(second) == 0, second.output()[-2000:]
        assert settled(sandbox)
    service = sandbox.get("v1", "Service", NS, "billing-eu-west") or {}
    assert {"debug", "sip"} <= {p["name"] for p in service["spec"]["ports"]}, service["spec"]["ports"]


def compact_etcd(sandbox: Sandbox) -> int:
    """Compact etcd's history to now (through its HTTP gateway): older resourceVersions are 410."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            sandbox.plane.etcd_url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    revision = int(post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def routed_endpoints(sandbox: Sandbox) -> list[str]:
    routes = sandbox.get("v1", "ConfigMap", NS, "voiceop-routes") or {"data": {"routes.json": "{}"}}
    return [e["endpoint"] for e in json.loads(routes["data"]["routes.json"]).get("endpoints", [])]


def test_after_a_410_relist_the_cache_keeps_no_ghost(
    sandbox: Sandbox, converged: OperatorProcess, tmp_path: Path
) -> None:
    """The operator misses a deletion (stopped), etcd is compacted and kube-apiserver restarted,
    so its watches resume into 410 Gone: the deleted endpoint must leave the routes table."""
    converged.process.terminate()
    converged.process.wait(15)
    with operator_process(sandbox, tmp_path, "--relist-seconds", "5") as operator:
        wait_for(lambda: "support-web" in routed_endpoints(sandbox), timeout=60, what="support-web routed")
        time.sleep(2)  # its watches are established
        operator.stop_checking_rbac()  # kube-apiserver restarts below
        os.kill(operator.process.pid, signal.SIGSTOP)
        try:
            # Watches dropped first, so the deletion reaches no open stream (none buffered in a
            # socket of the stopped process); then history is compacted past its resourceVersions.
            sandbox.plane.restart_apiserver()
            endpoint = sandbox.get("voiceop.dev/v1alpha1", "VoiceEndpoint", NS, "support-web")
            assert endpoint is not None
            sandbox.delete(endpoint)
            compact_etcd(sandbox)
        finally:
            os.kill(operator.process.pid, signal.SIGCONT)
        wait_for(
            lambda: "support-web" not in routed_endpoints(sandbox),
            timeout=60,
            what="the deleted endpoint gone from the routes table (no ghost in the cache)",
        )
        assert "billing-lines" in routed_endpoints(sandbox)


def test_deleting_an_agent_lets_the_garbage_collector_remove_its_children(
    sandbox: Sandbox, converged: OperatorProcess, tmp_path: Path
) -> None:
    with operator_process(sandbox, tmp_path):
        support = agent(sandbox, "support")
        assert support is not None
        assert sandbox.list("apps/v1", "Deployment", NS, "voiceop.dev/agent=support")
        sandbox.delete(support)

        def left() -> list[str]:
            return [
                f"{kind}/{o['metadata']['name']}"
                for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Pod"))
                for o in sandbox.list(api_version, kind, NS, "voiceop.dev/agent=support")
            ]

        wait_for(
            lambda: not left(),
            timeout=90,
            what="support's children collected by kube-controller-manager's garbage collector",
        )
