"""AIBackend: one AI provider endpoint, whatever the model (namespaced)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from voiceop.api.base import (
    AGE_COLUMN,
    SET,
    ApiModel,
    Conditions,
    CustomResource,
    FreeForm,
    HttpUrl,
    KindInfo,
    ObservedGeneration,
    PrinterColumn,
    SecretKeySelector,
    Url,
    cel,
    rules,
)

Provider = Literal[
    "openai-realtime", "google-live", "deepgram", "elevenlabs", "cognigy", "azure-openai", "custom"
]
Capability = Literal["stt", "llm", "tts", "speech-to-speech"]


class BackendLimits(ApiModel):
    max_concurrent_sessions: int | None = Field(
        default=None,
        ge=1,
        description="Provider quota of concurrent sessions; scaling never plans past it.",
    )


class HealthCheck(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.timeoutMs < self.intervalSeconds * 1000",
                "timeoutMs must be shorter than intervalSeconds",
                field_path=".timeoutMs",
            )
        )
    )

    url: HttpUrl = Field(description="HTTP(S) URL the operator probes; any 2xx is healthy.")
    interval_seconds: int = Field(default=10, ge=1, le=3600, description="Seconds between two probes.")
    timeout_ms: int = Field(
        default=2000, ge=1, description="Milliseconds after which a probe counts as failed."
    )


class AIBackendSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.protocol != 'websocket' || self.endpoint.matches('^wss?://')",
                "a websocket backend needs a ws:// or wss:// endpoint",
                field_path=".endpoint",
            ),
            cel(
                "self.protocol != 'http' || self.endpoint.matches('^https?://')",
                "an http backend needs an http:// or https:// endpoint",
                field_path=".endpoint",
            ),
        )
    )

    provider: Provider = Field(description="Who serves the model.")
    protocol: Literal["websocket", "grpc", "http"] = Field(
        default="websocket", description="Wire protocol the media runtime speaks to the endpoint."
    )
    endpoint: Url = Field(description="URL of the provider endpoint.")
    regional_endpoints: dict[Annotated[str, Field(max_length=63)], Url] = Field(
        default_factory=dict,
        max_length=64,
        description=(
            "Endpoint to use from a given Region, by Region name (data residency, latency); "
            "regions not listed use `endpoint`."
        ),
    )
    model: str | None = Field(default=None, max_length=256, description="Model name or ID at the provider.")
    capabilities: list[Capability] = Field(
        default_factory=list,
        max_length=4,
        description="What the backend does: a subset of stt, llm, tts, speech-to-speech.",
        json_schema_extra=SET,
    )
    credentials_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description=(
            "Secret key holding the credential. Its value reaches media pods only through "
            "secretKeyRef; voiceop never copies it."
        ),
    )
    limits: BackendLimits | None = Field(default=None, description="Provider quotas.")
    latency_budget_ms: int | None = Field(
        default=None,
        ge=1,
        le=60000,
        description="Time-to-first-audio budget for this backend, in milliseconds.",
    )
    health_check: HealthCheck | None = Field(
        default=None, description="HTTP probe of the backend's health, run by the operator."
    )
    options: FreeForm | None = Field(
        default=None, description="Free-form provider options, passed to the media runtime as they are."
    )


class ProbeLatency(ApiModel):
    p50: int | None = Field(default=None, ge=0, description="Median probe latency in ms.")
    p95: int | None = Field(default=None, ge=0, description="95th percentile probe latency in ms.")


class AIBackendStatus(ApiModel):
    observed_generation: ObservedGeneration
    probe_latency_ms: ProbeLatency | None = Field(
        default=None, description="Latency of recent health probes, in milliseconds."
    )
    last_probe_time: datetime | None = Field(default=None, description="When the last probe ran.")
    conditions: Conditions


class AIBackend(CustomResource):
    info = KindInfo(
        kind="AIBackend",
        plural="aibackends",
        short_name="aib",
        namespaced=True,
        description="One AI provider endpoint (speech, language or speech-to-speech model).",
        printer_columns=(
            PrinterColumn("Provider", ".spec.provider"),
            PrinterColumn("Model", ".spec.model"),
            PrinterColumn(
                "Available",
                '.status.conditions[?(@.type=="Available")].status',
                description="Available condition.",
            ),
            PrinterColumn("P95", ".status.probeLatencyMs.p95", type="integer", description="ms"),
            PrinterColumn("Endpoint", ".spec.endpoint", priority=1),
            AGE_COLUMN,
        ),
    )
    kind: Literal["AIBackend"] = "AIBackend"
    spec: AIBackendSpec = Field(description="Desired state of the backend.")
    status: AIBackendStatus | None = Field(default=None, description="Observed state of the backend.")

    def endpoint_for(self, region: str) -> str:
        return self.spec.regional_endpoints.get(region, self.spec.endpoint)
