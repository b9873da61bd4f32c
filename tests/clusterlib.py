"""The cluster tier: a real control plane (etcd, kube-apiserver, controller-manager, scheduler
built from k8s.io/kubernetes), the sandbox kubelet, and the operator as its own process with
the chart's ServiceAccount and RBAC.

Skipped with the reason only where no Go toolchain exists to build the control plane; in CI
(`CI` set) a missing build fails instead, since .ci/run builds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from voiceop.sandbox.cluster.controlplane import ControlPlane, ControlPlaneMissing, find_binary, free_port
from voiceop.sandbox.cluster.kubelet import SandboxKubelet
from voiceop.sandbox.cluster.rest import WRITE_VERBS, Discovery, Rest, RestError, request_counts
from voiceop.sandbox.cluster.session import apply_crds

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests" / "base"
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "voiceop-system", "voiceop"


def binary_or_skip() -> None:
    """The control plane, built once with Go if it is not yet (as .ci/run does)."""
    try:
        find_binary()
        return
    except ControlPlaneMissing as error:
        missing = error
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} (.ci/run builds it)")
        pytest.skip(f"no Go toolchain here to build the control plane: {missing}")
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{Path(go).parent}"}
    subprocess.run([str(ROOT / "controlplane" / "build.sh")], env=env, check=True, timeout=3600)
    find_binary()


@dataclass
class Sandbox:
    plane: ControlPlane
    admin: Rest
    discovery: Discovery
    kubelet: SandboxKubelet
    admin_kubeconfig: Path
    operator_kubeconfig: Path

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.admin.apply(self.discovery.path(obj), obj)

    def apply_all(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            self.apply(obj)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}}
        return self.admin.get_or_none(self.discovery.path(obj))

    def list(
        self, api_version: str, kind: str, namespace: str | None, selector: str = ""
    ) -> list[dict[str, Any]]:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
        params = {"labelSelector": selector} if selector else None
        return list(self.admin.get(self.discovery.path(obj, named=False), params)["items"])

    def delete(self, obj: dict[str, Any]) -> None:
        self.admin.delete(self.discovery.path(obj))

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.admin_kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def write_requests(self) -> dict[tuple[str, str, str], float]:
        """apiserver_request_total of writes, by (verb, resource, subresource)."""
        return {key: n for key, n in request_counts(self.admin).items() if key[0] in WRITE_VERBS}


def service_account_kubeconfig(plane: ControlPlane, admin: Rest, account: str, path: Path) -> Path:
    """A kubeconfig with a token of `account` (in the operator's namespace)."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 86400},
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            token = admin.create(
                f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts/{account}/token", request
            )["status"]["token"]
            break
        except RestError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return plane.write_token_kubeconfig(path, account, token)


def edge_identity(sandbox: Sandbox, path: Path) -> Path:
    """The chart's edge ServiceAccount and RBAC (edge reading pods, as on the sandbox), and its token."""
    from test_chart import render  # the real Helm engine

    values = {"edge": {"enabled": True, "endpointsFrom": "pods"}}
    for obj in render(values):
        if obj["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding") and obj["metadata"][
            "name"
        ].endswith("-edge"):
            sandbox.admin.apply(sandbox.discovery.path(obj), obj)
    return service_account_kubeconfig(sandbox.plane, sandbox.admin, "voiceop-edge", path)


def operator_identity(plane: ControlPlane, sandbox_admin: Rest, discovery: Discovery, path: Path) -> Path:
    """The chart's Namespace, ServiceAccount and RBAC, and a token for that ServiceAccount."""
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        for obj in yaml.safe_load_all((MANIFESTS / name).read_text()):
            if obj:
                sandbox_admin.apply(discovery.path(obj), obj)
    return service_account_kubeconfig(plane, sandbox_admin, OPERATOR_ACCOUNT, path)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    binary_or_skip()
    work = tmp_path_factory.mktemp("cluster")
    with ControlPlane(workdir=work / "plane") as plane:
        admin = plane.admin()
        apply_crds(admin)
        discovery = Discovery(admin)
        admin_kubeconfig = plane.write_admin_kubeconfig(work / "admin.kubeconfig")
        operator_kubeconfig = operator_identity(plane, admin, discovery, work / "operator.kubeconfig")
        with SandboxKubelet(admin, annotation_lag_seconds=2.0) as kubelet:
            yield Sandbox(plane, admin, discovery, kubelet, admin_kubeconfig, operator_kubeconfig)


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    # Log bytes checked for RBAC refusals: all, or up to a point (kube-apiserver restarted
    # after it, and its authorizer answers 403 until its RBAC cache has synced again).
    rbac_checked_until: int | None = None

    def stop_checking_rbac(self) -> None:
        self.rbac_checked_until = self.log.stat().st_size

    def metrics(self) -> str:
        """The operator's /metrics; empty while it is still starting."""
        import urllib.request

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
            ) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def operator_process(sandbox: Sandbox, tmp_path: Path, *extra: str) -> Iterator[OperatorProcess]:
    """`voiceop run` as it ships: its own process, the chart's ServiceAccount token, RBAC enforced."""
    port = free_port()
    log = tmp_path / f"operator-{port}.log"
    env = {**os.environ, "KUBECONFIG": str(sandbox.operator_kubeconfig)}
    command = [
        sys.executable,
        "-m",
        "voiceop",
        "run",
        "--standalone",
        "--metrics-port",
        str(port),
        "--health-port",
        "0",
        *extra,
    ]
    with open(log, "wb") as stream:
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT)
    operator = OperatorProcess(process, log, port)
    try:
        yield operator
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    text = log.read_bytes()[: operator.rbac_checked_until].decode(errors="replace")
    forbidden = [line for line in text.splitlines() if "forbidden" in line.lower()]
    assert not forbidden, "the operator met RBAC refusals:\n" + "\n".join(forbidden[:10])


def wait_for(
    check: Callable[[], Any], timeout: float = 60.0, what: str = "condition", every: float = 0.3
) -> Any:
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}")
        time.sleep(every)
        value = check()
    return value


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def independent_client(sandbox: Sandbox) -> kubernetes.client.ApiClient:
    """The official Kubernetes client, for assertions that do not trust voiceop's own."""
    return kubernetes.config.new_client_from_config(config_file=str(sandbox.admin_kubeconfig))
