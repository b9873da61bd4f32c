"""The patch formats of the Kubernetes API: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
and server-side apply.

Server-side apply is approximated the way a single-writer-per-field cluster behaves: what a
field manager applied last time and leaves out now is removed, what it applies now is merged
in (maps field by field; the associative lists of built-in kinds entry by entry on their keys,
as kube-apiserver does, other lists replaced whole), and fields and entries other managers
set stay. Field ownership conflicts are not detected (every apply acts as `force=true`), and
custom resources' lists are all atomic; strategic merge patch is treated as a merge patch.
Both are enough for voiceop, which applies with force, and neither is a claim about other
clients.
"""

from __future__ import annotations

import copy
from typing import Any

from voiceop.api.list_keys import entry_key, map_keys


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


def _prune(target: Any, previous: Any, current: Any, keyed: bool, field: str | None = None) -> Any:
    """Remove from `target` what `previous` set and `current` no longer does."""
    if isinstance(target, list) and isinstance(previous, list) and keyed:
        keys = map_keys(field, previous)
        if keys is None or map_keys(field, target) != keys:
            return target
        gone = {entry_key(e, keys) for e in previous}
        now = {entry_key(e, keys): e for e in current} if isinstance(current, list) else {}
        gone -= now.keys()
        before = {entry_key(e, keys): e for e in previous}
        return [
            _prune(e, before[k], now[k], keyed) if (k := entry_key(e, keys)) in now and k in before else e
            for e in target
            if entry_key(e, keys) not in gone
        ]
    if not isinstance(target, dict) or not isinstance(previous, dict):
        return target
    result = dict(target)
    for key, old in previous.items():
        if key not in result:
            continue
        if not isinstance(current, dict) or key not in current:
            del result[key]
        elif isinstance(old, dict | list):
            result[key] = _prune(result[key], old, current[key], keyed, key)
    return result


def _merge_applied(target: Any, applied: Any, keyed: bool, field: str | None = None) -> Any:
    if isinstance(target, dict) and isinstance(applied, dict):
        result = dict(target)
        for key, value in applied.items():
            result[key] = _merge_applied(result.get(key), value, keyed, key)
        return result
    keys = map_keys(field, applied) if keyed and isinstance(applied, list) else None
    if keys is not None and isinstance(target, list) and map_keys(field, target) == keys:
        # Entry by entry: the live order, with entries new to the list at the end.
        incoming = {entry_key(e, keys): e for e in applied}
        merged = [
            _merge_applied(e, incoming.pop(k), keyed) if (k := entry_key(e, keys)) in incoming else e
            for e in target
        ]
        return merged + [copy.deepcopy(e) for e in incoming.values()]
    return copy.deepcopy(applied)


def server_side_apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    previous: dict[str, Any] | None,
    *,
    associative_lists: bool = True,
) -> dict[str, Any]:
    """The object after a field manager applies `applied`, having applied `previous` before.

    `associative_lists`: merge the built-in kinds' keyed lists entry by entry (False for
    custom resources, whose lists are atomic here)."""
    pruned = _prune(live, previous or {}, applied, associative_lists)
    return _merge_applied(pruned, applied, associative_lists)
