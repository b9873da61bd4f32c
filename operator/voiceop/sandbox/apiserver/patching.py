"""The patch formats of the Kubernetes API: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
and server-side apply.

Server-side apply is approximated from what each field manager applied last: what a manager
applied last time and leaves out now is removed unless another manager's last apply also
holds it, what it applies now is merged in (maps field by field; the associative lists of
built-in kinds entry by entry on their keys, as kube-apiserver does, other lists replaced
whole), and fields and entries other managers set stay. A write that changes a field takes it
from every other applier (`disown`), as an update or a forced apply does on kube-apiserver, so
an applier that leaves it out later no longer removes it. Without force, applying a value other
than the live one to a field the manager did not apply before is a conflict (kube-apiserver
asks that the field be owned by another manager: a field only defaulted does not conflict
there). Lists are owned whole by the manager that applied them, custom resources' lists are
all atomic, and strategic merge patch is treated as a merge patch. This is enough for voiceop
and no claim about other clients.
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


def _prune(
    target: Any, previous: Any, current: Any, keyed: bool, others: list[Any], field: str | None = None
) -> Any:
    """Remove from `target` what `previous` set and `current` no longer does, unless one of
    `others` (what the other managers applied, at the same place) holds it too."""
    if isinstance(target, list) and isinstance(previous, list) and keyed:
        keys = map_keys(field, previous)
        if keys is None or map_keys(field, target) != keys:
            return target
        gone = {entry_key(e, keys) for e in previous}
        now = {entry_key(e, keys): e for e in current} if isinstance(current, list) else {}
        gone -= now.keys()
        for other in others:
            if isinstance(other, list) and map_keys(field, other) == keys:
                gone -= {entry_key(e, keys) for e in other}
        before = {entry_key(e, keys): e for e in previous}
        return [
            _prune(e, before[k], now[k], keyed, []) if (k := entry_key(e, keys)) in now and k in before else e
            for e in target
            if entry_key(e, keys) not in gone
        ]
    if not isinstance(target, dict) or not isinstance(previous, dict):
        return target
    result = dict(target)
    for key, old in previous.items():
        if key not in result:
            continue
        held = [o[key] for o in others if isinstance(o, dict) and key in o]
        if not isinstance(current, dict) or key not in current:
            if not held:
                del result[key]
            elif isinstance(old, dict):
                result[key] = _prune(result[key], old, {}, keyed, held, key)
        elif isinstance(old, dict | list):
            result[key] = _prune(result[key], old, current[key], keyed, held, key)
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
    others: list[dict[str, Any]] = [],  # noqa: B006 - read only
    force: bool = True,
) -> dict[str, Any]:
    """The object after a field manager applies `applied`, having applied `previous` before,
    while `others` are what the other managers last applied.

    `associative_lists`: merge the built-in kinds' keyed lists entry by entry (False for
    custom resources, whose lists are atomic here)."""
    if not force:
        taken = _conflicts(live, applied, previous or {})
        if taken:
            raise PatchError(
                "Apply failed with 1 conflict: conflict with another manager: " + ", ".join(taken),
                conflict=True,
            )
    pruned = _prune(live, previous or {}, applied, associative_lists, others)
    return _merge_applied(pruned, applied, associative_lists)


def _conflicts(live: Any, applied: Any, previous: Any, path: str = "") -> list[str]:
    """Fields `applied` would change that this manager had not applied before."""
    if not isinstance(applied, dict) or not isinstance(live, dict):
        return [] if live == applied or previous == applied else [path or "."]
    found = []
    for key, value in applied.items():
        if key in ("apiVersion", "kind", "metadata") and not path:
            continue
        if key in live:
            mine = previous.get(key) if isinstance(previous, dict) else None
            found += _conflicts(live[key], value, mine, f"{path}.{key}")
    return found


def changed_fields(old: Any, new: Any, top: bool = True) -> dict[str, Any]:
    """The fields (lists whole) an update changed, with their new values: what kube-apiserver
    makes the updater own. The object's own metadata and status aside."""
    found: dict[str, Any] = {}
    if not isinstance(new, dict):
        return found
    before = old if isinstance(old, dict) else {}
    for key, value in new.items():
        if top and key in ("metadata", "status", "apiVersion", "kind"):
            continue
        if isinstance(value, dict) and isinstance(before.get(key), dict):
            inner = changed_fields(before[key], value, top=False)
            if inner:
                found[key] = inner
        elif before.get(key) != value:
            found[key] = copy.deepcopy(value)
    return found


def owned_by_update(owned: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    """What an updater owns after one more update: what it owned, and what it changed now."""
    merged = dict(owned)
    for key, value in changed.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = owned_by_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def disown(applied: Any, old: Any, new: Any, keyed: bool = True, field: str | None = None) -> Any:
    """What a manager applied, less the fields a write by someone else changed (they are the
    writer's now); None when nothing is left. Keyed lists are disowned entry by entry."""
    if isinstance(applied, list):
        keys = map_keys(field, applied) if keyed else None
        if keys is None or not isinstance(old, list) or not isinstance(new, list):
            return applied if old == new else None
        old_entries = {entry_key(e, keys): e for e in old}
        new_entries = {entry_key(e, keys): e for e in new}
        kept_entries = []
        for entry in applied:
            entry_id = entry_key(entry, keys)
            if entry_id in new_entries:
                rest = disown(entry, old_entries.get(entry_id), new_entries[entry_id], keyed) or {}
                kept_entries.append({**rest, **{k: entry[k] for k in keys if k in entry}})
        return kept_entries
    if not isinstance(applied, dict):
        return None if old != new else applied
    kept = {}
    for key, value in applied.items():
        before = old.get(key) if isinstance(old, dict) else None
        after = new.get(key) if isinstance(new, dict) else None
        if isinstance(value, dict | list) and isinstance(after, type(value)):
            rest = disown(value, before, after, keyed, key)
            if rest is not None:
                kept[key] = rest
        elif before == after:
            kept[key] = value
    return kept
