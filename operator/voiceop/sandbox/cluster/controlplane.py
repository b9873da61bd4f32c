"""Starting and stopping a real control plane on 127.0.0.1: etcd, kube-apiserver (RBAC, its own
CA), kube-controller-manager and kube-scheduler, each a process of the one built binary."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from voiceop.sandbox.cluster.pki import SERVICE_CIDR, Pki, make_pki
from voiceop.sandbox.cluster.rest import Rest, RestError

# The release controlplane/go.mod pins; a test keeps the two equal.
KUBERNETES_VERSION = "v1.37.2"
BUILD_COMMAND = "controlplane/build.sh"


class ControlPlaneMissing(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("VOICEOP_CACHE_DIR") or Path.home() / ".cache" / "voiceop")


def find_binary() -> Path:
    """The built `voiceop-k8s`: $VOICEOP_CONTROL_PLANE, or where controlplane/build.sh puts it."""
    given = os.environ.get("VOICEOP_CONTROL_PLANE")
    path = Path(given) if given else cache_dir() / "control-plane" / KUBERNETES_VERSION / "voiceop-k8s"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ControlPlaneMissing(
            f"the Kubernetes {KUBERNETES_VERSION} control plane is not built ({path} is missing); "
            f"build it once with `{BUILD_COMMAND}` (needs Go; ~12 min cold, cached after)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(
    server: str,
    ca: Path,
    *,
    user: str,
    certificate: tuple[Path, Path] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    credentials: dict[str, Any] = {}
    if certificate:
        credentials = {"client-certificate": str(certificate[0]), "client-key": str(certificate[1])}
    if token:
        credentials = {"token": token}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "sandbox", "user": user}}],
        "current-context": user,
    }


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class ControlPlane:
    """A running control plane. `start()` returns once the API answers /readyz."""

    workdir: Path | None = None
    binary: Path | None = None
    etcd_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    components: list[Component] = field(default_factory=list)
    pki: Pki | None = None
    _own_workdir: bool = False

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def start(self, timeout: float = 90.0) -> ControlPlane:
        """Start every part; a part that fails stops those already started."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> ControlPlane:
        binary = self.binary or find_binary()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="voiceop-cluster-"))
            self._own_workdir = True
        work = self.workdir
        self.pki = pki = make_pki(work / "pki")
        peer = free_port()
        self._spawn(
            "etcd",
            [
                str(binary),
                "etcd",
                "--name",
                "sandbox",
                "--data-dir",
                str(work / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"sandbox=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(binary),
                "kube-apiserver",
                "--etcd-servers",
                self.etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.api_port),
                "--cert-dir",
                str(work / "pki"),
                "--tls-cert-file",
                str(pki.serving.certificate),
                "--tls-private-key-file",
                str(pki.serving.key),
                "--client-ca-file",
                str(pki.ca.certificate),
                "--authorization-mode",
                "RBAC",
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(pki.service_account_pub),
                "--service-account-signing-key-file",
                str(pki.service_account_key),
                # The `kubernetes` Service cannot point at a loopback address (and nothing dials it).
                "--endpoint-reconciler-type",
                "none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        admin = self.admin()
        self._wait_ready(admin, timeout)
        for name, credential in (
            ("controller-manager", pki.controller_manager),
            ("scheduler", pki.scheduler),
        ):
            path = work / f"{name}.kubeconfig"
            path.write_text(
                yaml.safe_dump(
                    kubeconfig(
                        self.server,
                        pki.ca.certificate,
                        user=name,
                        certificate=(credential.certificate, credential.key),
                    )
                )
            )
        self._spawn(
            "kube-controller-manager",
            [
                str(binary),
                "kube-controller-manager",
                "--kubeconfig",
                str(work / "controller-manager.kubeconfig"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "0",
                "--leader-elect=false",
                "--root-ca-file",
                str(pki.ca.certificate),
                "--service-account-private-key-file",
                str(pki.service_account_key),
                "--use-service-account-credentials=true",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(binary),
                "kube-scheduler",
                "--kubeconfig",
                str(work / "scheduler.kubeconfig"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "0",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        return self

    def admin(self) -> Rest:
        assert self.pki is not None
        return Rest(
            self.server, self.pki.ca.certificate, certificate=(self.pki.admin.certificate, self.pki.admin.key)
        )

    def write_admin_kubeconfig(self, path: Path) -> Path:
        assert self.pki is not None
        path.write_text(
            yaml.safe_dump(
                kubeconfig(
                    self.server,
                    self.pki.ca.certificate,
                    user="admin",
                    certificate=(self.pki.admin.certificate, self.pki.admin.key),
                )
            )
        )
        return path

    def write_token_kubeconfig(self, path: Path, user: str, token: str) -> Path:
        assert self.pki is not None
        path.write_text(
            yaml.safe_dump(kubeconfig(self.server, self.pki.ca.certificate, user=user, token=token))
        )
        return path

    def _spawn(self, name: str, command: list[str]) -> None:
        assert self.workdir is not None
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.components.append(Component(name, process, log))

    def _wait_ready(self, admin: Rest, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for component in self.components:
                if component.process.poll() is not None:
                    raise RuntimeError(f"{component.name} exited: {self.log_tail(component.name)}")
            try:
                if admin.get("/readyz") == "ok":
                    return
            except RestError as error:
                last = str(error)
            time.sleep(0.3)
        raise RuntimeError(f"kube-apiserver not ready after {timeout:.0f} s ({last})")

    def log_tail(self, name: str, lines: int = 20) -> str:
        assert self.workdir is not None
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again with the same flags (a control-plane upgrade)."""
        component = next(c for c in self.components if c.name == "kube-apiserver")
        _stop(component)
        self.components.remove(component)
        self._spawn("kube-apiserver", list(component.process.args))  # type: ignore[arg-type]
        self._wait_ready(self.admin(), 60)

    def stop(self) -> None:
        for component in reversed(self.components):
            _stop(component)
        self.components.clear()
        if self._own_workdir and self.workdir is not None and not os.environ.get("VOICEOP_KEEP_CLUSTER"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(component: Component) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(component.process.pid, signal.SIGTERM)
    try:
        component.process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.pid, signal.SIGKILL)
        component.process.wait(5)
    component.log.close()
