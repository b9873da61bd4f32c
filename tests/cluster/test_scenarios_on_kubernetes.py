"""The operator scenarios of tests/test_operator.py on the real control plane, with the operator
as it ships (own process, the chart's RBAC), backends probed over HTTP on 127.0.0.1 and media
pods run by the sandbox kubelet: failover between backends without rolling pods, a Region in
maintenance and a region without Ready pods routed around, a bad object that gets a condition
and an event while the operator lives on, and a region removed from an agent."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from clusterlib import OperatorProcess, Sandbox, condition, operator_process, wait_for
from harness import ProbeTarget, loopback_examples

NS = "scenarios"
API = "voiceop.dev/v1alpha1"


@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeTarget]:
    with ProbeTarget() as target:
        yield target


def in_namespace(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples in a namespace of this module's own (Regions are cluster-wide, shared)."""
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = NS
        elif obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = NS
    return objects


def agent(sandbox: Sandbox, name: str) -> dict[str, Any]:
    return sandbox.get(API, "VoiceAgent", NS, name) or {}


def is_ready(sandbox: Sandbox, name: str) -> bool:
    return condition(agent(sandbox, name), "Ready").get("status") == "True"


def events(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    return [e for e in sandbox.list("v1", "Event", NS) if e["involvedObject"].get("name") == name]


def example(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return json.loads(
        json.dumps(next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name))
    )


@pytest.fixture(scope="module")
def world(
    sandbox: Sandbox, probe: ProbeTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[dict[str, Any]], OperatorProcess]]:
    objects = in_namespace(loopback_examples(probe))
    sandbox.apply_all(objects)
    with operator_process(sandbox, tmp_path_factory.mktemp("scenarios")) as operator:
        wait_for(
            lambda: is_ready(sandbox, "billing") and is_ready(sandbox, "support"), timeout=120, what="Ready"
        )
        yield objects, operator
    sandbox.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})


def test_a_backend_down_fails_over_without_rolling_pods_and_fails_back(
    sandbox: Sandbox, world: tuple[list[dict[str, Any]], OperatorProcess], probe: ProbeTarget
) -> None:
    wait_for(
        lambda: (
            condition(sandbox.get(API, "AIBackend", NS, "openai-realtime"), "Available").get("status")
            == "True"
        ),
        what="backend Available",
    )

    def templates() -> dict[str, Any]:
        deployments = sandbox.list("apps/v1", "Deployment", NS, "voiceop.dev/agent=billing")
        return {d["metadata"]["name"]: d["spec"]["template"] for d in deployments}

    def replicasets() -> set[str]:
        return {
            r["metadata"]["name"]
            for r in sandbox.list("apps/v1", "ReplicaSet", NS, "voiceop.dev/agent=billing")
        }

    before, sets_before = templates(), replicasets()
    probe.modes["openai-realtime"] = "down"
    try:
        failed_over = wait_for(
            lambda: (
                agent(sandbox, "billing").get("status", {}).get("activeBackend") == "self-hosted-pipeline"
                and agent(sandbox, "billing")
            ),
            timeout=30,
            what="failover",
        )
        assert condition(failed_over, "BackendAvailable")["reason"] == "FailedOver"
        backend = sandbox.get(API, "AIBackend", NS, "openai-realtime")
        assert condition(backend, "Available")["status"] == "False"
        runtime = sandbox.get("v1", "ConfigMap", NS, "billing-runtime") or {}
        assert json.loads(runtime["data"]["runtime.json"])["activeBackend"] == "self-hosted-pipeline"
        wait_for(
            lambda: any(e["reason"] == "BackendFailover" for e in events(sandbox, "billing")), what="event"
        )
        # The AI layer changed, the call path did not: same pod templates, no new ReplicaSet.
        assert templates() == before and replicasets() == sets_before
    finally:
        probe.modes.clear()
    wait_for(
        lambda: agent(sandbox, "billing").get("status", {}).get("activeBackend") == "openai-realtime",
        timeout=30,
        what="failback",
    )


def first_choice(sandbox: Sandbox, country: str) -> str | None:
    routes = sandbox.get("v1", "ConfigMap", NS, "voiceop-routes") or {"data": {"routes.json": "{}"}}
    for endpoint in json.loads(routes["data"]["routes.json"]).get("endpoints", []):
        if endpoint["endpoint"] == "billing-lines":
            for route in endpoint["routes"]:
                if route["match"]["callerCountry"] == country:
                    return str(route["regions"][0]["name"])
    return None


