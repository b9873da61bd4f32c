"""Status of voiceop's objects as pure functions of what was observed.

Conditions follow metav1.Condition: one per type, `lastTransitionTime` kept unless the status
flips, `observedGeneration` stamped on each. Whether a status needs writing is decided by
comparing with the live one, so an unchanged world costs no write.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voiceop.api import FieldError
from voiceop.api.wire import AGENT_LABEL

Status = dict[str, Any]


def now_iso() -> str:
    """Now, as Kubernetes writes times (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> float:
    """A Kubernetes timestamp as seconds since the epoch."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def condition_status(obj: Mapping[str, Any], kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of one condition of an object, if it has it."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


@dataclass(frozen=True)
class Cond:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str = ""


def set_conditions(
    current: Sequence[Mapping[str, Any]], new: Iterable[Cond], generation: int | None, now: str
) -> list[dict[str, Any]]:
    """The conditions after an observation: transitions stamped `now`, the rest keep their time."""
    new = list(new)
    previous = {c.get("type"): c for c in current}
    result = []
    for cond in new:
        old = previous.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime", now),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        result.append(entry)
    result += [dict(c) for c in current if c.get("type") not in {c.type for c in new}]
    return sorted(result, key=lambda c: str(c["type"]))


def status_differs(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` (a merge patch: None deletes) would change what a reader sees."""
    return dict(live or {}) != without_nones(desired)


def without_nones(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value is not None}


def describe(errors: Sequence[FieldError]) -> str:
    return "; ".join(str(e) for e in errors)


# --- VoiceAgent --------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionObservation:
    """What the Deployment of one agent in one region says."""

    name: str
    min_replicas: int
    desired: int
    replicas: int
    ready: int
    updated: bool  # the Deployment controller has seen and rolled out its latest spec
    active_calls: int = 0
    p95_latency_ms: int | None = None
    limited_by: str | None = None


def agent_conditions(
    regions: Sequence[RegionObservation],
    backends: Sequence[str],
    available_backends: Sequence[str],
    active_backend: str | None,
) -> list[Cond]:
    """Ready, Progressing, Degraded and BackendAvailable of an agent whose children are applied."""
    silent = [r.name for r in regions if r.ready == 0 and r.min_replicas > 0]
    short = [r.name for r in regions if r.ready < r.desired]
    rolling = [r.name for r in regions if not r.updated]
    failover = active_backend is not None and backends and active_backend != backends[0]

    if active_backend is None:
        backend = Cond(
            "BackendAvailable",
            "False",
            "AllBackendsUnavailable",
            f"none of {', '.join(backends)} is available",
        )
    elif failover:
        down = [b for b in backends if b not in available_backends]
        backend = Cond(
            "BackendAvailable", "True", "FailedOver", f"using {active_backend}: {', '.join(down)} unavailable"
        )
    else:
        backend = Cond("BackendAvailable", "True", "Primary", f"using {active_backend}")

    if rolling or short:
        progressing = Cond(
            "Progressing",
            "True",
            "RollingOut" if rolling else "ScalingUp",
            f"waiting for media pods in {', '.join(sorted(set(rolling + short)))}",
        )
    else:
        progressing = Cond("Progressing", "False", "Stable", "every region has its desired media pods")

    degraded_reasons = []
    if silent and len(silent) < len(regions):
        degraded_reasons.append(f"no ready media pods in {', '.join(silent)}")
    if failover:
        degraded_reasons.append(f"failed over to AIBackend {active_backend}")
    degraded = (
        Cond("Degraded", "True", "RegionDown" if silent else "BackendFailover", "; ".join(degraded_reasons))
        if degraded_reasons
        else Cond("Degraded", "False", "AsExpected")
    )

    if active_backend is None:
        ready = Cond("Ready", "False", "NoBackendAvailable", backend.message)
    elif silent and len(silent) == len(regions):
        ready = Cond("Ready", "False", "NoReadyPods", f"no ready media pods in {', '.join(silent)}")
    else:
        serving = [r.name for r in regions if r.ready > 0]
        ready = Cond(
            "Ready",
            "True",
            "Serving",
            f"taking calls in {', '.join(serving) or 'no region (scaled to zero)'}",
        )
    return [ready, progressing, degraded, backend]


def agent_region_status(regions: Sequence[RegionObservation]) -> list[dict[str, Any]]:
    out = []
    for r in regions:
        entry: dict[str, Any] = {
            "name": r.name,
            "replicas": r.replicas,
            "readyReplicas": r.ready,
            "desiredReplicas": r.desired,
            "activeCalls": r.active_calls,
        }
        if r.p95_latency_ms is not None:
            entry["p95LatencyMs"] = r.p95_latency_ms
        if r.limited_by:
            entry["limitedBy"] = r.limited_by
        out.append(entry)
    return out


def agent_status(
    live: Mapping[str, Any],
    generation: int | None,
    agent: str,
    regions: Sequence[RegionObservation],
    conditions: Iterable[Cond],
    active_backend: str | None,
    now: str,
) -> Status:
    """An applied agent's status; conditions this pass does not compute are kept."""
    return {
        "observedGeneration": generation,
        "regions": agent_region_status(regions),
        "replicas": sum(r.replicas for r in regions),
        "readyReplicas": sum(r.ready for r in regions),
        "activeCalls": sum(r.active_calls for r in regions),
        "selector": f"{AGENT_LABEL}={agent}",
        "activeBackend": active_backend,  # None removes it: no backend is active
        "conditions": set_conditions(live.get("conditions") or [], conditions, generation, now),
    }


def scaling_limited(limits: Mapping[str, str | None]) -> Cond:
    """`ScalingLimited` from what bounded each region's last decision (region -> limit)."""
    named = sorted(f"{region}: {limit}" for region, limit in limits.items() if limit)
    if named:
        return Cond("ScalingLimited", "True", "LimitReached", "; ".join(named))
    return Cond("ScalingLimited", "False", "WithinBounds", "")


# --- any kind ----------------------------------------------------------------------------


def refused_status(
    live: Mapping[str, Any], generation: int | None, reason: str, message: str, now: str
) -> Status:
    """A refused object: `Ready=False` naming the fields, the rest of its status kept."""
    ready = Cond("Ready", "False", reason, message)
    return {
        **live,
        "observedGeneration": generation,
        "conditions": set_conditions(live.get("conditions") or [], [ready], generation, now),
    }


# --- VoiceEndpoint -----------------------------------------------------------------------


def endpoint_status(
    live: Mapping[str, Any], generation: int | None, routes: list[dict[str, Any]], now: str
) -> Status:
    if routes:
        ready = Cond("Ready", "True", "Routed", f"{len(routes)} route(s)")
    else:
        ready = Cond("Ready", "False", "NoRegionAvailable", "every region of the agent is in maintenance")
    return {
        "observedGeneration": generation,
        "routes": routes,
        "conditions": set_conditions(live.get("conditions") or [], [ready], generation, now),
    }


# --- Region ------------------------------------------------------------------------------


def region_status(
    live: Mapping[str, Any], generation: int | None, *, maintenance: bool, pods: int, calls: int, now: str
) -> Status:
    if maintenance:
        ready = Cond("Ready", "False", "Maintenance", "draining: no new calls are routed here")
    else:
        ready = Cond("Ready", "True", "Serving", f"{pods} media pod(s)")
    return {
        "observedGeneration": generation,
        "mediaPods": pods,
        "activeCalls": calls,
        "conditions": set_conditions(live.get("conditions") or [], [ready], generation, now),
    }
