"""The operator's "already up to date?" check before it applies a child."""

from __future__ import annotations

import copy
from typing import Any

from voiceop.controller.diff import UpToDateMemo, stamped, up_to_date


def service(*ports: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "billing-eu-west", "namespace": "cc"},
        "spec": {"selector": {"app": "media"}, "ports": list(ports)},
    }


SIP = {"name": "sip", "port": 5060, "protocol": "UDP"}


def test_what_the_server_adds_needs_no_write() -> None:
    desired = stamped(service(SIP))
    live = copy.deepcopy(desired)
    live["spec"]["clusterIP"] = "10.96.0.10"
    live["spec"]["ports"][0]["targetPort"] = 5060
    assert up_to_date(desired, live)


def test_an_entry_another_manager_added_to_an_associative_list_needs_no_write() -> None:
    """Server-side apply keeps it (ports are keyed by port and protocol): re-applying would
    not remove it, so a check that wants the lists equal would re-apply on every resync."""
    desired = stamped(service(SIP))
    live = copy.deepcopy(desired)
    live["spec"]["ports"].insert(0, {"name": "debug", "port": 7000, "protocol": "TCP"})
    assert up_to_date(desired, live)


def test_a_changed_or_missing_entry_needs_a_write() -> None:
    desired = stamped(service(SIP))
    changed = copy.deepcopy(desired)
    changed["spec"]["ports"][0]["name"] = "renamed"
    assert not up_to_date(desired, changed)
    missing = copy.deepcopy(desired)
    missing["spec"]["ports"] = [{"name": "debug", "port": 7000, "protocol": "TCP"}]
    assert not up_to_date(desired, missing)


def test_atomic_lists_must_be_equal() -> None:
    desired = stamped(service(SIP))
    desired["spec"]["externalIPs"] = ["127.0.0.5"]
    live = copy.deepcopy(desired)
    live["spec"]["externalIPs"].append("127.0.0.6")
    assert not up_to_date(desired, live)


def test_a_field_voiceop_stopped_setting_needs_a_write() -> None:
    before = stamped(service(SIP, {"name": "tcp", "port": 5060, "protocol": "TCP"}))
    assert not up_to_date(stamped(service(SIP)), before)  # the hash tells, whatever the subset says


def versioned(obj: dict[str, Any], version: str, uid: str = "u-1") -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update(uid=uid, resourceVersion=version)
    return out


OWNER = ("cc", "billing")


def test_the_memo_answers_as_the_compare_does_for_every_new_live_version() -> None:
    """Remembered only per live version: another manager's change (a new resourceVersion),
    a recreated object (a new uid) or a new desired hash is compared afresh."""
    memo = UpToDateMemo()
    desired = stamped(service(SIP))
    live = versioned(desired, "10")
    assert memo.check(OWNER, desired, live) and memo.check(OWNER, desired, live)
    changed = versioned(live, "11")
    changed["spec"]["ports"][0]["port"] = 5070  # someone edited it
    assert not memo.check(OWNER, desired, changed)
    recreated = versioned(changed, "10", uid="u-2")  # same version number, another object
    assert not memo.check(OWNER, desired, recreated)
    other = stamped(service({**SIP, "name": "sip2"}))
    assert not memo.check(OWNER, other, live)  # what voiceop wants changed
    assert not memo.check(OWNER, desired, None)
    unversioned = copy.deepcopy(desired)
    unversioned["spec"]["ports"][0]["port"] = 5070
    assert not memo.check(OWNER, desired, unversioned)


def test_the_memo_forgets_pruned_children_and_gone_agents() -> None:
    memo = UpToDateMemo()
    desired = stamped(service(SIP))
    assert memo.check(OWNER, desired, versioned(desired, "10"))
    memo.forget(OWNER, ("Service", "billing-eu-west"))
    assert memo._known[OWNER] == {}
    assert memo.check(OWNER, desired, versioned(desired, "10"))
    memo.forget(OWNER)
    assert OWNER not in memo._known
