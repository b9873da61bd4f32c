"""The real operator against the loopback API server: children, status, failover, healing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conftest import EXAMPLES
from harness import Cluster, condition, loopback_cluster, running_operator, wait_for

NS = "contact-center"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with loopback_cluster() as c:
        yield c


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[object]:
    with running_operator(cluster) as runtime:
        yield runtime


def agent_ready(cluster: Cluster, name: str) -> bool:
    return condition(cluster.get("VoiceAgent", NS, name), "Ready").get("status") == "True"


def test_examples_become_children_and_ready_agents(cluster: Cluster, operator: object) -> None:
    cluster.apply_path(EXAMPLES)
    wait_for(lambda: agent_ready(cluster, "billing") and agent_ready(cluster, "support"), what="agents Ready")
    deployments = cluster.children("Deployment", NS, "apps/v1", "billing")
    assert set(deployments) == {"billing-eu-west", "billing-us-east", "billing-ap-southeast"}
    assert set(cluster.children("Service", NS, "v1", "billing")) == set(deployments)
    assert set(cluster.children("PodDisruptionBudget", NS, "policy/v1", "billing")) == set(deployments)
    assert set(cluster.children("HorizontalPodAutoscaler", NS, "autoscaling/v2", "support")) == {
        "support-us-east",
        "support-eu-west",
    }
    owner = deployments["billing-eu-west"]["metadata"]["ownerReferences"][0]
    assert (
        owner["kind"] == "VoiceAgent"
        and owner["uid"] == cluster.get("VoiceAgent", NS, "billing")["metadata"]["uid"]
    )
    agent = cluster.get("VoiceAgent", NS, "billing")
    status = agent["status"]
    assert status["observedGeneration"] == agent["metadata"]["generation"]
    assert status["activeBackend"] == "openai-realtime"
    assert status["selector"] == "voiceop.dev/agent=billing"
    assert {r["name"]: r["readyReplicas"] for r in status["regions"]} == {
        "eu-west": 1,
        "us-east": 1,
        "ap-southeast": 1,
    }
    assert condition(agent, "BackendAvailable")["status"] == "True"
    routes = wait_for(lambda: cluster.get("ConfigMap", NS, "voiceop-routes", "v1"), what="routes ConfigMap")
    table = json.loads(routes["data"]["routes.json"])
    assert [e["endpoint"] for e in table["endpoints"]] == ["billing-lines", "support-web"]
    endpoint = wait_for(
        lambda: (
            condition(cluster.get("VoiceEndpoint", NS, "billing-lines"), "Ready").get("status") == "True"
            and cluster.get("VoiceEndpoint", NS, "billing-lines")
        )
    )
    assert endpoint["status"]["routes"][-1]["match"] == {"callerCountry": "*"}
