"""Hand-offs to humans, in real SIP (loopback only): media-sim pods following the examples'
runtime config, a Kamailio edge with the rendered tables, sipp callers, and sipp as the human
agents' queue. Before answering, a pod whose backend does not answer redirects the caller (302,
followed by the edge); mid-call, a pod whose backend stays over budget, or whose caller asks,
transfers the caller (REFER). Each hand-off is counted by reason, backend and model, and kept as
a record whose call id is the one the humans received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES
from siplib import MediaPods, endpoints_of, routes_of, set_backend
from voiceop.inputs.loading import load_inventory
from voiceop.render import render_all
from voiceop.sandbox.backend import BackendStandIn
from voiceop.sandbox.pods import http_get
from voiceop.sandbox.sip import CallerResult, Callers, HumanQueue

BILLING = "+35315551234"
GB, IE = "+442071234567", "+35318881234"
POD_A, POD_B = "billing-eu-west-a", "billing-eu-west-b"
SERVICES = {POD_A: "billing-eu-west", POD_B: "billing-eu-west"}
ADDRESSES = {POD_A: "127.0.20.2", POD_B: "127.0.20.3"}
BACKEND = "openai-realtime"


@pytest.fixture
def stand_in() -> Iterator[BackendStandIn]:
    with BackendStandIn() as backends:
        yield backends


@pytest.fixture
def humans() -> Iterator[HumanQueue]:
    with HumanQueue() as queue:
        yield queue


def handoff_world(
    tmp_path: Path, stand_in: BackendStandIn, handoff: dict[str, str], when: list[str], **fallback: Any
) -> tuple[dict[str, dict[str, Any]], Path]:
    """The examples, with billing handing off to `handoff` on `when`, and its backends' endpoints
    at the stand-in: (routes by namespace, billing's runtime config file)."""
    documents = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] == "VoiceAgent" and document["metadata"]["name"] == "billing":
                document["spec"]["fallback"] = {"humanHandoff": handoff, "when": when, **fallback}
            if document and document["kind"] == "AIBackend":
                name = document["metadata"]["name"]
                document["spec"]["endpoint"] = stand_in.session_url(name)
                document["spec"]["protocol"] = "http"
                document["spec"].pop("regionalEndpoints", None)
                document["spec"]["latencyBudgetMs"] = 300
            documents.append(document)
    (tmp_path / "world.yaml").write_text(yaml.safe_dump_all(documents))
    loaded = load_inventory([str(tmp_path / "world.yaml")])
    assert loaded.errors == []
    rendered = render_all(loaded.inventory)
    runtime = next(o for o in rendered if o["metadata"]["name"] == "billing-runtime")
    config = tmp_path / "runtime.json"
    config.write_text(runtime["data"]["runtime.json"])
    return routes_of(rendered), config


def start_pods(media_pods: MediaPods, config: Path, slots: int = 10) -> None:
    for name, address in ADDRESSES.items():
        media_pods.start(name, address, slots, config, region="eu-west")


def call(edge: Any, *, calls: int, hold_ms: int, port: int = 5090, **options: Any) -> CallerResult:
    return Callers(
        (edge.address, edge.port), BILLING, [GB, IE], calls=calls, rate=20, hold_ms=hold_ms,
        local_port=port, timeout_s=60, **options,
    ).run()  # fmt: skip


def records(media_pods: MediaPods) -> list[dict[str, Any]]:
    found = []
    for address in media_pods.addresses.values():
        code, text = http_get(f"http://{address}:9090/handoffs")
        assert code == 200
        found += json.loads(text)["records"]
    return found


def test_a_backend_that_does_not_answer_sends_new_calls_to_the_humans(
    tmp_path: Path, stand_in: BackendStandIn, humans: HumanQueue, media_pods: MediaPods, edge_at: Any
) -> None:
    routes, config = handoff_world(tmp_path, stand_in, {"sipUri": humans.uri}, ["backendUnavailable"])
    start_pods(media_pods, config)
    edge = edge_at(routes, endpoints_of(media_pods, SERVICES))
    set_backend(stand_in, BACKEND, "down")
    result = call(edge, calls=6, hold_ms=300)
    assert (result.successful, result.failed) == (6, 0), result.errors or result.output
    received = humans.received()
    handed = records(media_pods)
    assert len(received) == 6
    assert sorted(r["callId"] for r in handed) == sorted(received)
    assert {(r["reason"], r["backend"], r["how"], r["outcome"]) for r in handed} == {
        ("backendUnavailable", BACKEND, "redirect", "transferred")
    }
    total = sum(
        media_pods.metric(p, "voice_handoffs_total", reason="backendUnavailable", backend=BACKEND)
        for p in ADDRESSES
    )
    assert total == 6
    assert sum(media_pods.metric(p, "voice_active_calls") for p in ADDRESSES) == 0, "no slot taken"

    set_backend(stand_in, BACKEND, "healthy")  # back: calls stay with the AI
    result = call(edge, calls=4, hold_ms=300, port=5091)
    assert (result.successful, result.failed) == (4, 0), result.errors
    assert len(humans.received()) == 6


