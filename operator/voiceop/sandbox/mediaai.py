"""media-sim's AI layer: the runtime config the operator renders, the active backend's sessions,
and the hand-offs to humans that its fallback asks for.

The runtime config (`$VOICEOP_RUNTIME_CONFIG`, the agent's `<agent>-runtime` ConfigMap mounted
as a file) names the active backend, every backend's endpoints and latency budget, and the
fallback: where a human takes over (`humanHandoff`) and on which triggers (`when`). It is re-read
when the file changes, as a runtime reloads its ConfigMap; no pod restarts for a new backend.

A session with the active backend is one HTTP GET of its endpoint (the region's, else the
default) when the endpoint is on a loopback address: a stand-in the tests or the demo run, made
healthy, slow or down. Its answer time is the backend's time to first audio. Any other endpoint
is never dialled: the sandbox only reaches 127.0.0.0/8, so such a session is simulated as up,
with a time to first audio of `SIMULATED_TTFA_S`.
"""

from __future__ import annotations

import collections
import datetime
import ipaddress
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

SIMULATED_TTFA_S = 0.45
SESSION_TIMEOUT_S = 2.0  # a backend that takes longer to answer is unavailable
FRESH_S = 2.0  # how long what the last exchange said about a backend stands for new calls
RECORDS_KEPT = 10_000
TALLY_MINUTES = 48 * 60  # per-minute call counts kept for collection


@dataclass(frozen=True)
class Backend:
    name: str
    model: str
    endpoint: str
    latency_budget_ms: int | None


@dataclass(frozen=True)
class Fallback:
    target: str | None  # a SIP URI, or an E.164 number
    when: frozenset[str]
    digit: str = "0"
    over_budget_turns: int = 2

    def on(self, reason: str) -> bool:
        return self.target is not None and reason in self.when


NO_FALLBACK = Fallback(None, frozenset())


@dataclass(frozen=True)
class RuntimeConfig:
    active: Backend | None
    fallback: Fallback
    backends: tuple[tuple[str, str], ...] = ()  # (name, model) of every backend, in failover order
    target_calls_per_pod: int | None = None  # the edge's first fill: calls a pod takes at target

    @staticmethod
    def parse(text: str, region: str) -> RuntimeConfig:
        config = json.loads(text)
        backends = {b["name"]: b for b in config.get("backends") or []}
        chosen = backends.get(config.get("activeBackend") or "")
        active = None
        if chosen is not None:
            endpoint = (chosen.get("regionalEndpoints") or {}).get(region) or chosen.get("endpoint", "")
            active = Backend(chosen["name"], chosen.get("model", ""), endpoint, chosen.get("latencyBudgetMs"))
        raw = config.get("fallback") or {}
        handoff = raw.get("humanHandoff") or {}
        target = handoff.get("sipUri") or handoff.get("phoneNumber")
        fallback = Fallback(
            target,
            frozenset(raw.get("when") or ()),
            str(raw.get("handoffDigit", "0")),
            int(raw.get("overBudgetTurns", 2)),
        )
        listed = tuple((b["name"], b.get("model", "")) for b in config.get("backends") or [])
        target = config.get("targetCallsPerPod")
        return RuntimeConfig(active, fallback, listed, int(target) if target else None)


NO_CONFIG = RuntimeConfig(None, NO_FALLBACK)


def dialable(endpoint: str) -> bool:
    """Only http(s) endpoints on loopback addresses are ever dialled."""
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    try:
        return ipaddress.ip_address(parsed.hostname).is_loopback
    except ValueError:
        return False


@dataclass
class HandoffRecord:
    call_id: str
    time: str
    reason: str
    backend: str
    model: str
    latency_ms: int | None
    target: str
    how: str  # "redirect" (before answer) or "refer" (mid-call) or "http"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outcome: str = "pending"  # transferred, failed (the caller stays with the AI), or pending

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "callId": self.call_id,
            "time": self.time,
            "reason": self.reason,
            "backend": self.backend,
            "model": self.model,
            "latencyMs": self.latency_ms,
            "target": self.target,
            "how": self.how,
            "outcome": self.outcome,
        }


