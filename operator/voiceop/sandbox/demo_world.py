"""Where `voiceop demo` runs: the loopback API server with its pod simulator (the default, pip
alone), or the real control plane built from source with the sandbox kubelet
(`--control-plane kubernetes`). The demo reads and writes through this one face."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from voiceop.api import all_crds
from voiceop.kube import Connection, connection_from_kubeconfig
from voiceop.sandbox.apiserver import LoopbackApiServer
from voiceop.sandbox.load import CallLoad
from voiceop.sandbox.pods import PodSimulator
from voiceop.status import condition_status


class DemoWorld(Protocol):
    kubeconfig: Path
    endpoints_from: str  # what the SIP edge reads the media pods' addresses from

    @property
    def where(self) -> str:
        """Said at the start: what the operator talks to."""

    @property
    def connection(self) -> Connection: ...

    def apply(self, obj: dict[str, Any]) -> None: ...

    def list(
        self, api_version: str, kind: str, namespace: str, selector: str = ""
    ) -> list[dict[str, Any]]: ...

    def running_pods(self) -> int: ...

    def cut_calls(self) -> int: ...

    def call_load(
        self,
        namespace: str,
        selector: str,
        rate: Callable[[float], float],
        duration: Callable[[], float],
        peak: float,
        seed: int,
    ) -> CallLoad: ...


@dataclass
class LoopbackWorld:
    server: LoopbackApiServer
    pods: PodSimulator
    kubeconfig: Path
    endpoints_from: str = "pods"  # the pod simulator publishes no EndpointSlices

    @property
    def where(self) -> str:
        return f"a loopback API server at {self.server.url}"

    @property
    def connection(self) -> Connection:
        return Connection(server=self.server.url, token="demo")

    def apply(self, obj: dict[str, Any]) -> None:
        self.server.apply(obj)

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        store = self.server.store
        items, _ = store.list(store.type_of_kind(api_version, kind), namespace, selector or None)
        return items

    def running_pods(self) -> int:
        return len(self.pods.running)

    def cut_calls(self) -> int:
        return self.pods.dropped_calls

    def call_load(
        self,
        namespace: str,
        selector: str,
        rate: Callable[[float], float],
        duration: Callable[[], float],
        peak: float,
        seed: int,
    ) -> CallLoad:
        return CallLoad(
            self.server.store,
            self.pods,
            namespace,
            selector,
            rate=rate,
            duration=duration,
            peak=peak,
            seed=seed,
        )


@contextlib.contextmanager
def loopback_world() -> Iterator[LoopbackWorld]:
    with LoopbackApiServer() as server, PodSimulator(server.store) as pods:
        kubeconfig = server.write_kubeconfig(Path(tempfile.mkdtemp(prefix="voiceop-demo-")) / "kubeconfig")
        for crd in all_crds():
            server.apply(crd)
        yield LoopbackWorld(server, pods, kubeconfig)


@dataclass
class KubernetesWorld:
    plane: Any  # voiceop.sandbox.cluster.controlplane.ControlPlane
    kubelet: Any  # voiceop.sandbox.cluster.kubelet.SandboxKubelet
    kubeconfig: Path
    # EndpointSlices refuse the sandbox's 127.x pod addresses: the edge reads Ready Pods.
    endpoints_from: str = "pods"

    def __post_init__(self) -> None:
        from voiceop.sandbox.cluster.rest import Discovery

        self.admin = self.plane.admin()
        self.discovery = Discovery(self.admin)

    @property
    def where(self) -> str:
        version = self.admin.get("/version")["gitVersion"]
        return f"Kubernetes {version} (kube-apiserver, controller-manager, scheduler, etcd) at {self.plane.server}"

    @property
    def connection(self) -> Connection:
        return connection_from_kubeconfig(self.kubeconfig)

    def apply(self, obj: dict[str, Any]) -> None:
        self.admin.apply(self.discovery.path(obj), obj, manager="voiceop-demo")

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
        path = self.discovery.path(probe, named=False, namespace=namespace)
        return list(self.admin.get(path, {"labelSelector": selector} if selector else None)["items"])

    def running_pods(self) -> int:
        return len(self.kubelet.running)

    def cut_calls(self) -> int:
        return int(self.kubelet.cut_calls)

    def call_load(
        self,
        namespace: str,
        selector: str,
        rate: Callable[[float], float],
        duration: Callable[[], float],
        peak: float,
        seed: int,
    ) -> CallLoad:
        def ready_pods() -> list[str]:
            return [
                p["metadata"]["name"]
                for p in self.list("v1", "Pod", namespace, selector)
                if condition_status(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")
            ]

        return CallLoad(
            None,
            self.kubelet,
            namespace,
            selector,
            rate=rate,
            duration=duration,
            peak=peak,
            seed=seed,
            ready_pods=ready_pods,
        )


@contextlib.contextmanager
def kubernetes_world() -> Iterator[KubernetesWorld]:
    """Raises ControlPlaneMissing (naming the build command) when the binaries are not built."""
    from voiceop.sandbox.cluster.controlplane import ControlPlane, find_binary
    from voiceop.sandbox.cluster.kubelet import SandboxKubelet
    from voiceop.sandbox.cluster.session import apply_crds, nodes_ready

    find_binary()
    with ControlPlane() as plane:
        admin = plane.admin()
        apply_crds(admin)
        kubeconfig = plane.write_admin_kubeconfig(
            Path(tempfile.mkdtemp(prefix="voiceop-demo-")) / "kubeconfig"
        )
        with SandboxKubelet(admin) as kubelet:
            world = KubernetesWorld(plane, kubelet, kubeconfig)
            deadline = time.monotonic() + 30
            while not nodes_ready(admin) and time.monotonic() < deadline:
                time.sleep(0.2)
            yield world
