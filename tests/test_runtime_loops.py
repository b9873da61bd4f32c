"""The operator's clocked loops outlive a failed pass, its relist takes kinds with nothing in
them, and work that ends by itself stops the process instead of leaving half an operator."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from prometheus_client import REGISTRY

from harness import loopback_cluster, wait_for
from voiceop.api.wire import CHILD_SELECTOR
from voiceop.controller.loops import every
from voiceop.controller.reconciler import Reconciler
from voiceop.controller.runtime import OperatorRuntime
from voiceop.handlers.entry import run_operator
from voiceop.kube import ApiError, Connection, KubeClient


def failures(loop: str) -> float:
    return REGISTRY.get_sample_value("voiceop_loop_failures_total", {"loop": loop}) or 0.0


def test_a_loop_runs_its_next_pass_after_one_that_failed() -> None:
    """A status write refused while kube-apiserver restarts (ApiError) or a bug tripped by one
    object (any other error) fails one pass; scaling, probing and relisting go on."""
    passes: list[str] = []
    before = failures("test-loop")

    async def run_pass() -> None:
        passes.append("pass")
        if len(passes) == 1:
            raise ApiError(500, "refused while restarting")
        if len(passes) == 2:
            raise KeyError("status")  # a bug on one object
        if len(passes) == 4:
            raise asyncio.CancelledError  # done: as a stop ends the loop

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(asyncio.wait_for(every(0.01, run_pass, "test-loop"), timeout=5))
    assert len(passes) == 4
    assert failures("test-loop") - before == 2


def test_a_relist_drops_what_is_gone_and_takes_kinds_with_nothing_in_them() -> None:
    """kube-apiserver answers a metadata-only list of nothing with `"items": null`: the first
    relist of a fleet with no VoiceEndpoints died on it (and with it, every later relist)."""
    label = dict([CHILD_SELECTOR.split("=")])
    with loopback_cluster() as cluster:
        server = cluster.server
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cc"}})
        kept = server.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kept", "namespace": "cc", "labels": label},
            }
        )
        ghost = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "deleted-unseen",
                "namespace": "cc",
                "labels": label,
                "resourceVersion": "1",
            },
        }

        async def relist() -> set[tuple[str, str]]:
            runtime = OperatorRuntime(connection=Connection(server=server.url, token="loopback"))
            assert runtime.connection is not None
            runtime.client = client = KubeClient.connect(runtime.connection)
            runtime.reconciler = Reconciler(client, runtime.cache)
            try:
                runtime.cache.upsert(kept)
                runtime.cache.upsert(ghost)
                await runtime._relist()  # every voiceop kind is empty here
                return runtime.cache.keys_of("ConfigMap")
            finally:
                await client.close()

        assert asyncio.run(relist()) == {("cc", "kept")}


def test_work_that_ends_with_an_error_stops_the_operator_with_status_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should a loop end with an error after all, the process stops (its Deployment starts a
    fresh one) rather than run on without it, looking healthy."""

    async def broken(self: OperatorRuntime) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(OperatorRuntime, "_relist_periodically", broken)
    with loopback_cluster() as cluster:
        runtime = OperatorRuntime(connection=Connection(server=cluster.server.url, token="loopback"))
        stop, ready = threading.Event(), threading.Event()
        status: list[Any] = []
        thread = threading.Thread(
            target=lambda: status.append(
                run_operator(runtime=runtime, standalone=True, stop_flag=stop, ready_flag=ready)
            ),
            daemon=True,
        )
        thread.start()
        try:
            wait_for(lambda: not thread.is_alive(), timeout=20, what="the operator to stop by itself")
        finally:
            stop.set()
            thread.join(15)
    assert status == [1]
    assert isinstance(runtime.failure, BaseExceptionGroup)
    assert "broken on purpose" in repr(runtime.failure.exceptions)
