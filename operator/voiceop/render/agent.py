"""Children of one VoiceAgent: runtime ConfigMap, and per region Deployment, Service, PDB, autoscaler.

The AI layer (backends, settings, fallback, latency budgets) lives only in the runtime
ConfigMap, which media pods read from a mounted volume and reload; the Deployment's pod
template holds only the transport layer (image, env, resources, ports, placement). So a new
model, a failover or a new prompt never rolls a pod.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from voiceop.api.admission import FieldError
from voiceop.api.v1alpha1 import AIBackend, Region, VoiceAgent
from voiceop.api.v1alpha1.voiceagent import AgentRegion
from voiceop.api.wire import ACCEPTING_CALLS, POD_ANNOTATIONS_DIR, POD_ANNOTATIONS_FILE
from voiceop.render import names
from voiceop.render.metadata import child_labels, object_metadata, selector_labels
from voiceop.render.options import DEFAULT_OPTIONS, RenderOptions
from voiceop.render.templates import load

METRICS_PORT = 9090
RUNTIME_CONFIG_DIR = "/etc/voiceop"
RUNTIME_CONFIG_KEY = "runtime.json"
SETTINGS_DIR = "/etc/voiceop/settings"
# Time the preStop hook and SIGTERM handling get beyond the longest call.
DRAIN_MARGIN_SECONDS = 30
# Ports below this need NET_BIND_SERVICE, the one capability the restricted profile lets a pod add.
PRIVILEGED_PORTS_END = 1024


def quantity(value: float) -> str:
    """A Kubernetes quantity for a metric target: 7.0 -> "7", 3.5 -> "3500m"."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def target_calls_per_pod(calls_per_pod: int, target_utilization: float) -> int:
    """A pod's share of calls at the target utilization (at least one)."""
    return max(1, math.ceil(round(calls_per_pod * target_utilization, 6)))


def credential_env_names(backends: Sequence[AIBackend]) -> dict[str, str]:
    """Backend name -> the environment variable its credential reaches the media pod in."""
    env_names: dict[str, str] = {}
    for backend in backends:
        if backend.spec.credentials_secret_ref is None:
            continue
        candidate = f"VOICEOP_CREDENTIAL_{names.env_var_suffix(backend.name)}"
        if candidate in env_names.values():  # `a-b` and `a.b` both become A_B
            candidate = f"{candidate}_{names.short_hash(backend.name).upper()}"
        env_names[backend.name] = candidate
    return env_names


def runtime_config(
    agent: VoiceAgent, backends: Sequence[AIBackend], active_backend: str | None
) -> dict[str, Any]:
    """What the media runtime reads from its ConfigMap: the whole AI layer."""
    spec = agent.spec
    env_names = credential_env_names(backends)
    config: dict[str, Any] = {
        "agent": agent.name,
        "namespace": agent.namespace,
        "activeBackend": active_backend or (backends[0].name if backends else None),
        "backends": [
            {
                "name": backend.name,
                **backend.spec.to_wire(),
                "credentialsEnv": env_names.get(backend.name),
            }
            for backend in backends
        ],
        "callsPerPod": spec.capacity.calls_per_pod,
        # What the edge fills each pod to before it fills any past it (X-Voiceop-Fill: target).
        "targetCallsPerPod": target_calls_per_pod(
            spec.capacity.calls_per_pod, spec.scaling.target_utilization
        ),
        "latencySLO": spec.scaling.latency_slo.to_wire(),
    }
    for backend in config["backends"]:
        backend.pop("credentialsSecretRef", None)  # where the secret lives is the pod's business
        backend.pop("healthCheck", None)  # the operator probes; the runtime need not
        if backend["credentialsEnv"] is None:
            del backend["credentialsEnv"]
    if spec.settings is not None:
        config["settings"] = spec.settings
    if spec.settings_from is not None:
        config["settingsDir"] = SETTINGS_DIR
    if spec.fallback is not None:
        config["fallback"] = spec.fallback.to_wire()
    return config


def agent_metadata(agent: VoiceAgent, name: str, component: str) -> dict[str, Any]:
    """Metadata of a child that serves an agent in every region."""
    return object_metadata(name, agent.namespace, child_labels(component, agent.name), [agent])


def runtime_configmap(
    agent: VoiceAgent, backends: Sequence[AIBackend], active_backend: str | None = None
) -> dict[str, Any]:
    config = runtime_config(agent, backends, active_backend)
    return load(
        "configmap",
        metadata=agent_metadata(agent, names.runtime_config_name(agent.name), "runtime-config"),
        data={RUNTIME_CONFIG_KEY: json.dumps(config, indent=2, sort_keys=True) + "\n"},
    )


