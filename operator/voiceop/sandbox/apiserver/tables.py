"""Table responses (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), what `kubectl get`
asks for: a custom resource's columns are its CRD's additionalPrinterColumns, as
kube-apiserver's CRD table convertor builds them (Name first; a date as a human duration; a
string column prints a list or map as compact JSON; a missing value is null). Built-in kinds
get the default convertor's Name and Created At: kube-apiserver's own per-kind printers (a
Pod's READY, STATUS, RESTARTS) are not reproduced.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from voiceop.sandbox.apiserver.resources import ResourceType
from voiceop.status import parse_time

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": (  # ObjectMeta's field description, as kube-apiserver sends it
        "Name must be unique within a namespace. Is required when creating resources, although some"
        " resources may allow a client to request the generation of an appropriate name automatically."
        " Name is primarily intended for creation idempotence and configuration definition. Cannot be"
        " updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
    ),
    "priority": 0,
}
DEFAULT_CRD_COLUMNS = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)
_STEP = re.compile(r"""\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]""")


def wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def wants_metadata_only(accept: str) -> bool:
    """A list of PartialObjectMetadata asked for first (client-go's metadata informers do)."""
    first = accept.split(",")[0]
    return "as=PartialObjectMetadataList" in first and "g=meta.k8s.io" in first


def find(obj: Any, path: str) -> list[Any]:
    """The values of a simple JSONPath (fields, [i], [?(@.f=="v")]) as kube's jsonpath finds them."""
    values, position = [obj], 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            return []
        position = step.end()
        field, index, key, wanted = step.groups()
        found: list[Any] = []
        for value in values:
            if field is not None and isinstance(value, dict) and field in value:
                found.append(value[field])
            elif index is not None and isinstance(value, list) and int(index) < len(value):
                found.append(value[int(index)])
            elif key is not None and isinstance(value, list):
                found += [e for e in value if _matches(e, key, wanted)]
        values = found
    return values


def _matches(entry: Any, key: str, wanted: str) -> bool:
    hits = find(entry, "." + key)
    return bool(hits) and str(hits[0]) == wanted


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def cell(column_type: str, value: Any, now: float) -> Any:
    if value is None:
        return None
    if column_type == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        try:
            return human_duration(now - parse_time(value))
        except ValueError:
            return "<invalid>"
    return None


def metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(rtype: ResourceType, objects: Sequence[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    now = time.time()
    if rtype.schema is None:  # a built-in kind: the default convertor
        columns = [NAME_COLUMN, {"name": "Created At", "type": "date", "format": "", "priority": 0}]
        rows = [
            {
                "cells": [o["metadata"]["name"], o["metadata"].get("creationTimestamp")],
                "object": metadata_only(o),
            }
            for o in objects
        ]
    else:
        printer = rtype.printer_columns or DEFAULT_CRD_COLUMNS
        columns = [NAME_COLUMN] + [
            {
                "name": c["name"],
                "type": c["type"],
                "format": c.get("format", ""),
                "description": c.get("description")
                or f"Custom resource definition column (in JSONPath format): {c['jsonPath']}",
                "priority": c.get("priority", 0),
            }
            for c in printer
        ]
        rows = [
            {
                "cells": [o["metadata"]["name"]]
                + [cell(c["type"], (find(o, c["jsonPath"]) or [None])[0], now) for c in printer],
                "object": metadata_only(o),
            }
            for o in objects
        ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    }
