"""Calls through a real Kamailio edge to media-sim pods, placed by sipp (loopback only).

The edge's tables come from `voiceop edge`'s renderer on the examples; the pods are real
processes answering SIP. What a pod took is read from its own metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from siplib import MediaPods, endpoints_of, routes_of
from voiceop.sandbox.sip import Callers

BILLING = "+35315551234"  # billing-lines (examples/endpoints.yaml)
GB, IE, US, CA = "+442071234567", "+35318881234", "+12125550123", "+14165550123"
EU_POD_A, EU_POD_B, US_POD = "billing-eu-west-a", "billing-eu-west-b", "billing-us-east-a"
SERVICES = {EU_POD_A: "billing-eu-west", EU_POD_B: "billing-eu-west", US_POD: "billing-us-east"}


def call(
    edge: Any, callers: list[str], *, calls: int, hold_ms: int = 300, called: str = BILLING, port: int = 5090
) -> Any:
    return Callers(
        (edge.address, edge.port),
        called,
        callers,
        calls=calls,
        rate=50,
        hold_ms=hold_ms,
        local_port=port,
        timeout_s=30,
    ).run()


def start_pods(
    media_pods: MediaPods, slots: int = 10, pods: tuple[str, ...] = (EU_POD_A, EU_POD_B, US_POD)
) -> None:
    addresses = {EU_POD_A: "127.0.10.2", EU_POD_B: "127.0.10.3", US_POD: "127.0.11.2"}
    for name in pods:
        media_pods.start(name, addresses[name], slots)


def test_callers_reach_the_region_of_their_country(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any
) -> None:
    start_pods(media_pods)
    edge = edge_at(routes_of(rendered_examples), endpoints_of(media_pods, SERVICES))
    result = call(edge, [GB, IE, US, CA], calls=8)
    assert (result.successful, result.failed) == (8, 0), result.output
    taken = media_pods.calls_taken()
    assert taken[EU_POD_A] + taken[EU_POD_B] == 4  # GB and IE, twice each
    assert taken[US_POD] == 4  # US and CA


def test_an_unknown_called_number_gets_404(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any
) -> None:
    start_pods(media_pods)
    edge = edge_at(routes_of(rendered_examples), endpoints_of(media_pods, SERVICES))
    result = call(edge, [GB], calls=2, called="+4930123456")
    assert (result.successful, result.failed, result.rejections) == (0, 2, {404: 2}), result.output
    assert sum(media_pods.calls_taken().values()) == 0


def test_calls_fill_the_first_pod_then_move_to_the_next_when_it_is_full(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any
) -> None:
    start_pods(media_pods, slots=2)
    edge = edge_at(routes_of(rendered_examples), endpoints_of(media_pods, SERVICES))
    # Five GB calls held at once: two fill pod a (486 from then on), two pod b, the fifth
    # finds eu-west full and goes to the next region of the route, us-east.
    result = call(edge, [GB], calls=5, hold_ms=3000)
    assert (result.successful, result.failed) == (5, 0), result.output
    assert media_pods.calls_taken() == {EU_POD_A: 2, EU_POD_B: 2, US_POD: 1}


def test_calls_pack_onto_the_first_pod_rather_than_spreading(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any
) -> None:
    start_pods(media_pods, slots=10)
    edge = edge_at(routes_of(rendered_examples), endpoints_of(media_pods, SERVICES))
    result = call(edge, [GB, IE], calls=6, hold_ms=2000)
    assert (result.successful, result.failed) == (6, 0), result.output
    assert media_pods.calls_taken()[EU_POD_A] == 6  # least-connections would give 3 and 3


def test_pods_fill_to_their_target_share_first_then_up_to_calls_per_pod(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any, tmp_path: Path
) -> None:
    """billing: callsPerPod 8, target utilization 0.7: 6 calls a pod in the first pass (a full
    pod runs hot), up to 8 once every pod of the caller's region holds its 6, and only then the
    next region of the route (an idle us-east pod takes nothing before eu-west is full)."""
    runtime = next(o for o in rendered_examples if o["metadata"]["name"] == "billing-runtime")
    config = tmp_path / "runtime.json"
    config.write_text(runtime["data"]["runtime.json"])
    assert json.loads(config.read_text())["targetCallsPerPod"] == 6
    addresses = {EU_POD_A: "127.0.10.2", EU_POD_B: "127.0.10.3", US_POD: "127.0.10.4"}
    for name, address in addresses.items():
        media_pods.start(name, address, 8, config, region="us-east" if name == US_POD else "eu-west")
    edge = edge_at(routes_of(rendered_examples), endpoints_of(media_pods, SERVICES))

    def live() -> dict[str, float]:
        return {name: media_pods.metric(name, "voice_active_calls") for name in addresses}

    def hold(calls: int, port: int, hold_ms: int = 6000) -> Callers:
        return Callers(
            (edge.address, edge.port),
            BILLING,
            [GB],
            calls=calls,
            rate=50,
            hold_ms=hold_ms,
            local_port=port,
            timeout_s=30,
        ).start()

    def settle(total: int) -> dict[str, float]:
        deadline = time.monotonic() + 5
        while sum(live().values()) < total:
            assert time.monotonic() < deadline, live()
            time.sleep(0.1)
        return live()

    held = hold(7, 5090, hold_ms=10000)
    assert settle(7) == {EU_POD_A: 6, EU_POD_B: 1, US_POD: 0}  # filled to the target, not to 8 on pod a

    # Five more while those hold: pod b to its 6 (pod a is at its target). Then, no eu-west pod
    # below its target, two calls go one to each pod (round-robin past the target; in the set's
    # order pod a would run to 8 while b stayed at 6), two more fill them to 8; none goes to the
    # idle pod of us-east: callers stay in their region while it has room.
    more = [hold(5, 5091)]
    assert settle(12) == {EU_POD_A: 6, EU_POD_B: 6, US_POD: 0}
    more.append(hold(2, 5093))
    assert settle(14) == {EU_POD_A: 7, EU_POD_B: 7, US_POD: 0}  # spread past the target
    more.append(hold(2, 5094))
    assert settle(16) == {EU_POD_A: 8, EU_POD_B: 8, US_POD: 0}
    # eu-west full: the next region of the route.
    assert call(edge, [GB], calls=1, hold_ms=100, port=5092).successful == 1
    assert media_pods.metric(US_POD, "voice_calls_total") == 1
    assert [c.wait().failed for c in more] == [0, 0, 0] and held.wait().failed == 0


def test_a_region_with_no_ready_pod_fails_over_to_the_next_region(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any
) -> None:
    start_pods(media_pods, pods=(US_POD,))
    edge = edge_at(routes_of(rendered_examples), endpoints_of(media_pods, SERVICES))
    result = call(edge, [GB, IE], calls=4)
    assert (result.successful, result.failed) == (4, 0), result.output
    assert media_pods.calls_taken() == {US_POD: 4}


def test_no_ready_pod_anywhere_gets_503(rendered_examples: list[dict[str, Any]], edge_at: Any) -> None:
    edge = edge_at(routes_of(rendered_examples), [])
    result = call(edge, [GB], calls=2)
    assert (result.successful, result.rejections) == (0, {503: 2}), result.output


def test_a_dead_pod_is_skipped_after_the_response_timeout(
    rendered_examples: list[dict[str, Any]], media_pods: MediaPods, edge_at: Any
) -> None:
    start_pods(media_pods, pods=(EU_POD_B, US_POD))
    # Pod a is published Ready but nothing answers at its address: 408 -> pod b.
    endpoints = [*endpoints_of(media_pods, SERVICES), *endpoints_of(_ghost(), SERVICES)]
    edge = edge_at(routes_of(rendered_examples), endpoints)
    result = call(edge, [GB], calls=1)
    assert (result.successful, result.failed) == (1, 0), result.output
    assert media_pods.calls_taken()[EU_POD_B] == 1


def _ghost() -> MediaPods:
    ghost = MediaPods()
    ghost.processes[EU_POD_A] = None  # type: ignore[assignment]
    ghost.addresses[EU_POD_A] = "127.0.10.99"
    return ghost
