"""Rendering: every child is a valid Kubernetes object with the contract DESIGN.md promises."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import KUBERNETES_VERSIONS, example_object
from voiceop.api import parse_object
from voiceop.api.inventory import Inventory
from voiceop.inputs.yamlio import dump_all
from voiceop.render import render_agent, render_all
from voiceop.render.agent import RUNTIME_CONFIG_KEY, quantity
from voiceop.render.options import RenderOptions

MANAGED_BY = "app.kubernetes.io/managed-by"


def kubernetes_valid(obj: dict[str, Any], version: str) -> None:
    if obj["apiVersion"] == "keda.sh/v1alpha1":
        # No schema of KEDA's CRD ships with kubernetes-validate: check its shape directly.
        assert set(obj["spec"]) >= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "triggers"}
        assert all(isinstance(v, str) for t in obj["spec"]["triggers"] for v in t["metadata"].values())
        return
    kubernetes_validate.validate(obj, version, strict=True)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_example_object_is_valid_kubernetes(
    rendered_examples: list[dict[str, Any]], version: str
) -> None:
    assert len(rendered_examples) == 20
    for obj in rendered_examples:
        kubernetes_valid(obj, version)


def test_strict_validation_is_not_vacuous(rendered_examples: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(by_kind(rendered_examples, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.34", strict=True)


def test_every_object_is_labelled_and_agent_children_name_agent_and_region(
    rendered_examples: list[dict[str, Any]],
) -> None:
    for obj in rendered_examples:
        labels = obj["metadata"]["labels"]
        assert labels[MANAGED_BY] == "voiceop"
        if obj["kind"] != "ConfigMap":
            assert labels["voiceop.dev/agent"] in {"billing", "support"}
            assert labels["voiceop.dev/region"] in {"eu-west", "us-east", "ap-southeast"}
        assert not any(
            k.startswith("argocd.argoproj.io") or k == "app.kubernetes.io/instance" for k in labels
        )


def test_media_deployment_contract(rendered_examples: list[dict[str, Any]]) -> None:
    deployment = [
        d for d in by_kind(rendered_examples, "Deployment") if d["metadata"]["name"] == "billing-eu-west"
    ][0]
    pod = deployment["spec"]["template"]["spec"]
    assert "replicas" not in deployment["spec"], "builtin mode leaves replicas to the operator"
    assert pod["readinessGates"] == [{"conditionType": "voiceop.dev/accepting-calls"}]
    support = [
        d for d in by_kind(rendered_examples, "Deployment") if d["metadata"]["name"] == "support-us-east"
    ]
    assert "readinessGates" not in support[0]["spec"]["template"]["spec"], (
        "hpa mode: Ready by the pod's own probe, not by the operator"
    )
    assert pod["terminationGracePeriodSeconds"] >= 1800
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "eu-west"}
    zones = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert zones["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [
        "eu-west-a",
        "eu-west-b",
        "eu-west-c",
    ]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    container = pod["containers"][0]
    assert container["lifecycle"]["preStop"]["httpGet"]["path"] == "/drain"
    secret_env = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert secret_env == [
        {
            "name": "VOICEOP_CREDENTIAL_OPENAI_REALTIME",
            "valueFrom": {"secretKeyRef": {"name": "openai-credentials", "key": "api-key"}},
        }
    ]
    apac = [
        d for d in by_kind(rendered_examples, "Deployment") if d["metadata"]["name"] == "billing-ap-southeast"
    ][0]
    assert apac["spec"]["template"]["spec"]["nodeSelector"] == {"node.example.com/pool": "voice-apac"}


def test_media_pods_are_locked_down(rendered_examples: list[dict[str, Any]]) -> None:
    """The restricted profile's fields (the real Pod Security admission: tests/cluster)."""
    for deployment in by_kind(rendered_examples, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        assert "hostNetwork" not in pod
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }


def _billing_with(examples: Any, **spec: Any) -> tuple[Inventory, list[dict[str, Any]]]:
    raw = example_object("VoiceAgent", "billing")
    raw["spec"].update(spec)
    inventory: Inventory = copy.copy(examples.inventory)
    inventory.agents = {
        "contact-center": {**inventory.agents["contact-center"], "billing": parse_object(raw)}
    }
    return inventory, _agent_children(inventory, "billing")


def test_a_privileged_sip_port_adds_only_net_bind_service(examples: Any) -> None:
    _, children = _billing_with(examples, transport={"sip": {"port": 506}})
    container = by_kind(children, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}


