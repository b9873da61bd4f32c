"""Hand-offs to humans, counted: windows over the media pods' counters, the agent's
`status.handoffs`, and the `HandoffsHigh` condition. Pure.

Media pods count the calls they handle (`voice_calls_total`) and the calls they hand to a human
(`voice_handoffs_total{reason, backend, model}`). The operator reads both with the scaling
signals, and what grew over the window is what the status shows: per region and in total,
calls, hand-offs, their rate and the hand-offs by reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voiceop.status import Cond

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


def _counts(window: HandoffWindow) -> dict[str, Any]:
    return {
        "calls": window.calls,
        "handoffs": window.handoffs,
        "rate": rate_text(window),
        "byReason": dict(window.by_reason),
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