def _container_env(agent: VoiceAgent, region: str, backends: Sequence[AIBackend]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "VOICEOP_AGENT", "value": agent.name},
        {"name": "VOICEOP_REGION", "value": region},
        {"name": "VOICEOP_RUNTIME_CONFIG", "value": f"{RUNTIME_CONFIG_DIR}/{RUNTIME_CONFIG_KEY}"},
        {"name": "VOICEOP_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "VOICEOP_POD_ANNOTATIONS", "value": POD_ANNOTATIONS_FILE},
        {"name": "VOICEOP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "VOICEOP_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    # Sorted by name, so a change of failover order leaves the pod template alone.
    by_name = {backend.name: backend for backend in backends}
    for backend_name, env_name in sorted(credential_env_names(backends).items(), key=lambda i: i[1]):
        ref = by_name[backend_name].spec.credentials_secret_ref
        assert ref is not None  # credential_env_names lists only backends with a secret
        env.append({"name": env_name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    env.extend(item.to_wire() for item in agent.spec.env)
    return env


def _volumes(agent: VoiceAgent) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "runtime-config", "configMap": {"name": names.runtime_config_name(agent.name)}}
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "runtime-config", "mountPath": RUNTIME_CONFIG_DIR, "readOnly": True}
    ]
    # The pod's annotations, kept current by the kubelet: `voiceop.dev/draining-since` there tells
    # the media container it left the serving set (its readiness gate is false).
    volumes.append(
        {
            "name": "pod-annotations",
            "downwardAPI": {
                "items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]
            },
        }
    )
    mounts.append({"name": "pod-annotations", "mountPath": POD_ANNOTATIONS_DIR, "readOnly": True})
    if agent.spec.settings_from is not None:
        volumes.append(
            {"name": "settings", "configMap": {"name": agent.spec.settings_from.config_map_ref.name}}
        )
        mounts.append({"name": "settings", "mountPath": SETTINGS_DIR, "readOnly": True})
    return volumes, mounts


def fixed_replicas(agent: VoiceAgent) -> dict[str, int]:
    """Replicas per region for scaling mode none: spec.replicas spread evenly within bounds."""
    bounds = agent.spec.regions
    if agent.spec.replicas is None:
        return {r.name: r.min_replicas for r in bounds}
    left = agent.spec.replicas
    counts = {r.name: r.min_replicas for r in bounds}
    left -= sum(counts.values())
    while left > 0:
        growable = [r for r in bounds if counts[r.name] < r.max_replicas]
        if not growable:
            break
        for r in growable[:left]:
            counts[r.name] += 1
            left -= 1
    return counts


def sip_service_protocol(agent: VoiceAgent) -> str:
    return "UDP" if agent.spec.transport.sip.protocol == "UDP" else "TCP"


def regional_metadata(agent: VoiceAgent, region: Region, component: str) -> dict[str, Any]:
    """Metadata of an agent's child in one region: shared name, labels, owner."""
    return object_metadata(
        names.media_name(agent.name, region.name),
        agent.namespace,
        child_labels(component, agent.name, region.name),
        [agent],
    )


def container_capabilities(agent: VoiceAgent) -> dict[str, list[str]]:
    """None but what the SIP port needs: the restricted Pod Security profile drops ALL."""
    capabilities = {"drop": ["ALL"]}
    if agent.spec.transport.sip.port < PRIVILEGED_PORTS_END:
        capabilities["add"] = ["NET_BIND_SERVICE"]
    return capabilities


def media_deployment(
    agent: VoiceAgent, bounds: AgentRegion, region: Region, backends: Sequence[AIBackend]
) -> dict[str, Any]:
    spec = agent.spec
    volumes, mounts = _volumes(agent)
    resources = spec.resources.to_wire() if spec.resources else {}
    return load(
        "deployment",
        metadata=regional_metadata(agent, region, "media"),
        # builtin, hpa and keda own spec.replicas; writing it here would fight them.
        replicas=fixed_replicas(agent)[region.name] if spec.scaling.mode == "none" else None,
        selector=selector_labels(agent.name, region.name),
        pod_labels=child_labels("media", agent.name, region.name),
        metrics_port=METRICS_PORT,
        termination_grace_seconds=spec.drain.max_call_duration_seconds + DRAIN_MARGIN_SECONDS,
        # Only the builtin scaler drains through the gate: in hpa, keda and none modes a pod is
        # Ready by its own probe, so new pods serve even while the operator is down.
        readiness_gate=ACCEPTING_CALLS if spec.scaling.mode == "builtin" else None,
        node_selector=region.node_selector,
        zones=region.spec.zones,
        host_network=spec.transport.host_network,
        image=spec.image,
        env=_container_env(agent, region.name, backends),
        sip_port=spec.transport.sip.port,
        sip_protocol=sip_service_protocol(agent),
        resources={k: v for k, v in resources.items() if v},
        capabilities=container_capabilities(agent),
        volume_mounts=mounts,
        volumes=volumes,
    )


def media_service(agent: VoiceAgent, region: Region) -> dict[str, Any]:
    return load(
        "service",
        metadata=regional_metadata(agent, region, "media"),
        selector=selector_labels(agent.name, region.name),
        affinity_timeout_seconds=max(1, agent.spec.drain.max_call_duration_seconds),
        sip_port=agent.spec.transport.sip.port,
        sip_protocol=sip_service_protocol(agent),
        metrics_port=METRICS_PORT,
    )


def media_pdb(agent: VoiceAgent, region: Region) -> dict[str, Any]:
    return load(
        "pdb",
        metadata=regional_metadata(agent, region, "media"),
        selector=selector_labels(agent.name, region.name),
    )


def media_network_policy(agent: VoiceAgent) -> dict[str, Any]:
    """Ingress to an agent's media pods in every region: SIP, RTP and metrics, nothing else."""
    transport = agent.spec.transport
    rtp = transport.rtp.port_range if transport.rtp else None
    start, end = (rtp.start, rtp.end) if rtp else (PRIVILEGED_PORTS_END, 65535)
    ports: list[dict[str, Any]] = [{"protocol": sip_service_protocol(agent), "port": transport.sip.port}]
    ports.append({"protocol": "UDP", "port": start, "endPort": end})
    ports.append({"protocol": "TCP", "port": METRICS_PORT})
    return load(
        "networkpolicy",
        metadata=agent_metadata(agent, names.media_policy_name(agent.name), "media"),
        selector=child_labels("media", agent.name),
        ports=ports,
    )


def wants_network_policy(agent: VoiceAgent, options: RenderOptions) -> bool:
    chosen = agent.spec.transport.network_policy
    return options.media_network_policy if chosen is None else chosen


def replica_bounds(bounds: AgentRegion, region: Region) -> tuple[int, int]:
    """min/max media pods in a region: the agent's bounds under the region's capacity."""
    cap = region.spec.capacity.max_media_pods if region.spec.capacity else None
    high = bounds.max_replicas if cap is None else min(bounds.max_replicas, cap)
    return min(bounds.min_replicas, high), high


PROMETHEUS_FIELD = "spec.scaling.metrics.prometheusUrl"


def prometheus_url(agent: VoiceAgent, options: RenderOptions) -> str | None:
    """The Prometheus an agent reads: its own, else the operator's default."""
    return agent.spec.scaling.metrics.prometheus_url or options.prometheus_url


def render_errors(agent: VoiceAgent, options: RenderOptions) -> list[FieldError]:
    """What stops an admitted agent from rendering with these options (the agent's fields and
    the operator's flags together: no CRD rule can see the flags)."""
    scaling = agent.spec.scaling
    reader = "mode keda" if scaling.mode == "keda" else "metrics.source prometheus"
    if (scaling.mode == "keda" or scaling.metrics.source == "prometheus") and not prometheus_url(
        agent, options
    ):
        return [
            FieldError(
                PROMETHEUS_FIELD,
                f"{reader} needs a Prometheus: set {PROMETHEUS_FIELD}, or the operator's default"
                " (voiceop run --prometheus-url, chart value prometheus.url; voiceop render --prometheus-url)",
            )
        ]
    return []


def media_autoscaler(
    agent: VoiceAgent, bounds: AgentRegion, region: Region, options: RenderOptions = DEFAULT_OPTIONS
) -> dict[str, Any] | None:
    """The HPA (mode hpa) or KEDA ScaledObject (mode keda) of a region; None otherwise."""
    scaling = agent.spec.scaling
    if scaling.mode not in ("hpa", "keda"):
        return None
    name = names.media_name(agent.name, region.name)
    low, high = replica_bounds(bounds, region)
    common = {
        "metadata": regional_metadata(agent, region, "autoscaler"),
        "target": name,
        "max_replicas": max(high, 1),
        "calls_per_pod_target": quantity(agent.spec.capacity.calls_per_pod * scaling.target_utilization),
        "latency_slo_seconds": quantity(scaling.latency_slo.p95_ms / 1000),
        "scale_down_delay_seconds": scaling.scale_down_delay_seconds,
    }
    if scaling.mode == "hpa":
        # HPA's minReplicas must be >= 1 unless the alpha HPAScaleToZero gate is on.
        return load("hpa", min_replicas=max(low, 1), **common)
    pods = f'namespace="{agent.namespace}",pod=~"{names.pod_name_regex(name)}"'
    return load(
        "scaledobject",
        min_replicas=low,
        prometheus_url=prometheus_url(agent, options),
        calls_query=f"sum(voice_active_calls{{{pods}}})",
        latency_query=(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(voice_response_latency_seconds_bucket{{{pods}}}[1m])))"
        ),
        **common,
    )


def render_agent(
    agent: VoiceAgent,
    regions: Mapping[str, Region],
    backends: Mapping[str, AIBackend],
    *,
    active_backend: str | None = None,
    options: RenderOptions = DEFAULT_OPTIONS,
) -> list[dict[str, Any]]:
    """Every child of an agent whose references all resolve (checked by the caller)."""
    agent_backends = [backends[ref.name] for ref in agent.spec.backends]
    children = [runtime_configmap(agent, agent_backends, active_backend)]
    if wants_network_policy(agent, options):
        children.append(media_network_policy(agent))
    for bounds in agent.spec.regions:
        region = regions[bounds.name]
        children.append(media_deployment(agent, bounds, region, agent_backends))
        children.append(media_service(agent, region))
        children.append(media_pdb(agent, region))
        autoscaler = media_autoscaler(agent, bounds, region, options)
        if autoscaler is not None:
            children.append(autoscaler)
    return children