def test_a_network_policy_admits_sip_rtp_and_metrics_when_asked(examples: Any) -> None:
    assert by_kind(_agent_children(examples.inventory, "billing"), "NetworkPolicy") == []
    transport = {
        "sip": {"port": 5080, "protocol": "TCP"},
        "rtp": {"portRange": {"start": 20000, "end": 20999}},
    }
    inventory, children = _billing_with(examples, transport={**transport, "networkPolicy": True})
    (policy,) = by_kind(children, "NetworkPolicy")
    kubernetes_valid(policy, "1.34")
    assert policy["metadata"]["name"] == "billing-media"
    assert policy["spec"]["podSelector"]["matchLabels"]["voiceop.dev/agent"] == "billing"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "ports": [
                {"protocol": "TCP", "port": 5080},
                {"protocol": "UDP", "port": 20000, "endPort": 20999},
                {"protocol": "TCP", "port": 9090},
            ]
        }
    ]
    # The operator's default applies only where the agent says nothing.
    on = RenderOptions(media_network_policy=True)
    assert len(by_kind(_agent_children(examples.inventory, "support", options=on), "NetworkPolicy")) == 1
    inventory, _ = _billing_with(examples, transport={"networkPolicy": False})
    assert by_kind(_agent_children(inventory, "billing", options=on), "NetworkPolicy") == []
    pod_labels = by_kind(children, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_secret_values_never_appear_in_output(rendered_examples: list[dict[str, Any]]) -> None:
    assert "replace-me" not in dump_all(rendered_examples)


def test_runtime_configmap_holds_the_ai_layer_in_failover_order(
    rendered_examples: list[dict[str, Any]],
) -> None:
    configmap = [
        c for c in by_kind(rendered_examples, "ConfigMap") if c["metadata"]["name"] == "support-runtime"
    ][0]
    config = json.loads(configmap["data"][RUNTIME_CONFIG_KEY])
    assert [b["name"] for b in config["backends"]] == ["self-hosted-pipeline", "openai-realtime"]
    assert config["activeBackend"] == "self-hosted-pipeline"
    assert config["backends"][1]["regionalEndpoints"] == {"eu-west": "wss://eu.api.openai.com/v1/realtime"}
    assert config["backends"][1]["latencyBudgetMs"] == 600
    assert config["fallback"]["humanHandoff"] == {"sipUri": "sip:support-queue@pbx.example.com"}
    assert config["settingsDir"] == "/etc/voiceop/settings"
    assert "credentialsSecretRef" not in json.dumps(config)


def _agent_children(inventory: Inventory, name: str, **changes: Any) -> list[dict[str, Any]]:
    agent = inventory.agents["contact-center"][name]
    return render_agent(agent, inventory.regions, inventory.backends["contact-center"], **changes)


def test_changing_the_ai_layer_changes_only_the_configmap(examples: Any) -> None:
    inventory: Inventory = examples.inventory
    before = _agent_children(inventory, "billing")
    raw = example_object("VoiceAgent", "billing")
    raw["spec"]["backends"].reverse()
    raw["spec"]["settings"]["prompt"] = "New prompt"
    raw["spec"]["fallback"]["when"] = ["callerRequest"]
    changed = copy.copy(inventory)
    changed.agents = {"contact-center": {**inventory.agents["contact-center"], "billing": parse_object(raw)}}
    after = _agent_children(changed, "billing")
    failover = _agent_children(inventory, "billing", active_backend="self-hosted-pipeline")
    for variant in (after, failover):
        differing = [b["kind"] for b, a in zip(before, variant, strict=False) if a != b]
        assert differing == ["ConfigMap"]


def test_autoscalers_by_mode(rendered_examples: list[dict[str, Any]]) -> None:
    hpas = by_kind(rendered_examples, "HorizontalPodAutoscaler")
    assert {h["metadata"]["name"] for h in hpas} == {"support-us-east", "support-eu-west"}
    target = hpas[0]["spec"]["metrics"][0]["pods"]["target"]
    assert target == {"type": "AverageValue", "averageValue": "3500m"}  # 5 calls x 0.7
    raw = example_object("VoiceAgent", "support")
    raw["spec"]["scaling"] = {
        "mode": "keda",
        "metrics": {"source": "prometheus", "prometheusUrl": "http://prometheus.monitoring:9090"},
    }
    inventory = Inventory.of([parse_object(raw)])
    for name in ("us-east", "eu-west"):
        inventory.add(parse_object(example_object("Region", name)))
    for name in ("openai-realtime", "self-hosted-pipeline"):
        inventory.add(parse_object(example_object("AIBackend", name)))
    scaled = [o for o in render_all(inventory) if o["kind"] == "ScaledObject"]
    assert len(scaled) == 2
    trigger = scaled[0]["spec"]["triggers"][0]["metadata"]
    assert trigger["threshold"] == "3500m" and 'namespace="contact-center"' in trigger["query"]


def test_one_prometheus_for_all_agents_that_name_none(examples: Any) -> None:
    from voiceop.render import render_problems

    raw = example_object("VoiceAgent", "support")
    raw["spec"]["scaling"] = {"mode": "keda"}  # no URL of its own: admission accepts it
    inventory = copy.copy(examples.inventory)
    inventory.agents = {
        "contact-center": {**inventory.agents["contact-center"], "support": parse_object(raw)}
    }
    (agent, error), *_ = render_problems(inventory)
    assert agent.name == "support" and error.path == "spec.scaling.metrics.prometheusUrl"
    assert "--prometheus-url" in error.message and "prometheus.url" in error.message
    default = RenderOptions(prometheus_url="http://prometheus-operated.monitoring:9090")
    assert render_problems(inventory, default) == []
    scaled = [o for o in render_all(inventory, default) if o["kind"] == "ScaledObject"]
    assert {o["spec"]["triggers"][0]["metadata"]["serverAddress"] for o in scaled} == {default.prometheus_url}
    raw["spec"]["scaling"]["metrics"] = {"prometheusUrl": "http://team-prometheus:9090"}
    inventory.agents["contact-center"]["support"] = parse_object(raw)
    scaled = [o for o in render_all(inventory, default) if o["kind"] == "ScaledObject"]
    assert {o["spec"]["triggers"][0]["metadata"]["serverAddress"] for o in scaled} == {
        "http://team-prometheus:9090"
    }


def test_quantity() -> None:
    assert [quantity(x) for x in (7.0, 3.5, 0.8, 12)] == ["7", "3500m", "800m", "12"]


def test_offline_render_has_no_owner_references_and_operator_render_has_them(
    rendered_examples: list[dict[str, Any]],
) -> None:
    assert all("ownerReferences" not in o["metadata"] for o in rendered_examples)
    raw = example_object("VoiceAgent", "billing")
    raw["metadata"]["uid"] = "0a1b2c3d-0000-4000-8000-000000000001"
    agent = parse_object(raw)
    inventory = Inventory.of([agent])
    for name in ("eu-west", "us-east", "ap-southeast"):
        inventory.add(parse_object(example_object("Region", name)))
    for name in ("openai-realtime", "self-hosted-pipeline"):
        inventory.add(parse_object(example_object("AIBackend", name)))
    for child in render_all(inventory):
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "voiceop.dev/v1alpha1",
            "kind": "VoiceAgent",
            "name": "billing",
            "uid": agent.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_render_is_deterministic(examples: Any) -> None:
    first = dump_all(render_all(examples.inventory))
    second = dump_all(render_all(examples.inventory))
    assert first == second


# --- property-generated agents -------------------------------------------------------------

region_names = st.from_regex(r"[a-z][a-z0-9]{0,20}(-[a-z0-9]{1,12}){0,3}", fullmatch=True).filter(
    lambda s: len(s) <= 63
)
agent_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@st.composite
def agent_and_world(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str]:
    regions = draw(st.lists(region_names, min_size=1, max_size=4, unique=True))
    mode = draw(st.sampled_from(["builtin", "hpa", "keda", "none"]))
    bounds = []
    for name in regions:
        high = draw(st.integers(1, 500))
        bounds.append({"name": name, "minReplicas": draw(st.integers(0, high)), "maxReplicas": high})
    agent_name = draw(agent_names)
    spec: dict[str, Any] = {
        "image": "registry.example/voice:" + draw(st.from_regex(r"[0-9]\.[0-9]{1,2}", fullmatch=True)),
        "backends": [{"name": "primary"}, {"name": "secondary"}][: draw(st.integers(1, 2))],
        "regions": bounds,
        "capacity": {"callsPerPod": draw(st.integers(1, 200))},
        "scaling": {
            "mode": mode,
            "targetUtilization": draw(st.floats(0.05, 1.0)),
            "metrics": {"source": "prometheus", "prometheusUrl": "http://prometheus:9090"},
        },
        "transport": {
            "sip": {
                "port": draw(st.integers(1, 65535)),
                "protocol": draw(st.sampled_from(["UDP", "TCP", "TLS"])),
            },
            "hostNetwork": draw(st.booleans()),
        },
        "drain": {"maxCallDurationSeconds": draw(st.integers(0, 86400))},
        "env": [{"name": "MODE", "value": draw(st.text(max_size=20))}],
        "resources": {"requests": {"cpu": draw(st.sampled_from(["100m", "1", "2500m"]))}},
    }
    if draw(st.booleans()):
        spec["replicas"] = draw(st.integers(0, 1000))
    objects = [
        {
            "apiVersion": "voiceop.dev/v1alpha1",
            "kind": "Region",
            "metadata": {"name": name},
            "spec": {"zones": draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True))},
        }
        for name in regions
    ]
    objects += [
        {
            "apiVersion": "voiceop.dev/v1alpha1",
            "kind": "AIBackend",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {
                "provider": "custom",
                "protocol": "grpc",
                "endpoint": "grpc://model:50051",
                "credentialsSecretRef": {"name": f"{name}-key", "key": "token"},
            },
        }
        for name in ("primary", "secondary")
    ]
    objects.append(
        {
            "apiVersion": "voiceop.dev/v1alpha1",
            "kind": "VoiceAgent",
            "metadata": {"name": agent_name, "namespace": "team"},
            "spec": spec,
        }
    )
    return objects, mode


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agent_and_world())
def test_generated_agents_render_to_valid_kubernetes_objects(world: tuple[list[dict[str, Any]], str]) -> None:
    objects, mode = world
    inventory = Inventory.of(parse_object(o) for o in objects)
    assert inventory.reference_errors() == []
    rendered = render_all(inventory)
    for obj in rendered:
        assert len(obj["metadata"]["name"]) <= (63 if obj["kind"] != "ConfigMap" else 253)
        for version in KUBERNETES_VERSIONS:
            kubernetes_valid(obj, version)
    deployments = by_kind(rendered, "Deployment")
    assert len({d["metadata"]["name"] for d in deployments}) == len(deployments)
    assert all(("replicas" in d["spec"]) == (mode == "none") for d in deployments)
    assert dump_all(rendered) == dump_all(render_all(inventory))