class AiLayer:
    """The active backend's sessions, the fallback, and what was handed off."""

    def __init__(self, config_path: Path | None, region: str, identity: dict[str, str]) -> None:
        self.config_path = config_path
        self.region = region
        self.identity = identity  # pod, agent, namespace, region: stamped on what pods serve
        self.config = NO_CONFIG
        self._mtime: float | None = None
        self.records: collections.deque[HandoffRecord] = collections.deque(maxlen=RECORDS_KEPT)
        # (minute, backend, model) -> calls handled: what a report divides hand-offs by.
        self.tally: collections.OrderedDict[tuple[int, str, str], int] = collections.OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._last: tuple[Backend | None, float, bool] | None = None  # (backend, when, answered)
        self.reload()

    # --- runtime config ---------------------------------------------------------------------

    def reload(self) -> bool:
        """Read the config file again if it changed; True when it did."""
        if self.config_path is None:
            return False
        try:
            mtime = self.config_path.stat().st_mtime
            if mtime == self._mtime:
                return False
            self.config = RuntimeConfig.parse(self.config_path.read_text(encoding="utf-8"), self.region)
            self._mtime = mtime
            return True
        except (OSError, ValueError, KeyError, TypeError):
            return False  # absent or half-written: keep what was read last

    def backend_series(self) -> tuple[tuple[str, str], ...]:
        """(backend, model) of every backend a call may use: the config's, else the stand-in's."""
        return self.config.backends or (self.backend_labels,)

    @property
    def backend_labels(self) -> tuple[str, str]:
        active = self.config.active
        return (active.name, active.model) if active else ("none", "none")

    # --- sessions ---------------------------------------------------------------------------

    async def available(self) -> bool:
        """Whether the active backend answers, as a runtime's connection pool knows it: the last
        exchange (every call's turns keep it fresh) if recent, else one exchange now."""
        active = self.config.active
        last = self._last
        if last is not None and last[0] == active and time.monotonic() - last[1] < FRESH_S:
            return last[2]
        return await self.time_to_first_audio() is not None

    async def time_to_first_audio(self) -> float | None:
        """One exchange with the active backend: seconds to its first audio, None when it fails."""
        active = self.config.active
        if active is None or not dialable(active.endpoint):
            return SIMULATED_TTFA_S  # no config to follow, or a backend the sandbox never dials
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SESSION_TIMEOUT_S))
        started = time.monotonic()
        answered: float | None = None
        try:
            async with self._session.get(active.endpoint) as response:
                await response.read()
                if response.status < 400:
                    answered = time.monotonic() - started
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        self._last = (active, time.monotonic(), answered is not None)
        return answered

    def over_budget(self, ttfa_s: float) -> bool:
        active = self.config.active
        return bool(active and active.latency_budget_ms and ttfa_s * 1000 > active.latency_budget_ms)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- what happened ----------------------------------------------------------------------

    def count_call(self) -> None:
        backend, model = self.backend_labels
        key = (int(time.time() // 60), backend, model)
        self.tally[key] = self.tally.get(key, 0) + 1
        self.tally.move_to_end(key)
        oldest = key[0] - TALLY_MINUTES
        while self.tally and next(iter(self.tally))[0] < oldest:
            self.tally.popitem(last=False)

    def record(self, call_id: str, reason: str, latency_s: float | None, how: str) -> HandoffRecord:
        backend, model = self.backend_labels
        record = HandoffRecord(
            call_id=call_id,
            time=datetime.datetime.now(datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            reason=reason,
            backend=backend,
            model=model,
            latency_ms=None if latency_s is None else round(latency_s * 1000),
            target=self.config.fallback.target or "",
            how=how,
        )
        self.records.append(record)
        return record

    def served(self, since: float = 0.0) -> dict[str, Any]:
        """The pod's hand-off records and per-minute call counts since `since` (Unix seconds)."""
        since_minute = int(since // 60)
        return {
            **self.identity,
            "records": [
                r.to_json()
                for r in self.records
                if datetime.datetime.fromisoformat(r.time.replace("Z", "+00:00")).timestamp() >= since
            ],
            "calls": [
                {"minute": minute * 60, "backend": backend, "model": model, "calls": count}
                for (minute, backend, model), count in self.tally.items()
                if minute >= since_minute
            ],
        }
