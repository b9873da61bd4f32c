"""A loopback cluster and a running operator, for the integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import kopf

from voiceop.apiserver import LoopbackApiServer
from voiceop.apiserver.controllers import DeploymentController
from voiceop.cli import all_crds
from voiceop.controller.runtime import OperatorRuntime
from voiceop.run import run_operator
from voiceop.yamlio import read_manifests

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
        return self.server.apply(obj)

    def apply_path(self, path: Path | str) -> None:
        documents, errors = read_manifests([str(path)])
        assert not errors
        # Namespaces first, then the rest, as `kubectl apply` users order them.
        for document in sorted(documents, key=lambda d: d.obj["kind"] != "Namespace"):
            self.apply(document.obj)

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


def wait_for(check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll until `check()` is truthy; its last value in the failure message otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(0.02)
        value = check()
    return value


@contextmanager
def loopback_cluster() -> Iterator[Cluster]:
    with LoopbackApiServer() as server:
        yield Cluster(server)


@contextmanager
def running_operator(cluster: Cluster, **options: Any) -> Iterator[OperatorRuntime]:
    """The real operator (kopf and all) in a thread, talking HTTP to the loopback server."""
    runtime = OperatorRuntime(connection=kopf.ConnectionInfo(server=cluster.server.url, token="loopback"))
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run_operator(runtime=runtime, standalone=True, stop_flag=stop, ready_flag=ready, **options)
        except BaseException as error:  # surfaced below
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=target, name="voiceop-operator", daemon=True)
    thread.start()
    assert ready.wait(15), "operator did not start"
    if failure:
        raise failure[0]
    try:
        yield runtime
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "operator did not stop"
        if failure:
            raise failure[0]
