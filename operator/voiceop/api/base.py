"""Building blocks shared by every kind: the model base, CEL rules, common field types.

The pydantic models are the single source of truth for the CRDs: field descriptions become
`kubectl explain`, constraints become the OpenAPI schema, and `cel()` rules attached to a model
become its `x-kubernetes-validations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from voiceop.api.countries import iso_country_codes

GROUP = "voiceop.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    message_expression: str | None = None,
    reason: str = "FieldValueInvalid",
) -> dict[str, str]:
    """One `x-kubernetes-validations` entry.

    `field_path` (relative to the object the rule sits on, e.g. `.maxReplicas`) is what the API
    server, and voiceop's own admission, name in the error.
    """
    entry = {"rule": rule, "message": message, "reason": reason}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def rules(*entries: dict[str, str]) -> JsonDict:
    """`json_schema_extra` carrying CEL rules for a model's `model_config`."""
    return {"x-kubernetes-validations": [dict(entry) for entry in entries]}


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields refused (like `kubectl apply --validate=strict`)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        defer_build=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server would store it: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _known_country(code: str) -> str:
    if code not in iso_country_codes():
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _possible_phone_number(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError(f"{number!r} is not a phone number: {error}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{number!r} is not a possible phone number for its country code")
    return number


# Every string and list is bounded: the API server refuses CEL rules whose cost it cannot bound.
CountryCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2}$", min_length=2, max_length=2),
    AfterValidator(_known_country),
]
E164 = Annotated[
    str,
    Field(pattern=r"^\+[1-9][0-9]{1,14}$", max_length=16),
    AfterValidator(_possible_phone_number),
]
Url = Annotated[str, Field(pattern=r"^(https?|wss?|grpcs?)://[^\s/?#]+[^\s]*$", max_length=2048)]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)]
SipUri = Annotated[str, Field(pattern=r"^sips?:[^\s]+$", max_length=512)]
# A Kubernetes object name (DNS-1123 subdomain).
ObjectName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        min_length=1,
        max_length=253,
    ),
]
# A resource quantity such as 500m, 1Gi or 2: int-or-string in the schema.
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": (
                r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
                r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
            ),
        }
    ),
]
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

# Marks a list whose items are unique scalars, or keyed by `name`, for server-side apply merging.
SET: JsonDict = {"x-kubernetes-list-type": "set"}
MAP_BY_NAME: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
# An object field whose own fields have defaults: `default: {}` lets the API server fill them in
# when the whole object is left out, as pydantic's default_factory does.
DEFAULTED: JsonDict = {"default": {}}


class LocalObjectReference(ApiModel):
    name: ObjectName = Field(description="Name of the object in the same namespace.")


class SecretKeySelector(ApiModel):
    name: ObjectName = Field(description="Name of a Secret in the same namespace.")
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$",
        max_length=253,
        description="Key within the Secret whose value is the credential.",
    )


class Condition(ApiModel):
    """A metav1.Condition: the latest observation of one aspect of the object's state."""

    type: str = Field(max_length=316, description="Type of the condition, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable detail of the transition.")
    last_transition_time: datetime = Field(
        description="When the condition last changed status.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        default_factory=list,
        max_length=16,
        description="Current state of the object, one entry per condition type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]
ObservedGeneration = Annotated[
    int | None,
    Field(default=None, ge=0, description="metadata.generation the status was computed from."),
]


class ObjectMeta(BaseModel):
    """The part of metav1.ObjectMeta that voiceop reads; everything else passes through."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


READY_COLUMN = PrinterColumn(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition."
)
REASON_COLUMN = PrinterColumn(
    "Reason",
    '.status.conditions[?(@.type=="Ready")].reason',
    priority=1,
    description="Why the object is or is not Ready.",
)
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")


@dataclass(frozen=True)
class KindInfo:
    """What a CRD says about a kind beyond its schema."""

    kind: str
    plural: str
    short_name: str
    namespaced: bool
    description: str
    printer_columns: tuple[PrinterColumn, ...]
    scale: bool = False
    # Names that end up in label values (`voiceop.dev/agent`, `voiceop.dev/region`) must fit 63.
    name_max_length: int = 253


class CustomResource(BaseModel):
    """A whole object of one of voiceop's kinds: apiVersion, kind, metadata, spec, status."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)
    info: ClassVar[KindInfo]

    api_version: Literal["voiceop.dev/v1alpha1"] = Field("voiceop.dev/v1alpha1", alias="apiVersion")
    kind: str
    metadata: ObjectMeta

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server would store it: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def ref(self) -> str:
        """`Kind namespace/name` or `Kind name`, as error messages and events name an object."""
        if self.info.namespaced:
            return f"{self.info.kind} {self.namespace}/{self.name}"
        return f"{self.info.kind} {self.name}"