def test_compiled_templates_follow_a_changed_template_and_survive_an_unwritable_cache(tmp_path: Any) -> None:
    """The compiled templates kept between processes are keyed by the template's source: an
    edited template renders as edited; a cache directory that cannot be written only costs
    the compile."""
    import jinja2

    from voiceop.render.templates import compiled_templates

    sources, cache = tmp_path / "templates", tmp_path / "cache"
    sources.mkdir()
    cache.mkdir()
    template = sources / "object.json.j2"

    def render(directory: Any = cache) -> str:  # a fresh environment: what a new process sees
        kept = compiled_templates(str(directory))
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(sources), bytecode_cache=kept)
        return env.get_template("object.json.j2").render(name="billing")

    template.write_text('{"name": "{{ name }}", "v": 1}')
    assert render() == '{"name": "billing", "v": 1}'
    assert len(list(cache.iterdir())) == 1, "the compiled template was kept"
    template.write_text('{"name": "{{ name }}", "v": 2}')
    assert render() == '{"name": "billing", "v": 2}'
    for entry in cache.iterdir():
        entry.write_bytes(b"truncated")
    assert render() == '{"name": "billing", "v": 2}'
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert render(not_a_directory / "cache") == '{"name": "billing", "v": 2}'


def test_compiled_templates_are_not_shared_by_environments_that_compile_differently(tmp_path: Any) -> None:
    """jinja2 compiles a filter call by how the filter takes its arguments: an entry kept by a
    process with jinja2's own `tojson` (handed the eval context too) must not be run by
    voiceop's one-argument `tojson`, nor the other way round."""
    import jinja2

    from voiceop.render.templates import compiled_templates, to_json

    sources, cache = tmp_path / "templates", tmp_path / "cache"
    sources.mkdir()
    cache.mkdir()
    (sources / "object.json.j2").write_text("{{ value | tojson }}")

    def render(own_filter: bool) -> str:
        kept = compiled_templates(str(cache))
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(sources), bytecode_cache=kept)
        if own_filter:
            env.filters["tojson"] = to_json
        return env.get_template("object.json.j2").render(value={"a": "<"})

    assert render(own_filter=False) == '{"a": "\\u003c"}'  # jinja2's: HTML-safe
    assert render(own_filter=True) == '{"a": "<"}'
    assert render(own_filter=False) == '{"a": "\\u003c"}'
    assert len(list(cache.iterdir())) == 2, "each environment's compiled template was kept"
