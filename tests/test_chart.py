"""The Helm chart, rendered and linted with the real Helm engine (helm-python-sdk, Helm v4)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

helm_python = pytest.importorskip("helm_python")

from conftest import KUBERNETES_VERSIONS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "voiceop"
sys.path.insert(0, str(ROOT / "scripts"))
import generate  # noqa: E402

# Kinds of CRDs no Kubernetes schema knows: checked for shape below instead.
NOT_KUBERNETES = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ClusterKopfPeering"}
TOGGLES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "serviceMonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "prometheusRule": {"metrics": {"prometheusRule": {"enabled": True}}},
    "dashboard": {"dashboard": {"enabled": True}},
    "podMonitor": {"metrics": {"podMonitor": {"enabled": True}}},
    "peering": {"peering": {"enabled": True, "priority": 50}},
    "watchNamespaces": {"watchNamespaces": ["contact-center", "support"]},
    "noCrds": {"crds": {"install": False}},
    "noRbac": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}},
    "noMetricsService": {"metrics": {"service": {"enabled": False}}},
    "edge": {"edge": {"enabled": True, "handoffGateway": "sip:gw.example.com:5060"}},
    "operatorDefaults": {
        "mediaPods": {"networkPolicy": True},
        "prometheus": {"url": "http://prometheus-operated.monitoring:9090"},
    },
    "edgeScoped": {
        "edge": {"enabled": True, "endpointsFrom": "pods", "service": {"type": "LoadBalancer"}},
        "watchNamespaces": ["contact-center"],
    },
    "edgeNoRbac": {
        "edge": {"enabled": True},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "existing"},
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = generate.render_chart(values)
    return [
        doc
        for template, text in sorted(rendered.items())
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_every_toggle_renders_valid_kubernetes(toggle: str) -> None:
    objects = render(TOGGLES[toggle])
    assert by_kind(objects, "Deployment")
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        if obj["kind"] != "CustomResourceDefinition":
            assert labels.get("app.kubernetes.io/name") == "voiceop" and "helm.sh/chart" in labels
        if obj["kind"] in NOT_KUBERNETES:
            assert obj["apiVersion"] in ("monitoring.coreos.com/v1", "kopf.dev/v1")
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_the_operators_arguments_are_ones_voiceop_run_takes(toggle: str) -> None:
    from voiceop.cli import build_parser

    deployment = by_kind(render(TOGGLES[toggle]), "Deployment")[0]
    args = build_parser().parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args.command == "run"
    assert args.media_network_policy is (toggle == "operatorDefaults")
    expected_url = "http://prometheus-operated.monitoring:9090" if toggle == "operatorDefaults" else None
    assert args.prometheus_url == expected_url


def test_toggles_switch_what_they_say() -> None:
    assert not by_kind(render({}), "ServiceMonitor")
    assert by_kind(render(TOGGLES["serviceMonitor"]), "ServiceMonitor")
    assert by_kind(render(TOGGLES["serviceMonitor"]), "ServiceMonitor")[0]["spec"]["endpoints"][0][
        "honorLabels"
    ]
    (pods,) = by_kind(render(TOGGLES["podMonitor"]), "PodMonitor")
    relabel = {
        r["targetLabel"]: r["sourceLabels"][0] for r in pods["spec"]["podMetricsEndpoints"][0]["relabelings"]
    }
    assert relabel == {
        "agent": "__meta_kubernetes_pod_label_voiceop_dev_agent",
        "region": "__meta_kubernetes_pod_label_voiceop_dev_region",
    }
    rule = by_kind(render(TOGGLES["prometheusRule"]), "PrometheusRule")[0]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "VoiceopOperatorDown",
        "VoiceopReconcileErrors",
        "VoiceopLoopFailing",
        "VoiceAgentNotReady",
        "VoiceAgentScalingLimited",
        "AIBackendUnavailable",
        "VoiceAgentHandoffRateHigh",
    }
    dashboard = by_kind(render(TOGGLES["dashboard"]), "ConfigMap")[0]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(next(iter(dashboard["data"].values())))["panels"]
    assert any(
        "voice_handoffs_total" in t["expr"] and "reason, backend" in t["expr"]
        for p in panels
        for t in p["targets"]
    )
    peering = render(TOGGLES["peering"])
    assert {c["metadata"]["name"] for c in by_kind(peering, "CustomResourceDefinition")} >= {
        "clusterkopfpeerings.kopf.dev"
    }
    args = by_kind(peering, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--priority=50" in args and "--standalone" not in args
    scoped = render(TOGGLES["watchNamespaces"])
    assert {b["metadata"]["namespace"] for b in by_kind(scoped, "RoleBinding")} == {
        "contact-center",
        "support",
    }
    assert (
        "--namespace=support"
        in by_kind(scoped, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert not by_kind(render(TOGGLES["noCrds"]), "CustomResourceDefinition")
    assert not by_kind(render(TOGGLES["noRbac"]), "ClusterRole")


def edge_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        o
        for o in render(values)
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "edge"
    ]


def test_edge_runs_kamailio_and_the_sync_on_one_config_folder() -> None:
    edge = edge_objects(TOGGLES["edge"])
    assert sorted(o["kind"] for o in edge) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    assert not edge_objects({}), "off by default: teams with an SBC read voiceop-routes"
    pod = by_kind(edge, "Deployment")[0]["spec"]["template"]["spec"]
    (first,) = pod["initContainers"]
    kamailio, sync = pod["containers"]
    assert first["args"][:2] == sync["args"][:2] == ["edge", "sync"] and first["args"][-1] == "--once"
    assert kamailio["command"] == ["kamailio"] and "-DD" in kamailio["args"]
    mounts = {c["name"]: c["volumeMounts"][0]["mountPath"] for c in (first, kamailio, sync)}
    assert len(set(mounts.values())) == 1
    assert f"--config-dir={mounts['sync']}" in sync["args"]
    # The sync's arguments are ones `voiceop edge sync` takes (the hand-off gateway among them).
    from voiceop.cli import build_parser

    parsed = build_parser().parse_args(sync["args"])
    assert parsed.handoff_gateway == "sip:gw.example.com:5060"
    service = by_kind(edge, "Service")[0]
    assert {(p["name"], p["protocol"]) for p in service["spec"]["ports"]} == {
        ("sip-udp", "UDP"),
        ("sip-tcp", "TCP"),
    }
    # No selector of the operator's matches an edge pod.
    operator = [
        d for d in by_kind(render(TOGGLES["edge"]), "Deployment") if d not in by_kind(edge, "Deployment")
    ][0]
    edge_pod_labels = by_kind(edge, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert not operator["spec"]["selector"]["matchLabels"].items() <= edge_pod_labels.items()
    role = by_kind(edge, "ClusterRole")[0]
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"configmaps", "endpointslices"}
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}  # read-only


def test_edge_scoped_to_namespaces_reads_pods_there_only() -> None:
    edge = edge_objects(TOGGLES["edgeScoped"])
    assert not by_kind(edge, "ClusterRoleBinding")
    assert {b["metadata"]["namespace"] for b in by_kind(edge, "RoleBinding")} == {"contact-center"}
    assert {r for rule in by_kind(edge, "ClusterRole")[0]["rules"] for r in rule["resources"]} == {
        "configmaps",
        "pods",
    }
    sync = by_kind(edge, "Deployment")[0]["spec"]["template"]["spec"]["containers"][1]
    assert "--namespace=contact-center" in sync["args"] and "--endpoints-from=pods" in sync["args"]
    assert by_kind(edge, "Service")[0]["spec"]["externalTrafficPolicy"] == "Local"


def test_chart_lints_clean() -> None:
    for values in TOGGLES.values():
        report = helm_python.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 3},
        {"image": {"pullPolicy": "Sometimes"}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"metrics": {"port": 70000}},
        {"logLevel": "chatty"},
        {"unknownKey": True},
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
        {"edge": {"endpointsFrom": "dns"}},
        {"edge": {"listen": ["0.0.0.0:5060"]}},
        {"edge": {"service": {"type": "External"}}},
    ],
    ids=lambda v: next(iter(v)),
)
def test_values_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmError):
        generate.render_chart(values)


def test_rbac_has_no_wildcards() -> None:
    for values in (TOGGLES["defaults"], TOGGLES["peering"], TOGGLES["watchNamespaces"]):
        for role in by_kind(render(values), "ClusterRole") + by_kind(render(values), "Role"):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)


def test_operator_pod_passes_the_restricted_profile() -> None:
    pod = by_kind(render({}), "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["image"].endswith(":0.1.0"), "a pinned tag: the chart's appVersion"
    assert by_kind(render({}), "Deployment")[0]["spec"]["replicas"] == 1


def test_chart_crds_equal_the_root_crds_and_survive_uninstall() -> None:
    rendered = {c["metadata"]["name"]: c for c in by_kind(render({}), "CustomResourceDefinition")}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        chart_crd = rendered[crd["metadata"]["name"]]
        annotations = chart_crd["metadata"].pop("annotations")
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert annotations["argocd.argoproj.io/sync-options"] == "ServerSideApply=true"
        assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
        assert chart_crd == crd
    for path in (CHART / "files" / "crds").glob("*.yaml"):
        assert path.read_text() == (ROOT / "crds" / path.name).read_text()


def test_notes_show_kubectl_wait() -> None:
    notes = generate.render_chart({})["voiceop/templates/NOTES.txt"]
    assert "kubectl wait --for=condition=Ready voiceagent/" in notes


def test_manifests_are_the_chart_rendered() -> None:
    expected = generate.kustomize_base()
    committed = {p.name: p.read_text() for p in (ROOT / "manifests" / "base").glob("*.yaml")}
    assert committed == expected, "manifests/ drifted from the chart: run `python scripts/generate.py`"
    for name, text in generate.argocd_files().items():
        assert (ROOT / "manifests" / "argocd" / name).read_text() == text


HANDOFF_RULE_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  # billing: 10 calls a minute; 3 handed off a minute for 15 minutes, then none (rate 0.3, then 0).
  - series: 'voice_calls_total{namespace="cc",agent="billing",region="eu-west",pod="b-1",backend="openai",model="gpt"}'
    values: '0+10x40'
  - series: 'voice_handoffs_total{namespace="cc",agent="billing",region="eu-west",pod="b-1",reason="backendUnavailable",backend="openai",model="gpt"}'
    values: '0+3x15 45x25'
  - series: 'voiceop_agent_max_handoff_rate{namespace="cc",agent="billing",job="voiceop",pod="voiceop-1"}'
    values: '0.2x40'
  # support: 10 calls a minute, 1 handed off a minute (0.1, under its 0.2).
  - series: 'voice_calls_total{namespace="cc",agent="support",region="us-east",pod="s-1",backend="self",model="llama"}'
    values: '0+10x40'
  - series: 'voice_handoffs_total{namespace="cc",agent="support",region="us-east",pod="s-1",reason="callerRequest",backend="self",model="llama"}'
    values: '0+1x40'
  - series: 'voiceop_agent_max_handoff_rate{namespace="cc",agent="support",job="voiceop",pod="voiceop-1"}'
    values: '0.2x40'
  # quiet: every call handed off, but one call a minute: too few for a rate.
  - series: 'voice_calls_total{namespace="cc",agent="quiet",region="eu-west",pod="q-1",backend="self",model="llama"}'
    values: '0+1x40'
  - series: 'voice_handoffs_total{namespace="cc",agent="quiet",region="eu-west",pod="q-1",reason="callerRequest",backend="self",model="llama"}'
    values: '0+1x40'
  - series: 'voiceop_agent_max_handoff_rate{namespace="cc",agent="quiet",job="voiceop",pod="voiceop-1"}'
    values: '0.2x40'
  promql_expr_test:
  - expr: voiceop:handoff_rate:ratio5m
    eval_time: 10m
    exp_samples:
    - labels: 'voiceop:handoff_rate:ratio5m{namespace="cc",agent="billing"}'
      value: 0.3
    - labels: 'voiceop:handoff_rate:ratio5m{namespace="cc",agent="support"}'
      value: 0.1
    - labels: 'voiceop:handoff_rate:ratio5m{namespace="cc",agent="quiet"}'
      value: 1
  alert_rule_test:
  - eval_time: 4m
    alertname: VoiceAgentHandoffRateHigh
    exp_alerts: []
  - eval_time: 12m
    alertname: VoiceAgentHandoffRateHigh
    exp_alerts:
    - exp_labels: {severity: warning, namespace: cc, agent: billing}
      exp_annotations:
        summary: VoiceAgent cc/billing hands 30% of its calls to humans.
        description: See status.handoffs of the VoiceAgent, and `voiceop handoffs -n cc` for the calls by reason, backend and model.
  - eval_time: 28m
    alertname: VoiceAgentHandoffRateHigh
    exp_alerts: []
"""


def test_the_handoff_rules_and_alert_pass_promtools_unit_tests(tmp_path: Path) -> None:
    """Prometheus' own rule engine (promtool test rules): the recording rules give the rate,
    the alert fires above an agent's maxHandoffRate, not below it nor on too few calls, and
    clears once the hand-offs stop."""
    import subprocess

    from conftest import require_program

    promtool = require_program("promtool", "apt-get install -y prometheus")
    rule = by_kind(render(TOGGLES["prometheusRule"]), "PrometheusRule")[0]
    groups = [g for g in rule["spec"]["groups"] if g["name"] == "voiceop-handoffs"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(HANDOFF_RULE_TESTS)
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
