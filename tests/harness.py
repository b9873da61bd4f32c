"""A loopback cluster and a running operator, for the integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from voiceop.api import all_crds
from voiceop.controller.runtime import OperatorRuntime
from voiceop.handlers.entry import run_operator
from voiceop.inputs.yamlio import read_manifests
from voiceop.kube import Connection
from voiceop.sandbox.apiserver import LoopbackApiServer
from voiceop.sandbox.apiserver.controllers import DeploymentController
from voiceop.sandbox.backend import BackendStandIn

T = TypeVar("T")
API = "voiceop.dev/v1alpha1"


class Cluster:
    def __init__(self, server: LoopbackApiServer) -> None:
        self.server = server
        self.store = server.store
        for crd in all_crds():
            server.apply(crd)
        self.deployments = DeploymentController(self.store)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        probe = ((obj.get("spec") or {}).get("healthCheck") or {}).get("url", "")
        assert not probe or probe.startswith("http://127.0.0.1:"), f"tests probe loopback only, not {probe}"
        return self.server.apply(obj)

    def apply_all(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            self.apply(obj)

    def get(
        self, kind: str, namespace: str | None, name: str, api_version: str = API
    ) -> dict[str, Any] | None:
        return self.store.find(api_version, kind, namespace, name)

    def children(self, kind: str, namespace: str, api_version: str, agent: str) -> dict[str, dict[str, Any]]:
        rtype = self.store.type_of_kind(api_version, kind)
        items, _ = self.store.list(rtype, namespace, f"voiceop.dev/agent={agent}")
        return {i["metadata"]["name"]: i for i in items}

    def delete(self, kind: str, namespace: str | None, name: str, api_version: str = API) -> None:
        self.store.delete(self.store.type_of_kind(api_version, kind), namespace, name)

    def patch(
        self, kind: str, namespace: str | None, name: str, patch: dict[str, Any], api_version: str = API
    ) -> None:
        rtype = self.store.type_of_kind(api_version, kind)
        self.store.patch(rtype, namespace, name, "application/merge-patch+json", patch)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        rtype = self.store.type_of_kind("v1", "Event")
        items, _ = self.store.list(rtype, namespace)
        return [e for e in items if e["involvedObject"]["name"] == name]


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def wait_for(check: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll until `check()` is truthy; its last value in the failure message otherwise.

    The deadline is for "never", not for "slow" (speed is the benchmarks' to measure): twice in
    a 20-minute CI run on 2 cores, a loopback operator test waited past 15 s for its first
    convergence, which it reaches in ~1 s alone."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(0.02)
        value = check()
    return value


def wait_ready(cluster: Cluster, namespace: str, agent: str, timeout: float = 40.0) -> None:
    wait_for(
        lambda: condition(cluster.get("VoiceAgent", namespace, agent), "Ready").get("status") == "True",
        timeout=timeout,
        what=f"VoiceAgent {namespace}/{agent} Ready",
    )


@contextmanager
def loopback_cluster() -> Iterator[Cluster]:
    with LoopbackApiServer() as server:
        yield Cluster(server)


@contextmanager
def running_operator(
    cluster: Cluster,
    *,
    wait_watching: bool = True,
    runtime_options: dict[str, Any] | None = None,
    **options: Any,
) -> Iterator[OperatorRuntime]:
    """The real operator (kopf and all) in a thread, talking HTTP to the loopback server."""
    runtime = OperatorRuntime(
        connection=Connection(server=cluster.server.url, token="loopback"), **(runtime_options or {})
    )
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run_operator(runtime=runtime, stop_flag=stop, ready_flag=ready, **{"standalone": True, **options})
        except BaseException as error:  # surfaced below
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=target, name="voiceop-operator", daemon=True)
    thread.start()
    assert ready.wait(15), "operator did not start"
    if failure:
        raise failure[0]
    if wait_watching:
        watched = ("regions", "aibackends", "voiceagents", "voiceendpoints", "deployments", "configmaps")
        wait_for(lambda: all(cluster.store.watch_count(p) >= 1 for p in watched), what="operator watching")
    try:
        yield runtime
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "operator did not stop"
        if failure:
            raise failure[0]


# The tests' AI backends: one stand-in on 127.0.0.1 that a test makes healthy, slow or down.
ProbeTarget = BackendStandIn


def loopback_examples(probe: ProbeTarget) -> list[dict[str, Any]]:
    """The examples, with every health check pointed at `probe` (tests reach only loopback)."""
    from conftest import EXAMPLES

    documents, errors = read_manifests([str(EXAMPLES)])
    assert not errors
    objects = []
    for document in sorted(documents, key=lambda d: d.obj["kind"] != "Namespace"):
        obj = document.obj
        if obj["kind"] == "AIBackend" and "healthCheck" in obj["spec"]:
            obj["spec"]["healthCheck"] = {
                "url": probe.url(obj["metadata"]["name"]),
                "intervalSeconds": 1,
                "timeoutMs": 500,
            }
        objects.append(obj)
    return objects
