"""VoiceAgent: the team's media runtime, its AI backends and where it runs (namespaced)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from voiceop.api.base import (
    AGE_COLUMN,
    DEFAULTED,
    E164,
    MAP_BY_NAME,
    READY_COLUMN,
    REASON_COLUMN,
    SET,
    ApiModel,
    Conditions,
    CustomResource,
    FreeForm,
    HttpUrl,
    KindInfo,
    LocalObjectReference,
    ObjectName,
    ObservedGeneration,
    PrinterColumn,
    Quantity,
    SipUri,
    cel,
    rules,
)

ResourceName = Annotated[str, Field(max_length=253)]
FallbackTrigger = Literal["backendUnavailable", "latencyOverBudget", "callerRequest"]


class EnvVar(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!self.name.startsWith('VOICEOP_')",
                "names starting with VOICEOP_ are reserved for voiceop",
                field_path=".name",
            ),
            cel(
                "!(has(self.value) && has(self.valueFrom))",
                "set value or valueFrom, not both",
                field_path=".valueFrom",
            ),
        )
    )

    name: str = Field(
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        max_length=256,
        description="Name of the environment variable.",
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: FreeForm | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...).",
    )


class ResourceRequirements(ApiModel):
    requests: dict[ResourceName, Quantity] = Field(
        default_factory=dict, max_length=16, description="Resources the media container is guaranteed."
    )
    limits: dict[ResourceName, Quantity] = Field(
        default_factory=dict, max_length=16, description="Resources the media container may use at most."
    )


class BackendRef(ApiModel):
    name: ObjectName = Field(description="Name of an AIBackend in the same namespace.")


class SettingsSource(ApiModel):
    config_map_ref: LocalObjectReference = Field(
        description="ConfigMap whose data holds the agent settings; mounted into media pods."
    )


class AgentRegion(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.minReplicas <= self.maxReplicas",
                # No messageExpression: kube-apiserver's cost estimate of string(int) in one
                # exceeds the CRD budget 100-fold, so it refuses the CRD.
                "minReplicas must not be greater than maxReplicas",
                field_path=".minReplicas",
            )
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=63)] = Field(description="Name of a Region.")
    min_replicas: int = Field(default=1, ge=0, description="Fewest media pods kept in the region.")
    max_replicas: int = Field(default=10, ge=1, description="Most media pods run in the region.")


class AgentCapacity(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.callsPerPod >= 1",
                "callsPerPod must be at least 1",
                field_path=".callsPerPod",
            )
        )
    )

    calls_per_pod: int = Field(default=10, description="Hard limit of concurrent calls one media pod takes.")


class LatencySLO(ApiModel):
    p95_ms: int = Field(
        default=800,
        ge=1,
        le=60000,
        description="95th percentile voice response latency (caller stops -> agent audio) to keep under, in ms.",
    )


class MetricsSource(ApiModel):
    source: Literal["prometheus", "direct"] = Field(
        default="direct",
        description="Where call and latency metrics come from: a Prometheus server, or scraping media pods directly.",
    )
    prometheus_url: HttpUrl | None = Field(
        default=None,
        description=(
            "Base URL of the Prometheus HTTP API (source prometheus, mode keda). Unset: the operator's"
            " default (voiceop run --prometheus-url, chart value prometheus.url); with neither, the"
            " agent is Ready=False naming both."
        ),
    )


class Scaling(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.targetUtilization > 0.0 && self.targetUtilization <= 1.0",
                "targetUtilization must be in (0, 1]",
                field_path=".targetUtilization",
            ),
        )
    )

    mode: Literal["builtin", "hpa", "keda", "none"] = Field(
        default="builtin",
        description=(
            "builtin: voiceop scales media pods on calls and latency, call-safely; hpa: render an "
            "autoscaling/v2 HPA; keda: render a KEDA ScaledObject; none: fixed replicas."
        ),
    )
    target_utilization: float = Field(
        default=0.7, description="Share of callsPerPod a pod should carry on average, in (0, 1]."
    )
    latency_slo: LatencySLO = Field(
        alias="latencySLO",
        default_factory=LatencySLO,
        json_schema_extra=DEFAULTED,
        description="Voice latency objective; breaching it adds pods.",
    )
    scale_down_delay_seconds: int = Field(
        default=300, ge=0, le=86400, description="How long demand must stay lower before pods are removed."
    )
    metrics: MetricsSource = Field(
        default_factory=MetricsSource,
        json_schema_extra=DEFAULTED,
        description="Where scaling signals are read from.",
    )


class SipTransport(ApiModel):
    port: int = Field(default=5060, ge=1, le=65535, description="SIP signalling port.")
    protocol: Literal["UDP", "TCP", "TLS"] = Field(default="UDP", description="SIP transport.")


class PortRange(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.start < self.end",
                "start must be lower than end",
                field_path=".start",
            )
        )
    )

    start: int = Field(ge=1024, le=65535, description="First RTP port.")
    end: int = Field(ge=1024, le=65535, description="Last RTP port.")


class RtpTransport(ApiModel):
    port_range: PortRange = Field(description="UDP ports for media streams.")


class Transport(ApiModel):
    sip: SipTransport = Field(
        default_factory=SipTransport, json_schema_extra=DEFAULTED, description="SIP signalling."
    )
    rtp: RtpTransport | None = Field(default=None, description="RTP media ports.")
    host_network: bool = Field(
        default=False,
        description=(
            "Run media pods on the node's network (RTP port ranges without NAT). Breaks the restricted"
            " Pod Security profile: host namespaces (hostNetwork) and host ports."
        ),
    )
    network_policy: bool | None = Field(
        default=None,
        description=(
            "A NetworkPolicy `<agent>-media` that admits only SIP, RTP (transport.rtp.portRange, else"
            " every unprivileged UDP port) and metrics (9090/TCP) to the agent's media pods. Unset:"
            " the operator's default (voiceop run --media-network-policy, chart value"
            " mediaPods.networkPolicy)."
        ),
    )


class Drain(ApiModel):
    max_call_duration_seconds: int = Field(
        default=3600,
        ge=0,
        le=86400,
        description=(
            "How long a media pod being removed may keep finishing its calls; also sets its "
            "termination grace period."
        ),
    )


class HumanHandoff(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.sipUri) != has(self.phoneNumber)",
                "set exactly one of sipUri and phoneNumber",
                field_path=".sipUri",
            )
        )
    )

    sip_uri: SipUri | None = Field(default=None, description="SIP URI of the human agents' queue.")
    phone_number: E164 | None = Field(default=None, description="E.164 number of the human agents' line.")


class Fallback(ApiModel):
    human_handoff: HumanHandoff | None = Field(
        default=None, description="Where calls go when the AI cannot help."
    )
    when: list[FallbackTrigger] = Field(
        default_factory=list,
        max_length=3,
        description=(
            "What hands a call to a human: backendUnavailable (the active backend does not answer when"
            " a call arrives: redirected before it is answered), latencyOverBudget (the backend's time"
            " to first audio stays over its latencyBudgetMs for overBudgetTurns turns in a row),"
            " callerRequest (the caller sends handoffDigit as DTMF in a SIP INFO)."
        ),
        json_schema_extra=SET,
    )
    handoff_digit: str = Field(
        default="0",
        max_length=1,
        pattern=r"^[0-9*#]$",
        description="The DTMF digit (SIP INFO, application/dtmf-relay) with which a caller asks for a human.",
    )
    over_budget_turns: int = Field(
        default=2,
        ge=1,
        le=20,
        description="Consecutive turns over the backend's latencyBudgetMs that hand a call off (latencyOverBudget).",
    )
    max_handoff_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description=(
            "Share of calls handed to humans above which the agent reports HandoffsHigh (and a Warning"
            " Event), judged over the operator's hand-off window once it holds enough calls."
        ),
    )


class VoiceAgentSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!(has(self.settings) && has(self.settingsFrom))",
                "set settings or settingsFrom, not both",
                field_path=".settingsFrom",
            ),
            cel(
                "!has(self.fallback) || !has(self.fallback.when) || size(self.fallback.when) == 0"
                " || has(self.fallback.humanHandoff)",
                "fallback.when needs fallback.humanHandoff",
                field_path=".fallback.humanHandoff",
            ),
        )
    )

    image: str = Field(min_length=1, max_length=1024, description="The media runtime's container image.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Environment of the media container.",
        json_schema_extra=MAP_BY_NAME,
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Compute resources of the media container."
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Total media pods across regions, written by `kubectl scale` through the scale "
            "subresource; used by scaling mode none, spread over regions within their bounds."
        ),
    )
    backends: list[BackendRef] = Field(
        min_length=1,
        max_length=8,
        description="AIBackends in failover order: the first available one is active.",
        json_schema_extra=MAP_BY_NAME,
    )
    settings: FreeForm | None = Field(
        default=None, description="Free-form agent settings (prompt, voice, language) for the runtime."
    )
    settings_from: SettingsSource | None = Field(
        default=None, description="Read the agent settings from a ConfigMap instead."
    )
    regions: list[AgentRegion] = Field(
        min_length=1,
        max_length=16,
        description="Regions the agent runs in, with per-region bounds on media pods.",
        json_schema_extra=MAP_BY_NAME,
    )
    capacity: AgentCapacity = Field(
        default_factory=AgentCapacity,
        json_schema_extra=DEFAULTED,
        description="What one media pod can carry.",
    )
    scaling: Scaling = Field(
        default_factory=Scaling, json_schema_extra=DEFAULTED, description="How media pods are scaled."
    )
    transport: Transport = Field(
        default_factory=Transport, json_schema_extra=DEFAULTED, description="How calls reach the media pods."
    )
    drain: Drain = Field(
        default_factory=Drain, json_schema_extra=DEFAULTED, description="How media pods are removed."
    )
    fallback: Fallback | None = Field(default=None, description="Hand-off to humans.")


class AgentRegionStatus(ApiModel):
    name: str = Field(max_length=63, description="Region name.")
    replicas: int = Field(default=0, ge=0, description="Media pods in the region.")
    ready_replicas: int = Field(default=0, ge=0, description="Media pods ready to take calls.")
    desired_replicas: int = Field(
        default=0, ge=0, description="Media pods the scaler wants taking calls (pods draining come on top)."
    )
    active_calls: int = Field(default=0, ge=0, description="Calls in progress in the region.")
    p95_latency_ms: int | None = Field(
        default=None, ge=0, description="Recent 95th percentile voice response latency in ms."
    )
    limited_by: str | None = Field(
        default=None,
        max_length=256,
        description="The bound that held the scaler's last decision below demand (e.g. maxReplicas).",
    )


class HandoffCounts(ApiModel):
    calls: int = Field(default=0, ge=0, description="Calls the media pods handled in the window.")
    handoffs: int = Field(default=0, ge=0, description="Calls handed to a human in the window.")
    rate: str = Field(
        default="0", max_length=16, description='handoffs / calls, as a decimal string (e.g. "0.125").'
    )
    by_reason: dict[FallbackTrigger, int] = Field(
        default_factory=dict, max_length=3, description="Hand-offs in the window by reason."
    )


class RegionHandoffs(HandoffCounts):
    name: str = Field(max_length=63, description="Region name.")


class AgentHandoffs(HandoffCounts):
    window_seconds: int = Field(default=0, ge=0, description="The window the counts cover, in seconds.")
    regions: list[RegionHandoffs] = Field(
        default_factory=list, max_length=16, description="Per-region counts.", json_schema_extra=MAP_BY_NAME
    )


class VoiceAgentStatus(ApiModel):
    observed_generation: ObservedGeneration
    regions: list[AgentRegionStatus] = Field(
        default_factory=list,
        max_length=16,
        description="Per-region state.",
        json_schema_extra=MAP_BY_NAME,
    )
    replicas: int | None = Field(default=None, ge=0, description="Media pods in all regions.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready media pods in all regions.")
    active_calls: int | None = Field(default=None, ge=0, description="Calls in progress in all regions.")
    active_backend: str | None = Field(
        default=None, max_length=253, description="The AIBackend calls use now."
    )
    selector: str | None = Field(
        default=None, max_length=1024, description="Label selector of all media pods (scale subresource)."
    )
    handoffs: AgentHandoffs | None = Field(
        default=None, description="Calls handed to humans over the operator's recent window, by reason."
    )
    conditions: Conditions


class VoiceAgent(CustomResource):
    info = KindInfo(
        kind="VoiceAgent",
        plural="voiceagents",
        short_name="va",
        namespaced=True,
        description="A voice-AI agent: media pods in regions, AI backends in failover order.",
        printer_columns=(
            PrinterColumn("Replicas", ".status.replicas", type="integer"),
            PrinterColumn("Ready-Pods", ".status.readyReplicas", type="integer"),
            PrinterColumn("Calls", ".status.activeCalls", type="integer"),
            PrinterColumn("Backend", ".status.activeBackend"),
            READY_COLUMN,
            REASON_COLUMN,
            PrinterColumn("Image", ".spec.image", priority=1),
            AGE_COLUMN,
        ),
        scale=True,
        name_max_length=63,
    )
    kind: Literal["VoiceAgent"] = "VoiceAgent"
    spec: VoiceAgentSpec = Field(description="Desired state of the agent.")
    status: VoiceAgentStatus | None = Field(default=None, description="Observed state of the agent.")
