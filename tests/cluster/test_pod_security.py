"""Media pods against the real Pod Security admission of kube-apiserver: the restricted profile
admits every media pod voiceop renders, and refuses one that asks for the host's network, naming
the rules it breaks. A NetworkPolicy per agent passes server-side validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterlib import Sandbox, wait_for
from conftest import EXAMPLES
from voiceop.inputs.loading import load_inventory
from voiceop.render import render_all
from voiceop.render.options import RenderOptions
from voiceop.sandbox.cluster.rest import RestError

RESTRICTED = "psa-restricted"


@pytest.fixture(scope="module")
def restricted_namespace(sandbox: Sandbox) -> str:
    sandbox.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": RESTRICTED,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    # kube-apiserver refuses a Pod until the namespace's default ServiceAccount exists, which
    # kube-controller-manager creates a moment after the namespace (a 403 in CI otherwise).
    wait_for(
        lambda: sandbox.get("v1", "ServiceAccount", RESTRICTED, "default"),
        timeout=30,
        what=f"the default ServiceAccount of {RESTRICTED}",
    )
    return RESTRICTED


def _rendered(tmp_path: Path, **transport: Any) -> list[dict[str, Any]]:
    """The examples rendered with every media NetworkPolicy, agents' transport changed."""
    documents = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] == "VoiceAgent":
                document["spec"].setdefault("transport", {}).update(transport)
            documents.append(document)
    (tmp_path / "examples.yaml").write_text(yaml.safe_dump_all(documents))
    loaded = load_inventory([str(tmp_path / "examples.yaml")])
    assert loaded.errors == []
    return render_all(loaded.inventory, RenderOptions(media_network_policy=True))


def _pod_of(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = copy.deepcopy(deployment["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": deployment["metadata"]["name"], "namespace": namespace, **template["metadata"]},
        "spec": template["spec"],
    }


def _create_dry_run(sandbox: Sandbox, obj: dict[str, Any]) -> None:
    namespace = obj["metadata"]["namespace"]
    plural = {"Pod": "pods"}.get(obj["kind"])
    path = (
        f"/api/v1/namespaces/{namespace}/{plural}"
        if plural
        else f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    )
    sandbox.admin.request("POST", path, obj, params={"dryRun": "All", "fieldValidation": "Strict"})


def test_every_media_pod_passes_the_restricted_profile(
    sandbox: Sandbox, restricted_namespace: str, tmp_path: Path
) -> None:
    deployments = [o for o in _rendered(tmp_path) if o["kind"] == "Deployment"]
    assert len(deployments) >= 4
    for deployment in deployments:
        _create_dry_run(sandbox, _pod_of(deployment, restricted_namespace))


def test_a_media_pod_on_the_hosts_network_is_refused_naming_the_rules(
    sandbox: Sandbox, restricted_namespace: str, tmp_path: Path
) -> None:
    deployment = next(o for o in _rendered(tmp_path, hostNetwork=True) if o["kind"] == "Deployment")
    with pytest.raises(RestError) as refused:
        _create_dry_run(sandbox, _pod_of(deployment, restricted_namespace))
    message = str(refused.value)
    assert refused.value.code == 403, message
    assert "hostNetwork=true" in message and "hostPort" in message, message


def test_the_media_network_policy_passes_server_validation(
    sandbox: Sandbox, restricted_namespace: str, tmp_path: Path
) -> None:
    policies = [o for o in _rendered(tmp_path) if o["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"] for p in policies} == {"billing-media", "support-media"}
    for policy in policies:
        policy = copy.deepcopy(policy)
        policy["metadata"]["namespace"] = restricted_namespace
        policy["metadata"].pop("ownerReferences", None)
        _create_dry_run(sandbox, policy)
