"""voiceop's API client against the loopback server: which answers are retried, and how."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from voiceop.api.kinds import KINDS
from voiceop.controller.cache import ClusterCache
from voiceop.controller.scaler import ACCEPTING_CALLS, Scaler
from voiceop.kube import RETRY_AFTER_CAP_SECONDS, ApiError, KubeClient, retry_delay
from voiceop.sandbox.apiserver import LoopbackApiServer

NS = "contact-center"


@pytest.fixture
def server() -> Iterator[LoopbackApiServer]:
    with LoopbackApiServer() as running:
        running.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield running


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{"name": "media", "image": "example/media:1"}]},
    }


def requests(server: LoopbackApiServer, mark: int) -> list[str]:
    return [verb for verb, _ in list(server.store.request_log)[mark:]]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_retry_waits_a_jittered_backoff_or_what_retry_after_says() -> None:
    assert retry_delay(1.0, None, 0.0) == 0.5
    assert retry_delay(1.0, None, 0.999) == pytest.approx(1.499)
    assert retry_delay(0.2, "3", 0.5) == 3.0
    assert retry_delay(0.2, "3600", 0.5) == RETRY_AFTER_CAP_SECONDS
    assert retry_delay(0.2, "Wed, 21 Oct 2026 07:28:00 GMT", 0.5) == 0.2


def test_a_conflict_goes_back_to_the_caller_at_once(server: LoopbackApiServer) -> None:
    """The same body conflicts again: retrying it only stalls the caller (3.75 s, five times)."""
    server.apply(pod("p-0"))
    server.store.fail_next("PATCH", code=409, plural="pods")
    mark = len(server.store.request_log)

    async def patch() -> None:
        client = KubeClient(server.url, token="loopback")
        try:
            await client.patch(KINDS["Pod"], NS, "p-0", {"metadata": {"labels": {"a": "b"}}})
        finally:
            await client.close()

    with pytest.raises(ApiError) as raised:
        run(patch())
    assert raised.value.code == 409
    assert requests(server, mark) == ["patch"]


def test_transient_answers_are_retried_until_they_pass(server: LoopbackApiServer) -> None:
    server.apply(pod("p-0"))
    server.store.fail_next("PATCH", code=503, count=1, plural="pods")
    server.store.fail_next("PATCH", code=429, count=1, plural="pods")
    mark = len(server.store.request_log)

    async def patch() -> dict[str, Any]:
        client = KubeClient(server.url, token="loopback")
        try:
            return await client.patch(KINDS["Pod"], NS, "p-0", {"metadata": {"labels": {"a": "b"}}})
        finally:
            await client.close()

    assert run(patch())["metadata"]["labels"] == {"a": "b"}
    assert requests(server, mark) == ["patch", "patch", "patch"]


def test_a_gate_write_that_conflicts_rereads_the_pod_and_recomputes(server: LoopbackApiServer) -> None:
    created = server.apply(pod("p-0"))
    # The kubelet writes its own condition after the scaler read the pod: the scaler's copy is stale.
    kubelet = {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-03T00:00:00Z"}
    server.store.patch(
        server.store.type_of_kind("v1", "Pod"),
        NS,
        "p-0",
        "application/merge-patch+json",
        {"status": {"conditions": [kubelet]}},
        subresource="status",
    )
    stale = {**created, "kind": "Pod"}
    mark = len(server.store.request_log)

    async def open_gate() -> None:
        client = KubeClient(server.url, token="loopback")
        try:
            scaler = Scaler(client, ClusterCache(), reconciler=None)  # type: ignore[arg-type]
            await scaler._set_gate(stale, "True", "MediaReady")
        finally:
            await client.close()

    run(open_gate())
    assert requests(server, mark) == ["patch", "get", "patch"]
    live = server.store.find("v1", "Pod", NS, "p-0") or {}
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions == {"ContainersReady": "True", ACCEPTING_CALLS: "True"}, conditions
