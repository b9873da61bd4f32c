"""Compare before writing: whether a live child already is what voiceop would apply."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

APPLIED_HASH = "voiceop.dev/applied-hash"


def stamped(desired: dict[str, Any]) -> dict[str, Any]:
    """The object with a hash of itself in an annotation.

    The hash catches what a subset check cannot: a field voiceop set before and leaves out now.
    """
    digest = hashlib.sha256(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[
        :16
    ]
    out = copy.deepcopy(desired)
    out["metadata"].setdefault("annotations", {})[APPLIED_HASH] = digest
    return out


def is_subset(desired: Any, live: Any) -> bool:
    """Every field of `desired` is in `live` with the same value (the server may add more)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    return bool(desired == live)


def up_to_date(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """`desired` (stamped) needs no write: same hash, and nobody changed a field it sets."""
    if live is None:
        return False
    hash_live = (live["metadata"].get("annotations") or {}).get(APPLIED_HASH)
    return hash_live == desired["metadata"]["annotations"][APPLIED_HASH] and is_subset(desired, live)