def test_a_region_in_maintenance_or_without_ready_pods_is_routed_around(
    sandbox: Sandbox, world: tuple[list[dict[str, Any]], OperatorProcess]
) -> None:
    wait_for(lambda: first_choice(sandbox, "IE") == "eu-west", what="IE routed to eu-west")
    region = {"apiVersion": API, "kind": "Region", "metadata": {"name": "eu-west"}}
    sandbox.admin.patch(sandbox.discovery.path(region), {"spec": {"maintenance": True}})
    try:
        wait_for(lambda: first_choice(sandbox, "IE") == "us-east", what="IE routed around the maintenance")
    finally:
        sandbox.admin.patch(sandbox.discovery.path(region), {"spec": {"maintenance": False}})
    wait_for(lambda: first_choice(sandbox, "IE") == "eu-west", what="IE back in eu-west")

    # Every billing media process in eu-west stops answering: its readiness probe fails.
    stopped = [
        p.process.pid
        for p in sandbox.kubelet.running.values()
        if p.namespace == NS and p.name.startswith("billing-eu-west-")
    ]
    assert stopped
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: first_choice(sandbox, "IE") == "us-east",
            timeout=60,
            what="IE routed around no Ready pods",
        )
        degraded = wait_for(
            lambda: (
                condition(agent(sandbox, "billing"), "Degraded").get("status") == "True"
                and agent(sandbox, "billing")
            ),
            what="Degraded",
        )
        assert "eu-west" in condition(degraded, "Degraded")["message"]
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    wait_for(
        lambda: first_choice(sandbox, "IE") == "eu-west", timeout=60, what="IE back once the pods are Ready"
    )


def test_a_bad_object_gets_a_condition_and_an_event_and_the_operator_lives_on(
    sandbox: Sandbox, world: tuple[list[dict[str, Any]], OperatorProcess]
) -> None:
    objects, operator = world
    bad = example(objects, "VoiceAgent", "billing")
    bad["metadata"]["name"] = "broken"
    # Admitted by the CRD's schema, but no possible phone number: the operator's check.
    bad["spec"]["fallback"]["humanHandoff"] = {"phoneNumber": "+1202555014399"}
    sandbox.apply(bad)
    ready = wait_for(
        lambda: (
            condition(agent(sandbox, "broken"), "Ready").get("reason") == "InvalidSpec"
            and condition(agent(sandbox, "broken"), "Ready")
        ),
        what="InvalidSpec",
    )
    assert ready["status"] == "False" and "spec.fallback.humanHandoff.phoneNumber" in ready["message"]
    wait_for(
        lambda: any(
            e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events(sandbox, "broken")
        ),
        what="a Warning event",
    )
    assert not sandbox.list("apps/v1", "Deployment", NS, "voiceop.dev/agent=broken"), "nothing half-made"
    assert operator.process.poll() is None, "the operator lives on"
    support = example(objects, "VoiceAgent", "support")
    support["spec"]["image"] = "ghcr.io/example/voice-runtime:1.9.0"
    sandbox.apply(support)
    wait_for(
        lambda: (
            (sandbox.get("apps/v1", "Deployment", NS, "support-us-east") or {})["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == "ghcr.io/example/voice-runtime:1.9.0"
        ),
        what="a good agent's change still acted on",
    )
    bad["spec"]["fallback"]["humanHandoff"] = {"phoneNumber": "+353215551234"}
    sandbox.apply(bad)
    wait_for(lambda: is_ready(sandbox, "broken"), timeout=90, what="the fixed object Ready")
    sandbox.delete(bad)


def test_removing_a_region_deletes_its_children_and_its_routes(
    sandbox: Sandbox, world: tuple[list[dict[str, Any]], OperatorProcess]
) -> None:
    objects, _ = world
    billing = example(objects, "VoiceAgent", "billing")
    billing["spec"]["regions"] = [r for r in billing["spec"]["regions"] if r["name"] != "ap-southeast"]
    sandbox.apply(billing)

    def left() -> list[str]:
        return [
            f"{kind}/{o['metadata']['name']}"
            for api_version, kind in (
                ("apps/v1", "Deployment"),
                ("v1", "Service"),
                ("policy/v1", "PodDisruptionBudget"),
            )
            for o in sandbox.list(
                api_version, kind, NS, "voiceop.dev/agent=billing,voiceop.dev/region=ap-southeast"
            )
        ]

    wait_for(lambda: not left(), timeout=60, what="ap-southeast's children deleted")
    wait_for(
        lambda: (
            "ap-southeast"
            not in (sandbox.get("v1", "ConfigMap", NS, "voiceop-routes") or {})["data"]["routes.json"]
        ),
        what="routes without ap-southeast",
    )
    assert sandbox.list("apps/v1", "Deployment", NS, "voiceop.dev/agent=billing,voiceop.dev/region=eu-west")
