"""CustomResourceDefinitions generated from the pydantic models.

pydantic writes JSON Schema 2020-12; a CRD wants a *structural* OpenAPI v3 schema. The
translation: inline every `$ref` (CRDs forbid them), collapse `Optional[X]` to `X` (leaving a
field out is how Kubernetes says "unset"), drop `title`, `additionalProperties: false` and
`propertyNames` (not in the CRD dialect), drop `null` defaults, and keep no defaults in status
(the operator owns it).
"""

from __future__ import annotations

from typing import Any

from voiceop.api.base import GROUP, VERSION, CustomResource, KindInfo

JsonSchema = dict[str, Any]

_DROPPED_KEYS = frozenset({"title", "propertyNames"})


def _resolve(schema: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Inline `$ref` and unwrap `anyOf: [X, {type: null}]`; keys beside them win."""
    schema = dict(schema)
    ref = schema.pop("$ref", None)
    if ref is not None:
        schema = {**defs[ref.rsplit("/", 1)[-1]], **schema}
    any_of = schema.get("anyOf")
    if any_of and {"type": "null"} in any_of and not schema.get("x-kubernetes-int-or-string"):
        (inner,) = [branch for branch in any_of if branch != {"type": "null"}]
        del schema["anyOf"]
        schema = {**_resolve(inner, defs), **schema}
    return schema


def structural(schema: JsonSchema, defs: dict[str, JsonSchema], *, in_status: bool = False) -> JsonSchema:
    """One pydantic (sub)schema as a structural CRD schema."""
    schema = _resolve(schema, defs)
    out: JsonSchema = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default" and (value is None or in_status):
            continue
        if key == "additionalProperties":
            if value is False:
                continue
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
                continue
            value = structural(value, defs, in_status=in_status)
        elif key == "properties":
            value = {name: structural(sub, defs, in_status=in_status) for name, sub in value.items()}
        elif key == "items":
            value = structural(value, defs, in_status=in_status)
        out[key] = value
    if "required" in out and not out["required"]:
        del out["required"]
    if isinstance(out.get("default"), dict) and "properties" in out:
        out["default"] = _with_nested_defaults(out["default"], out)
    return _ordered(out)


def _with_nested_defaults(value: dict[str, Any], schema: JsonSchema) -> dict[str, Any]:
    """An object default with its properties' defaults filled in.

    kube-apiserver validates a default against the schema's CEL rules as written, without
    applying the nested defaults first: `scaling: {}` would fail a rule reading
    `self.targetUtilization`. Spelled out, the default is what defaulting yields anyway.
    """
    filled = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in filled and "default" in sub:
            filled[name] = sub["default"]
    return filled


def _ordered(schema: JsonSchema) -> JsonSchema:
    """type and description first, the rest alphabetical: the CRD files read like hand-written ones."""
    head = [key for key in ("type", "description") if key in schema]
    return {key: schema[key] for key in head + sorted(set(schema) - set(head))}


def _printer_columns(info: KindInfo) -> list[dict[str, Any]]:
    columns = []
    for column in info.printer_columns:
        entry: dict[str, Any] = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
        if column.description:
            entry["description"] = column.description
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    return columns


def openapi_schema(kind: type[CustomResource]) -> JsonSchema:
    """The kind's `openAPIV3Schema`."""
    pydantic_schema = kind.model_json_schema(by_alias=True, mode="validation")
    defs = pydantic_schema.get("$defs", {})
    properties = pydantic_schema["properties"]
    info = kind.info
    metadata: JsonSchema = {"type": "object"}
    if info.name_max_length < 253:
        # The name becomes a label value (voiceop.dev/agent, voiceop.dev/region): 63 at most.
        metadata["properties"] = {"name": {"type": "string", "maxLength": info.name_max_length}}
    return {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": metadata,
            "spec": structural(properties["spec"], defs),
            "status": structural(properties["status"], defs, in_status=True),
        },
    }


def crd(kind: type[CustomResource]) -> JsonSchema:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    info = kind.info
    subresources: JsonSchema = {"status": {}}
    if info.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "voiceop", "app.kubernetes.io/part-of": "voiceop"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": [info.short_name],
                "categories": ["voiceop"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": subresources,
                    "additionalPrinterColumns": _printer_columns(info),
                }
            ],
        },
    }
