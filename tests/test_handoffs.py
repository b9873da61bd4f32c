"""Hand-off counting, pure: counter windows, the status block and HandoffsHigh."""

from __future__ import annotations

from voiceop.handoffs import (
    MIN_CALLS_FOR_RATE,
    CounterWindow,
    HandoffWindow,
    handoffs_high,
    handoffs_status,
    rate_text,
)


def test_a_window_counts_what_each_pods_counters_grew_by() -> None:
    window = CounterWindow(seconds=60, spacing=5)
    window.observe(0, "a", 100, {"backendUnavailable": 7})  # a pod first seen: history not counted
    window.observe(0, "b", 0, {})
    window.observe(10, "a", 110, {"backendUnavailable": 9, "callerRequest": 1})
    window.observe(10, "b", 5, {"latencyOverBudget": 2})
    assert window.window(["a", "b"]) == HandoffWindow(
        15, (("backendUnavailable", 2), ("callerRequest", 1), ("latencyOverBudget", 2))
    )


def test_counts_older_than_the_window_roll_off() -> None:
    window = CounterWindow(seconds=30, spacing=5)
    window.observe(0, "a", 0, {})
    window.observe(10, "a", 10, {"callerRequest": 4})
    window.observe(50, "a", 12, {"callerRequest": 4})
    # From t=10: the oldest snapshot at or after the window start is where the window opens.
    assert window.window(["a"]) == HandoffWindow(2, ())


def test_a_restarted_pod_counts_what_it_shows_after_the_restart() -> None:
    window = CounterWindow(seconds=300)
    window.observe(0, "a", 50, {"callerRequest": 5})
    window.observe(10, "a", 3, {"callerRequest": 1})
    assert window.window(["a"]) == HandoffWindow(3, (("callerRequest", 1),))


def test_snapshots_closer_than_the_spacing_replace_the_newest() -> None:
    window = CounterWindow(seconds=300, spacing=5)
    for t in range(0, 20):
        window.observe(t, "a", t, {})
    assert len(window.snapshots["a"]) <= 6
    assert window.window(["a"]).calls == 19


def test_hand_offs_never_count_more_calls_than_there_were() -> None:
    """A redirect before answering counts as a call handled: the rate stays within 0..1."""
    assert HandoffWindow.of(2.4, {"backendUnavailable": 3.2}).calls == 3


def test_the_status_block_has_totals_regions_and_reasons() -> None:
    regions = {
        "eu-west": HandoffWindow(40, (("backendUnavailable", 8),)),
        "us-east": HandoffWindow(10, (("callerRequest", 1),)),
    }
    assert handoffs_status(300, regions) == {
        "windowSeconds": 300,
        "calls": 50,
        "handoffs": 9,
        "rate": "0.18",
        "byReason": {"backendUnavailable": 8, "latencyOverBudget": 0, "callerRequest": 1},
        "regions": [
            {
                "name": "eu-west",
                "calls": 40,
                "handoffs": 8,
                "rate": "0.2",
                "byReason": {"backendUnavailable": 8, "latencyOverBudget": 0, "callerRequest": 0},
            },
            {
                "name": "us-east",
                "calls": 10,
                "handoffs": 1,
                "rate": "0.1",
                "byReason": {"backendUnavailable": 0, "latencyOverBudget": 0, "callerRequest": 1},
            },
        ],
    }
    assert rate_text(HandoffWindow()) == "0"
    assert rate_text(HandoffWindow(3, (("callerRequest", 1),))) == "0.333"


def test_handoffs_high_fires_above_the_rate_and_only_with_enough_calls() -> None:
    above = handoffs_high(HandoffWindow(20, (("backendUnavailable", 5),)), 0.2, 300)
    assert (above.status, above.reason) == ("True", "AboveMaxRate")
    assert "5 of 20 calls (25.0%)" in above.message and "maxHandoffRate is 0.2" in above.message
    at = handoffs_high(HandoffWindow(20, (("backendUnavailable", 4),)), 0.2, 300)
    assert (at.status, at.reason) == ("False", "WithinMaxRate")
    few = handoffs_high(HandoffWindow(MIN_CALLS_FOR_RATE - 1, (("callerRequest", 9),)), 0.2, 300)
    assert (few.status, few.reason) == ("False", "TooFewCalls")


def _payload(records: list[tuple[str, str, str]], calls: list[tuple[int, str, int]]) -> dict[str, object]:
    return {
        "namespace": "cc",
        "agent": "billing",
        "records": [
            {"time": t, "backend": b, "model": f"{b}-model", "reason": r, "callId": f"c{i}"}
            for i, (t, b, r) in enumerate(records)
        ],
        "calls": [{"minute": m, "backend": b, "model": f"{b}-model", "calls": n} for m, b, n in calls],
    }


def test_the_report_shows_a_failover_as_a_change_of_rate_by_backend() -> None:
    """Yesterday openai handed 1 call in 10 off; today it handed 4 in 10 off before the
    failover, and the self-hosted pipeline took over with none."""
    from voiceop.handoffs import ALL, format_report, report_rows, tally_pods
    from voiceop.status import parse_time

    day = 86400.0
    now = parse_time("2026-12-04T12:00:00Z")
    payload = _payload(
        [
            ("2026-12-03T09:00:00Z", "openai", "callerRequest"),
            ("2026-12-04T08:00:00Z", "openai", "backendUnavailable"),
            ("2026-12-04T08:00:01Z", "openai", "backendUnavailable"),
            ("2026-12-04T08:00:02Z", "openai", "backendUnavailable"),
            ("2026-12-04T08:01:00Z", "openai", "callerRequest"),
        ],
        [
            (int(now - day - 3600), "openai", 10),
            (int(now - 4 * 3600), "openai", 10),
            (int(now - 3600), "self", 30),
        ],
    )
    current = tally_pods([payload], now - day, now)
    previous = tally_pods([payload], now - 2 * day, now - day)
    rows = {(r.backend, r.reason): r for r in report_rows(current, previous)}
    unavailable = rows[("openai", "backendUnavailable")]
    assert (unavailable.handoffs, unavailable.calls, unavailable.rate) == (3, 10, 0.3)
    asked = rows[("openai", "callerRequest")]
    assert (asked.previous_handoffs, asked.previous_calls, asked.previous_rate) == (1, 10, 0.1)
    assert asked.change == 0.0
    # By backend: openai went from 10% to 40% of its calls; the pipeline it failed over to hands none off.
    openai, pipeline = rows[("openai", ALL)], rows[("self", ALL)]
    assert (openai.rate, openai.previous_rate, openai.change) == (0.4, 0.1, 0.4 - 0.1)
    assert (pipeline.handoffs, pipeline.calls, pipeline.rate, pipeline.previous_rate) == (0, 30, 0.0, None)
    total = rows[(ALL, ALL)]
    assert (total.handoffs, total.calls, total.previous_handoffs, total.previous_calls) == (4, 40, 1, 10)
    assert ("self", "backendUnavailable") not in rows  # no hand-offs there, now or before
    table = format_report(report_rows(current, previous), "24h")
    assert "cc/billing  openai   openai-model  backendUnavailable  3" in table
    assert "+0.0 pts" in table and "(all)" in table
