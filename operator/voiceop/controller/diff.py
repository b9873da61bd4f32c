"""Compare before writing: whether a live child already is what voiceop would apply."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from voiceop.api.list_keys import entry_key, map_keys

APPLIED_HASH = "voiceop.dev/applied-hash"


def stamped(desired: dict[str, Any]) -> dict[str, Any]:
    """The object with a hash of itself in an annotation.

    The hash catches what a subset check cannot: a field voiceop set before and leaves out now.
    `desired` is left as it was; the copy shares all but its metadata with it (a deep copy of
    every child was the largest single cost of a reconcile after the render).
    """
    digest = hashlib.sha256(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[
        :16
    ]
    metadata = desired["metadata"]
    annotations = {**(metadata.get("annotations") or {}), APPLIED_HASH: digest}
    return {**desired, "metadata": {**metadata, "annotations": annotations}}


def is_subset(desired: Any, live: Any, field: str | None = None) -> bool:
    """Every field of `desired` is in `live` with the same value (the server may add more, and
    other field managers may add entries to an associative list: server-side apply keeps them)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and is_subset(v, live[k], k) for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        keys = map_keys(field, desired)
        if keys is not None and map_keys(field, live) == keys:
            by_key = {entry_key(e, keys): e for e in live}
            return all((k := entry_key(e, keys)) in by_key and is_subset(e, by_key[k]) for e in desired)
        return len(desired) == len(live) and all(map(is_subset, desired, live))
    return bool(desired == live)


def up_to_date(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """`desired` (stamped) needs no write: same hash, and nobody changed a field it sets."""
    if live is None:
        return False
    hash_live = (live["metadata"].get("annotations") or {}).get(APPLIED_HASH)
    return hash_live == desired["metadata"]["annotations"][APPLIED_HASH] and is_subset(desired, live)


ChildKey = tuple[str, str]  # (kind, name)


@dataclass
class UpToDateMemo:
    """`up_to_date` answers remembered per agent, child and live version.

    The answer is a function of the stamped desired object (its hash covers all of it) and the
    live one (any change to it changes its resourceVersion; a new object has a new uid), so a
    reconcile that meets the same pair again, as the many events of a rollout make it do, skips
    the deep compare. Nothing else is kept: a different hash or version is compared afresh.
    """

    _known: dict[tuple[str, str], dict[ChildKey, tuple[Any, Any, str]]] = field(default_factory=dict)

    def check(self, owner: tuple[str, str], desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
        if live is None:
            return False
        meta = live["metadata"]
        version = (
            meta.get("uid"),
            meta.get("resourceVersion"),
            desired["metadata"]["annotations"][APPLIED_HASH],
        )
        key = (desired["kind"], desired["metadata"]["name"])
        known = self._known.setdefault(owner, {})
        if version[1] is not None and known.get(key) == version:
            return True
        fresh = up_to_date(desired, live)
        if fresh and version[1] is not None:
            known[key] = version
        else:
            known.pop(key, None)
        return fresh

    def forget(self, owner: tuple[str, str], child: ChildKey | None = None) -> None:
        """A pruned child, or (child None) an agent that is gone."""
        if child is None:
            self._known.pop(owner, None)
        else:
            self._known.get(owner, {}).pop(child, None)
