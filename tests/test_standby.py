"""The peering rule voiceop's runtime applies (kopf's, on kopf's peering object)."""

from __future__ import annotations

import datetime

from voiceop.controller.standby import PeeringRef, is_active

NOW = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)
ME = PeeringRef("voiceop", "me@host", priority=100)


def peer(priority: int, seconds_ago: float, lifetime: float = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": lifetime}


def test_alone_and_registered_is_active() -> None:
    assert is_active({"me@host": peer(100, 1)}, ME, NOW)


def test_not_yet_registered_is_not_active() -> None:
    assert not is_active({}, ME, NOW)
    assert not is_active(None, ME, NOW)


def test_a_live_peer_above_or_level_makes_a_standby() -> None:
    assert not is_active({"me@host": peer(100, 1), "other": peer(200, 5)}, ME, NOW)
    assert not is_active({"me@host": peer(100, 1), "other": peer(100, 5)}, ME, NOW)  # kopf pauses both
    assert is_active({"me@host": peer(100, 1), "other": peer(50, 5)}, ME, NOW)


def test_a_dead_peer_counts_for_nothing_once_its_lifetime_has_passed() -> None:
    assert not is_active({"me@host": peer(100, 1), "other": peer(200, 59)}, ME, NOW)
    assert is_active({"me@host": peer(100, 1), "other": peer(200, 61)}, ME, NOW)
    naive = {"priority": 200, "lastseen": "2026-12-03T11:59:30", "lifetime": 60}  # kopf writes UTC, no zone
    assert not is_active({"me@host": peer(100, 1), "other": naive}, ME, NOW)
