"""Hand-offs to humans, counted: windows over the media pods' counters, the agent's
`status.handoffs`, and the `HandoffsHigh` condition. Pure.

Media pods count the calls they handle (`voice_calls_total`) and the calls they hand to a human
(`voice_handoffs_total{reason, backend, model}`). The operator reads both with the scaling
signals, and what grew over the window is what the status shows: per region and in total,
calls, hand-offs, their rate and the hand-offs by reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voiceop.status import Cond, parse_time

DEFAULT_WINDOW_SECONDS = 300
# Below this many calls in the window a rate says little (one call, one hand-off: 100%).
MIN_CALLS_FOR_RATE = 10


@dataclass(frozen=True)
class HandoffWindow:
    """What grew over a window: calls handled and hand-offs by reason."""

    calls: int = 0
    by_reason: tuple[tuple[str, int], ...] = ()

    @property
    def handoffs(self) -> int:
        return sum(count for _, count in self.by_reason)

    @property
    def rate(self) -> float:
        return self.handoffs / self.calls if self.calls else 0.0

    @staticmethod
    def of(calls: float, by_reason: Mapping[str, float]) -> HandoffWindow:
        reasons = tuple(sorted((r, round(n)) for r, n in by_reason.items() if round(n) > 0))
        return HandoffWindow(max(round(calls), sum(n for _, n in reasons)), reasons)

    def __add__(self, other: HandoffWindow) -> HandoffWindow:
        merged: dict[str, int] = dict(self.by_reason)
        for reason, count in other.by_reason:
            merged[reason] = merged.get(reason, 0) + count
        return HandoffWindow(self.calls + other.calls, tuple(sorted(merged.items())))


def increase(now: float, before: float) -> float:
    """A counter's growth; a counter that went down was restarted: all it shows is new."""
    return now - before if now >= before else now


@dataclass
class CounterWindow:
    """Per pod, snapshots of (calls, hand-offs by reason) over the last `seconds`; the window is
    what each pod's counters grew by since its oldest snapshot in it. A pod first seen counts
    from then on (its counters may span days), as Prometheus' increase() does over a range."""

    seconds: float = DEFAULT_WINDOW_SECONDS
    spacing: float = 5.0  # snapshots kept at least this far apart (the newest always)
    snapshots: dict[str, deque[tuple[float, float, dict[str, float]]]] = field(default_factory=dict)

    def observe(self, now: float, pod: str, calls: float, by_reason: Mapping[str, float]) -> None:
        kept = self.snapshots.setdefault(pod, deque())
        if len(kept) >= 2 and now - kept[-2][0] < self.spacing:
            kept.pop()  # the newest is replaced until it is `spacing` after the one before
        kept.append((now, calls, dict(by_reason)))
        while len(kept) > 1 and kept[1][0] <= now - self.seconds:
            kept.popleft()

    def forget_older_than(self, cutoff: float) -> None:
        for pod in [p for p, kept in self.snapshots.items() if kept[-1][0] < cutoff]:
            del self.snapshots[pod]

    def window(self, pods: list[str]) -> HandoffWindow:
        total = HandoffWindow()
        for pod in pods:
            kept = self.snapshots.get(pod)
            if not kept:
                continue
            (_, calls_then, reasons_then), (_, calls_now, reasons_now) = kept[0], kept[-1]
            grown = {r: increase(n, reasons_then.get(r, 0.0)) for r, n in reasons_now.items()}
            total = total + HandoffWindow.of(increase(calls_now, calls_then), grown)
        return total


def rate_text(window: HandoffWindow) -> str:
    """The rate as the status shows it: a decimal string, at most three places ("0.125")."""
    return f"{window.rate:.3f}".rstrip("0").rstrip(".") or "0"


REASONS = ("backendUnavailable", "latencyOverBudget", "callerRequest")


def _counts(window: HandoffWindow) -> dict[str, Any]:
    # Every reason, 0 when none: a status map is merge-patched, and a key left out would stay.
    counts = dict(window.by_reason)
    return {
        "calls": window.calls,
        "handoffs": window.handoffs,
        "rate": rate_text(window),
        "byReason": {reason: counts.get(reason, 0) for reason in REASONS},
    }


def handoffs_status(window_seconds: float, regions: Mapping[str, HandoffWindow]) -> dict[str, Any]:
    """`status.handoffs`: the total and each region's counts over the window."""
    total = sum(regions.values(), HandoffWindow())
    return {
        "windowSeconds": int(window_seconds),
        **_counts(total),
        "regions": [{"name": name, **_counts(window)} for name, window in regions.items()],
    }


def handoffs_high(total: HandoffWindow, max_rate: float, window_seconds: float) -> Cond:
    """`HandoffsHigh`: True while the share of calls handed to humans is above the agent's limit."""
    window = f"over the last {int(window_seconds)} s"
    if total.calls < MIN_CALLS_FOR_RATE:
        return Cond(
            "HandoffsHigh",
            "False",
            "TooFewCalls",
            f"{total.handoffs} of {total.calls} calls handed to humans {window}"
            f" (a rate is judged from {MIN_CALLS_FOR_RATE} calls)",
        )
    reasons = ", ".join(f"{reason} {count}" for reason, count in total.by_reason) or "none"
    message = (
        f"{total.handoffs} of {total.calls} calls ({total.rate:.1%}) handed to humans {window};"
        f" spec.fallback.maxHandoffRate is {max_rate:g}; by reason: {reasons}"
    )
    if total.rate > max_rate:
        return Cond("HandoffsHigh", "True", "AboveMaxRate", message)
    return Cond("HandoffsHigh", "False", "WithinMaxRate", message)


