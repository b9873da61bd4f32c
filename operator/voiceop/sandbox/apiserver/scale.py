"""The scale subresource's view of an object (autoscaling/v1 Scale), by the type's paths."""

from __future__ import annotations

from typing import Any

from voiceop.sandbox.apiserver.resources import ResourceType

Obj = dict[str, Any]


def get_path(obj: Obj, path: str) -> Any:
    node: Any = obj
    for part in path.strip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def set_path(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def scale_view(rtype: ResourceType, obj: Obj) -> Obj:
    status: Obj = {"replicas": get_path(obj, rtype.status_replicas_path) or 0}
    if rtype.label_selector_path:
        selector = get_path(obj, rtype.label_selector_path)
        if rtype.key == ("apps", "deployments"):
            labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        if selector:
            status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: obj["metadata"][k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in obj["metadata"]
        },
        "spec": {"replicas": get_path(obj, rtype.spec_replicas_path) or 0},
        "status": status,
    }