def test_a_backend_over_its_budget_hands_calls_off_mid_call(
    tmp_path: Path, stand_in: BackendStandIn, humans: HumanQueue, media_pods: MediaPods, edge_at: Any
) -> None:
    routes, config = handoff_world(
        tmp_path, stand_in, {"sipUri": humans.uri}, ["latencyOverBudget"], overBudgetTurns=2
    )
    start_pods(media_pods, config)
    edge = edge_at(routes, endpoints_of(media_pods, SERVICES))
    set_backend(stand_in, BACKEND, "slow", delay_s=0.5)  # over the 300 ms budget on every turn
    result = call(edge, calls=4, hold_ms=12_000)
    assert (result.successful, result.failed) == (4, 0), result.errors or result.output
    handed = records(media_pods)
    assert sorted(r["callId"] for r in handed) == sorted(humans.received())
    assert len(handed) == 4
    for record in handed:
        assert (record["reason"], record["how"], record["outcome"]) == (
            "latencyOverBudget",
            "refer",
            "transferred",
        )
        assert record["latencyMs"] >= 500
    assert sum(media_pods.metric(p, "voice_active_calls") for p in ADDRESSES) == 0, (
        "transferred calls leave the pod"
    )


def test_a_caller_who_asks_for_a_human_is_transferred(
    tmp_path: Path, stand_in: BackendStandIn, humans: HumanQueue, media_pods: MediaPods, edge_at: Any
) -> None:
    routes, config = handoff_world(
        tmp_path, stand_in, {"sipUri": humans.uri}, ["callerRequest"], handoffDigit="9"
    )
    start_pods(media_pods, config)
    edge = edge_at(routes, endpoints_of(media_pods, SERVICES))
    wrong = call(edge, calls=2, hold_ms=3000, port=5091, ask_human_after_ms=500, digit="1")
    assert (wrong.successful, wrong.failed) == (2, 0), wrong.errors
    assert humans.received() == [], "another digit keeps the caller with the AI"
    result = call(edge, calls=3, hold_ms=3000, ask_human_after_ms=500, digit="9")
    assert (result.successful, result.failed) == (3, 0), result.errors or result.output
    handed = records(media_pods)
    assert sorted(r["callId"] for r in handed) == sorted(humans.received())
    assert [r["reason"] for r in handed] == ["callerRequest"] * 3


def test_a_number_to_hand_off_to_goes_through_the_edges_gateway(
    tmp_path: Path, stand_in: BackendStandIn, humans: HumanQueue, media_pods: MediaPods, edge_at: Any
) -> None:
    routes, config = handoff_world(
        tmp_path, stand_in, {"phoneNumber": "+353215551234"}, ["backendUnavailable"]
    )
    start_pods(media_pods, config)
    gateway = f"sip:{humans.address}:{humans.port}"
    edge = edge_at(routes, endpoints_of(media_pods, SERVICES), handoff_gateway=gateway)
    set_backend(stand_in, BACKEND, "down")
    result = call(edge, calls=2, hold_ms=300)
    assert (result.successful, result.failed) == (2, 0), result.errors or result.output
    assert len(humans.received()) == 2


def test_the_edge_relays_hand_offs_only_to_the_agents_targets(
    tmp_path: Path, stand_in: BackendStandIn, humans: HumanQueue, media_pods: MediaPods, edge_at: Any
) -> None:
    """A pod that names a human the routes do not (a stale or tampered config) gets 502: the
    edge is no open relay."""
    routes, _ = handoff_world(
        tmp_path, stand_in, {"sipUri": "sip:queue@127.0.0.77:5099"}, ["backendUnavailable"]
    )
    _, config = handoff_world(tmp_path, stand_in, {"sipUri": humans.uri}, ["backendUnavailable"])
    start_pods(media_pods, config)
    edge = edge_at(routes, endpoints_of(media_pods, SERVICES))
    set_backend(stand_in, BACKEND, "down")
    result = call(edge, calls=2, hold_ms=300)
    assert result.failed == 2 and result.rejections == {502: 2}, result.errors or result.output
    assert humans.received() == []
