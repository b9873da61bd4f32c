"""Which replica works: kopf's peering rule, read from the same peering object kopf keeps.

kopf pauses its own watches on a replica that is not the active one, but not what voiceop runs
beside them (its listing, reconciler, prober and scaler): two replicas would both scale and both
probe. So voiceop's runtime reads the peering object too and works only while this rule says so,
the rule kopf applies (`kopf._core.engines.peering.process_peering_event`): a replica pauses while
another live peer has a higher or the same priority; a peer is dead once `lastseen + lifetime`
has passed, and the standby then takes over.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PeeringRef:
    """This replica in a peering: the object's name, its namespace (None: cluster-wide), who we are."""

    name: str
    identity: str
    priority: int
    namespace: str | None = None


def _seen_until(entry: Mapping[str, Any]) -> datetime.datetime | None:
    try:
        lastseen = datetime.datetime.fromisoformat(str(entry["lastseen"]))
        lifetime = float(entry.get("lifetime", 60))
    except (KeyError, TypeError, ValueError):
        return None
    if lastseen.tzinfo is None:
        lastseen = lastseen.replace(tzinfo=datetime.UTC)
    return lastseen + datetime.timedelta(seconds=lifetime)


def is_active(status: Mapping[str, Any] | None, me: PeeringRef, now: datetime.datetime) -> bool:
    """Whether this replica works: registered, and no other live peer at or above its priority."""
    peers = dict(status or {})
    if me.identity not in peers:
        return False  # kopf has not registered us yet: nobody knows we exist
    for identity, entry in peers.items():
        if identity == me.identity or not isinstance(entry, Mapping):
            continue
        until = _seen_until(entry)
        if until is not None and until > now and int(entry.get("priority", 0)) >= me.priority:
            return False
    return True
