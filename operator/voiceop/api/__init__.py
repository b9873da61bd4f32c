"""voiceop's API: typed models of the four kinds, their CRDs, and admission of raw objects.

`parse_object` is the one door from a raw manifest or API object to a typed model: it admits
the object as the API server would (defaults, schema, CEL rules), then builds the model, and
raises `InvalidObject` naming every bad field.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any, get_args

import pydantic

from voiceop.api.admission import Admission, FieldError, field_path
from voiceop.api.base import API_VERSION, GROUP, CustomResource
from voiceop.api.crd import crd
from voiceop.api.generated import module_for
from voiceop.api.v1alpha1 import MODELS, AIBackend, Region, VoiceAgent, VoiceEndpoint

KIND_BY_NAME: dict[str, type[CustomResource]] = {kind.info.kind: kind for kind in MODELS}


class InvalidObject(ValueError):
    """An object the API server would refuse, or that voiceop cannot act on."""

    def __init__(self, ref: str, errors: list[FieldError]) -> None:
        self.ref = ref
        self.errors = errors
        super().__init__(f"{ref}: " + "; ".join(str(error) for error in errors))


def is_voiceop_object(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] == GROUP


def object_ref(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name` of a raw object, as far as it can be told."""
    kind = obj.get("kind") or "<no kind>"
    raw_metadata = obj.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    name = metadata.get("name") or "<no name>"
    model = KIND_BY_NAME.get(kind)
    if model is not None and not model.info.namespaced:
        return f"{kind} {name}"
    return f"{kind} {metadata.get('namespace') or 'default'}/{name}"


@functools.cache
def admission_for(kind: type[CustomResource]) -> Admission:
    """Admission of a kind from its generated module: the CRD schema and its check compiled
    ahead of time (`python -m voiceop.api.codegen`; a test holds them current)."""
    generated: Any = module_for(kind.info.kind)
    return Admission(generated.SCHEMA, check=generated.validate)


def _pydantic_errors(error: pydantic.ValidationError) -> list[FieldError]:
    return [
        FieldError(
            field_path(list(item["loc"])),
            f"Invalid value: {item.get('ctx', {}).get('error', item['msg'])}",
        )
        for item in error.errors()
    ]


def parse_object(obj: Mapping[str, Any]) -> CustomResource:
    """A raw Region, AIBackend, VoiceAgent or VoiceEndpoint as its model, or InvalidObject."""
    ref = object_ref(obj)
    if obj.get("apiVersion") != API_VERSION:
        raise InvalidObject(
            ref,
            [
                FieldError(
                    "apiVersion", f"Unsupported value: {obj.get('apiVersion')!r}: supported: {API_VERSION!r}"
                )
            ],
        )
    model = KIND_BY_NAME.get(str(obj.get("kind")))
    if model is None:
        supported = ", ".join(KIND_BY_NAME)
        raise InvalidObject(
            ref, [FieldError("kind", f"Unsupported value: {obj.get('kind')!r}: supported: {supported}")]
        )
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        raise InvalidObject(ref, [FieldError("metadata.name", "Required value")])

    # Status belongs to the operator: it is neither admitted nor trusted, only read if it parses.
    desired = {key: value for key, value in obj.items() if key != "status"}
    defaulted, errors = admission_for(model).admit(desired)
    if errors:
        raise InvalidObject(ref, errors)
    defaulted["metadata"] = _metadata_as_kept(model, defaulted["metadata"])
    try:
        resource = model.model_validate(defaulted)
    except pydantic.ValidationError as error:
        raise InvalidObject(ref, _pydantic_errors(error)) from None
    status = _readable_status(model, obj)
    return resource if status is None else resource.model_copy(update={"status": status})


def _metadata_as_kept(kind: type[CustomResource], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A namespaced object's namespace defaults to `default`; a cluster-scoped one has none."""
    if kind.info.namespaced:
        return {"namespace": "default", **metadata}
    return {k: v for k, v in metadata.items() if k != "namespace"}


@functools.cache
def _status_model(kind: type[CustomResource]) -> Any:
    annotation = kind.model_fields["status"].annotation
    return next(arg for arg in get_args(annotation) if arg is not types.NoneType)


def _readable_status(kind: type[CustomResource], obj: Mapping[str, Any]) -> Any:
    """The object's status as its model, or None: status belongs to the operator, is neither
    admitted nor trusted, and a status that does not parse is recomputed, never a reason to
    refuse the object."""
    if not obj.get("status"):
        return None
    try:
        return _status_model(kind).model_validate(obj["status"])
    except pydantic.ValidationError:
        return None


_SERVER_KEPT = frozenset({"resourceVersion", "managedFields"})  # change with every write


def differs_only_in_status(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether two versions of an object differ in nothing but status (and the metadata every
    write changes): what a status write, voiceop's own or a watch event of one, makes."""
    if before.keys() - {"status"} != after.keys() - {"status"}:
        return False
    if any(before[key] != after[key] for key in after if key not in ("status", "metadata")):
        return False
    old, new = before.get("metadata") or {}, after.get("metadata") or {}
    return {k: v for k, v in old.items() if k not in _SERVER_KEPT} == {
        k: v for k, v in new.items() if k not in _SERVER_KEPT
    }


def with_status_of(resource: CustomResource, obj: Mapping[str, Any]) -> CustomResource:
    """`resource`, parsed from an earlier version of `obj` that differed only in status (see
    `differs_only_in_status`), as `parse_object(obj)` would give it: the spec admitted then,
    the new metadata, and the new status if it parses (else none, as there)."""
    kind = type(resource)
    metadata = type(resource.metadata).model_validate(_metadata_as_kept(kind, obj["metadata"]))
    return resource.model_copy(update={"metadata": metadata, "status": _readable_status(kind, obj)})


def all_crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of every kind, as `crds/` holds them."""
    return [crd(kind) for kind in MODELS]


__all__ = [
    "KIND_BY_NAME",
    "MODELS",
    "AIBackend",
    "FieldError",
    "InvalidObject",
    "Region",
    "VoiceAgent",
    "VoiceEndpoint",
    "admission_for",
    "all_crds",
    "crd",
    "differs_only_in_status",
    "is_voiceop_object",
    "object_ref",
    "parse_object",
    "with_status_of",
]
