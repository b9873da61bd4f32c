"""The patch formats of the Kubernetes API: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
and server-side apply.

Server-side apply is approximated the way a single-writer-per-field cluster behaves: what a
field manager applied last time and leaves out now is removed, what it applies now is merged
in (maps field by field, lists replaced whole), and fields other managers set stay. Field
ownership conflicts are not detected (every apply acts as `force=true`); strategic merge
patch is treated as a merge patch. Both are enough for voiceop, which applies with force and
owns its children's lists outright, and neither is a claim about other clients.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied: the API server answers 422 (or 409 for a failed test)."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as error:
            raise PatchError(f"path not found: /{'/'.join(parts)}") from error
    return node, parts[-1]


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts)
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError) as error:
        raise PatchError(f"path not found: /{'/'.join(parts)}") from error


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        parent.insert(index, value)
    else:
        parent[last] = value
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts)
    try:
        if isinstance(parent, list):
            parent.pop(int(last))
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError) as error:
        raise PatchError(f"path not found: /{'/'.join(parts)}") from error
    return doc


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902. A failed `test` raises PatchError(conflict=True), as the API server's 409... or
    422; kopf relies on the failure either way."""
    doc = copy.deepcopy(target)
    for op in operations:
        parts = _pointer(op.get("path", ""))
        kind = op.get("op")
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            doc = _add(_remove(doc, parts), parts, copy.deepcopy(op["value"])) if parts else op["value"]
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise PatchError(f"test failed at {op.get('path')}", conflict=True)
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, _pointer(op["from"])))
            if kind == "move":
                doc = _remove(doc, _pointer(op["from"]))
            doc = _add(doc, parts, value)
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


def _prune(target: Any, previous: Any, current: Any) -> Any:
    """Remove from `target` what `previous` set and `current` no longer does."""
    if not isinstance(target, dict) or not isinstance(previous, dict):
        return target
    result = dict(target)
    for key, old in previous.items():
        if key not in result:
            continue
        if not isinstance(current, dict) or key not in current:
            del result[key]
        elif isinstance(old, dict):
            result[key] = _prune(result[key], old, current[key])
    return result


def _merge_applied(target: Any, applied: Any) -> Any:
    if isinstance(target, dict) and isinstance(applied, dict):
        result = dict(target)
        for key, value in applied.items():
            result[key] = _merge_applied(result.get(key), value)
        return result
    return copy.deepcopy(applied)


def server_side_apply(
    live: dict[str, Any], applied: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The object after a field manager applies `applied`, having applied `previous` before."""
    pruned = _prune(live, previous or {}, applied)
    return _merge_applied(pruned, applied)
