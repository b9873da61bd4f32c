"""VoiceEndpoint: how calls reach an agent, and which region serves which caller (namespaced)."""

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
    KindInfo,
    LocalObjectReference,
    ObservedGeneration,
    PrinterColumn,
    SipUri,
    cel,
    rules,
)

RoutingPolicy = Literal["nearest", "pinned", "weighted"]


class WebRTC(ApiModel):
    path: str = Field(
        pattern=r"^/[^\s]*$", max_length=512, description="HTTP path of the WebRTC signalling endpoint."
    )


class RoutingRegion(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        description="Name of a Region the agent runs in."
    )
    weight: int = Field(default=1, ge=0, le=1000, description="Relative share of calls (policy weighted).")


class Routing(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.policy == 'nearest' || (has(self.regions) && size(self.regions) > 0)",
                "policy pinned and weighted need regions",
                field_path=".regions",
            ),
            cel(
                "self.policy != 'weighted' || (has(self.regions) && self.regions.exists(r, r.weight > 0))",
                "policy weighted needs at least one region with a weight above 0",
                field_path=".regions",
            ),
        )
    )

    policy: RoutingPolicy = Field(
        default="nearest",
        description=(
            "nearest: by caller country, then measured latency, then distance; pinned: the listed "
            "regions in order; weighted: calls shared by weight."
        ),
    )
    regions: list[RoutingRegion] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Regions to route to: the order for pinned, the weights for weighted; for nearest, an "
            "optional subset of the agent's regions."
        ),
        json_schema_extra=MAP_BY_NAME,
    )
    failover: bool = Field(
        default=True,
        description="Fall over to the next region when one is in maintenance or has no ready pods.",
    )


class VoiceEndpointSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "(has(self.phoneNumbers) && size(self.phoneNumbers) > 0)"
                " || (has(self.sipUris) && size(self.sipUris) > 0) || has(self.webrtc)",
                "set at least one of phoneNumbers, sipUris and webrtc",
                field_path=".phoneNumbers",
            ),
        )
    )

    agent_ref: LocalObjectReference = Field(description="The VoiceAgent that answers these calls.")
    phone_numbers: list[E164] = Field(
        default_factory=list,
        max_length=100,
        description="E.164 numbers callers dial.",
        json_schema_extra=SET,
    )
    sip_uris: list[SipUri] = Field(
        default_factory=list, max_length=100, description="SIP URIs callers dial.", json_schema_extra=SET
    )
    webrtc: WebRTC | None = Field(default=None, description="WebRTC entry point.")
    routing: Routing = Field(
        default_factory=Routing, json_schema_extra=DEFAULTED, description="Which region serves which caller."
    )


class RouteMatch(ApiModel):
    caller_country: str = Field(
        max_length=2,
        description="ISO 3166-1 alpha-2 code of the caller's country, or * for any other caller.",
    )


class RouteTarget(ApiModel):
    name: str = Field(max_length=63, description="Region name.")
    target: str = Field(max_length=512, description="Address of the agent's media Service there.")
    weight: int = Field(ge=0, le=100, description="Percentage of calls sent there (0: failover only).")


class Route(ApiModel):
    match: RouteMatch = Field(description="Which callers the route applies to.")
    regions: list[RouteTarget] = Field(max_length=16, description="Regions in preference order.")


class VoiceEndpointStatus(ApiModel):
    observed_generation: ObservedGeneration
    routes: list[Route] = Field(
        default_factory=list, max_length=512, description="Computed routes, most specific first."
    )
    conditions: Conditions


class VoiceEndpoint(CustomResource):
    info = KindInfo(
        kind="VoiceEndpoint",
        plural="voiceendpoints",
        short_name="vep",
        namespaced=True,
        description="Phone numbers, SIP URIs or a WebRTC path that reach a VoiceAgent.",
        printer_columns=(
            PrinterColumn("Agent", ".spec.agentRef.name"),
            PrinterColumn("Policy", ".spec.routing.policy"),
            READY_COLUMN,
            REASON_COLUMN,
            PrinterColumn("Numbers", ".spec.phoneNumbers", priority=1),
            AGE_COLUMN,
        ),
    )
    kind: Literal["VoiceEndpoint"] = "VoiceEndpoint"
    spec: VoiceEndpointSpec = Field(description="Desired state of the endpoint.")
    status: VoiceEndpointStatus | None = Field(default=None, description="Observed state of the endpoint.")
