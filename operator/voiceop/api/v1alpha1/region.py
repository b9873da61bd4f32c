"""Region: where calls are served (cluster-scoped)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from voiceop.api.base import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    SET,
    ApiModel,
    Conditions,
    CountryCode,
    CustomResource,
    KindInfo,
    ObservedGeneration,
    PrinterColumn,
)

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"

LabelKey = Annotated[str, Field(max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]


class GeoLocation(ApiModel):
    latitude: float = Field(ge=-90, le=90, description="Latitude in decimal degrees.")
    longitude: float = Field(ge=-180, le=180, description="Longitude in decimal degrees.")


class RegionCapacity(ApiModel):
    max_media_pods: int | None = Field(
        default=None,
        ge=0,
        description="Cap on the media pods of all agents in this region; scaling never plans past it.",
    )


class RegionSpec(ApiModel):
    location: GeoLocation | None = Field(
        default=None,
        description="Where the region is; used to estimate caller latency when none is measured.",
    )
    countries: list[CountryCode] = Field(
        default_factory=list,
        max_length=250,
        description="ISO 3166-1 alpha-2 codes of the countries whose callers prefer this region.",
        json_schema_extra=SET,
    )
    node_selector: dict[LabelKey, LabelValue] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Labels of this region's nodes; media pods are pinned to them. "
            f"Default: {{{REGION_LABEL}: <metadata.name>}}."
        ),
    )
    zones: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=16,
        description=f"Zones ({ZONE_LABEL}) of this region; media pods spread across them.",
        json_schema_extra=SET,
    )
    latency_ms: dict[Annotated[str, Field(max_length=63)], Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Measured round-trip time in milliseconds from this region to other regions, by name.",
    )
    capacity: RegionCapacity | None = Field(
        default=None, description="Limits on what all agents together may run in this region."
    )
    maintenance: bool = Field(
        default=False,
        description="Drains the region: no new calls are routed here and nothing scales up here.",
    )


class RegionStatus(ApiModel):
    observed_generation: ObservedGeneration
    media_pods: int | None = Field(
        default=None, ge=0, description="Media pods of all agents running in this region."
    )
    active_calls: int | None = Field(default=None, ge=0, description="Calls in progress in this region.")
    conditions: Conditions


class Region(CustomResource):
    info = KindInfo(
        kind="Region",
        plural="regions",
        short_name="rgn",
        namespaced=False,
        description="A place where voice calls are served: a set of nodes near a set of callers.",
        printer_columns=(
            PrinterColumn("Maintenance", ".spec.maintenance", type="boolean"),
            PrinterColumn("Pods", ".status.mediaPods", type="integer"),
            PrinterColumn("Calls", ".status.activeCalls", type="integer"),
            READY_COLUMN,
            REASON_COLUMN,
            PrinterColumn("Countries", ".spec.countries", priority=1),
            AGE_COLUMN,
        ),
        name_max_length=63,
    )
    kind: Literal["Region"] = "Region"
    spec: RegionSpec = Field(description="Desired state of the region.")
    status: RegionStatus | None = Field(default=None, description="Observed state of the region.")

    @property
    def node_selector(self) -> dict[str, str]:
        return self.spec.node_selector or {REGION_LABEL: self.name}