# --- the report of `voiceop handoffs` ------------------------------------------------------

ReasonKey = tuple[str, str, str, str, str]  # namespace, agent, backend, model, reason
CallsKey = tuple[str, str, str, str]  # namespace, agent, backend, model
ALL = "*"


@dataclass(frozen=True)
class ReportRow:
    """Hand-offs of one agent, backend, model and reason (ALL: the agent's total) in this
    window and the one before, and the calls that backend and model took in each."""

    namespace: str
    agent: str
    backend: str
    model: str
    reason: str
    handoffs: int
    calls: int
    previous_handoffs: int
    previous_calls: int

    @property
    def rate(self) -> float | None:
        return self.handoffs / self.calls if self.calls else None

    @property
    def previous_rate(self) -> float | None:
        return self.previous_handoffs / self.previous_calls if self.previous_calls else None

    @property
    def change(self) -> float | None:
        """The rate's change against the previous window, in points (0.05: +5 points)."""
        if self.rate is None or self.previous_rate is None:
            return None
        return self.rate - self.previous_rate

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "agent": self.agent,
            "backend": self.backend,
            "model": self.model,
            "reason": self.reason,
            "handoffs": self.handoffs,
            "calls": self.calls,
            "rate": self.rate,
            "previousHandoffs": self.previous_handoffs,
            "previousCalls": self.previous_calls,
            "previousRate": self.previous_rate,
            "change": self.change,
        }


@dataclass
class Tally:
    """Hand-offs and calls of one window, by their keys."""

    handoffs: dict[ReasonKey, float] = field(default_factory=dict)
    calls: dict[CallsKey, float] = field(default_factory=dict)

    def add_handoffs(self, key: ReasonKey, count: float) -> None:
        self.handoffs[key] = self.handoffs.get(key, 0.0) + count

    def add_calls(self, key: CallsKey, count: float) -> None:
        self.calls[key] = self.calls.get(key, 0.0) + count


def report_rows(now: Tally, before: Tally) -> list[ReportRow]:
    """Rows per agent, backend, model and reason; per agent, backend and model (reason ALL:
    the backend's rate, where a failover shows); per agent (backend ALL). Windows: now, before."""
    rows = []
    windows = (now, before)
    backends: list[CallsKey] = sorted({k[:4] for w in windows for k in (*w.calls, *w.handoffs)})  # type: ignore[misc]
    for ns, agent, backend, model in backends:
        reasons = sorted({k for w in windows for k in w.handoffs if k[:4] == (ns, agent, backend, model)})
        for key in [*reasons, (ns, agent, backend, model, ALL)]:
            rows.append(_row(key, now, before))
    for namespace, agent in sorted({k[:2] for k in backends}):
        rows.append(_row((namespace, agent, ALL, ALL, ALL), now, before))
    return rows


def _row(key: ReasonKey, now: Tally, before: Tally) -> ReportRow:
    """One row: ALL in a key's place sums over it."""

    def matches(candidate: tuple[str, ...]) -> bool:
        return all(want in (ALL, have) for want, have in zip(key, candidate, strict=False))

    def total(values: Mapping[Any, float]) -> int:
        return round(sum(v for k, v in values.items() if matches(k)))

    return ReportRow(
        *key,
        handoffs=total(now.handoffs),
        calls=total(now.calls),
        previous_handoffs=total(before.handoffs),
        previous_calls=total(before.calls),
    )


def tally_pods(payloads: Sequence[Mapping[str, Any]], start: float, end: float) -> Tally:
    """What media pods served at /handoffs, counted over [start, end)."""
    tally = Tally()
    for payload in payloads:
        namespace, agent = str(payload.get("namespace", "")), str(payload.get("agent", ""))
        for record in payload.get("records") or []:
            if start <= parse_time(record["time"]) < end:
                key = (namespace, agent, record["backend"], record["model"], record["reason"])
                tally.add_handoffs(key, 1)
        for minute in payload.get("calls") or []:
            if start <= float(minute["minute"]) < end:
                tally.add_calls(
                    (namespace, agent, minute["backend"], minute["model"]), float(minute["calls"])
                )
    return tally


def format_report(rows: Sequence[ReportRow], window: str) -> str:
    """The report as a table: per agent, backend, model and reason, then the agent's total."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def points(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:+.1f} pts"

    header = (
        "agent",
        "backend",
        "model",
        "reason",
        "hand-offs",
        "calls",
        "rate",
        f"previous {window}",
        "change",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                f"{row.namespace}/{row.agent}",
                row.backend,
                row.model,
                "(all)" if row.reason == ALL else row.reason,
                str(row.handoffs),
                str(row.calls),
                percent(row.rate),
                f"{row.previous_handoffs}/{row.previous_calls} {percent(row.previous_rate)}",
                points(row.change),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
