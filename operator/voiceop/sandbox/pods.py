"""Stand-in for the ReplicaSet controller and the kubelets, for tests and the demo.

Every Deployment voiceop made gets the Pods its replicas ask for; every Pod is a real
`voiceop media-sim` process on a loopback address of its own (127.0.0.X:9090), so metrics are
scraped and calls placed over real HTTP. ContainersReady follows the process's /readyz; Ready
needs the Pod's readiness gates too (set by the operator). Like a kubelet, it keeps each pod's
downward-API annotations file current, so media-sim sees the operator drain it. Scale-in picks victims the way a
ReplicaSet does (lowest pod-deletion-cost, then not ready, then newest) and terminates them
like a kubelet: SIGTERM (media-sim drains), SIGKILL at the end of the grace period. Calls still
up at SIGKILL are counted as dropped.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceop.sandbox.apiserver.store import ApiError, Store
from voiceop.sandbox.mediasim import media_sim_command
from voiceop.status import condition_status, now_iso

logger = logging.getLogger("voiceop.sandbox")
FINALIZER = "sandbox.voiceop.dev/kubelet"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
METRICS_PORT = 9090


@dataclass
class RunningPod:
    name: str
    namespace: str
    ip: str
    process: subprocess.Popen[bytes]
    started: float
    annotations_file: Path
    kill_at: float | None = None
    last_calls: int = 0
    labels: dict[str, str] = field(default_factory=dict)


def http_get(url: str, timeout: float = 0.5) -> tuple[int, str]:
    """Status and body of a GET to a media pod; (0, "") when it does not answer or the URL is bad."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (OSError, ValueError, http.client.HTTPException):
        return 0, ""


def active_calls(ip: str, last: int) -> int:
    """`voice_active_calls` of the media pod at `ip`, or `last` when it does not answer."""
    code, text = http_get(f"http://{ip}:{METRICS_PORT}/metrics")
    for line in text.splitlines() if code == 200 else []:
        if line.startswith("voice_active_calls "):
            return int(float(line.split()[1]))
    return last


def sip_port(pod_spec: dict[str, Any]) -> int | None:
    """The container port named `sip` (the media pod contract), where media-sim answers SIP."""
    for container in pod_spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "sip":
                return int(port["containerPort"])
    return None


def write_downward_annotations(path: Path, annotations: dict[str, str]) -> None:
    """As the kubelet writes a downwardAPI `metadata.annotations` file: `key="value"` lines,
    replaced atomically, and only when something changed."""
    write_volume_file(
        path, "".join(f"{key}={json.dumps(value)}\n" for key, value in sorted(annotations.items()))
    )


def write_volume_file(path: Path, text: str) -> None:
    """A file of a pod's volume, as the kubelet's atomic writer leaves it: replaced whole, and
    only when it changed."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _newest_first(timestamp: str) -> str:
    """RFC 3339 timestamps sort as text; this key sorts the newest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in timestamp)


def target_labels(namespace: str, pod: str, labels: dict[str, str]) -> dict[str, str]:
    """A media pod's labels in Prometheus, as the chart's PodMonitor relabels them."""
    return {
        "namespace": namespace,
        "pod": pod,
        "agent": labels.get("voiceop.dev/agent", ""),
        "region": labels.get("voiceop.dev/region", ""),
    }


def runtime_configmap_of(pod_spec: dict[str, Any]) -> str | None:
    """The agent's runtime ConfigMap a media pod mounts (`<agent>-runtime`)."""
    for volume in pod_spec.get("volumes") or []:
        name = (volume.get("configMap") or {}).get("name", "")
        if name.endswith("-runtime"):
            return str(name)
    return None


def slots_of(runtime_config: str | None) -> int:
    """callsPerPod of a runtime config (10 when there is none to read)."""
    try:
        return int(json.loads(runtime_config or "").get("callsPerPod", 10))
    except (ValueError, TypeError, AttributeError):
        return 10


def media_environment(pod_spec: dict[str, Any], namespace: str, name: str) -> dict[str, str]:
    """The media container's environment as the kubelet resolves it, for what media-sim reads:
    literal values and the pod's own name and namespace (never a Secret's value)."""
    fields = {"metadata.name": name, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for container in pod_spec.get("containers") or []:
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
            elif (path := ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")) in fields:
                env[var["name"]] = fields[path]
    return env


def media_process(
    ip: str,
    pod_spec: dict[str, Any],
    namespace: str,
    name: str,
    podinfo: Path,
    runtime_config: str | None,
) -> subprocess.Popen[bytes]:
    """A media pod's container as a media-sim process: its volumes' files under `podinfo`
    (annotations, runtime.json), its environment resolved, listening on `ip`."""
    config_file = podinfo / "runtime.json"
    if runtime_config is not None:
        write_volume_file(config_file, runtime_config)
    command = media_sim_command(
        ip,
        METRICS_PORT,
        slots_of(runtime_config),
        podinfo / "annotations",
        sip_port(pod_spec),
        config_file,
    )
    env = {**os.environ, **media_environment(pod_spec, namespace, name)}
    env.pop("VOICEOP_RUNTIME_CONFIG", None)  # the flag names the file: the pod's path is not here
    env.pop("VOICEOP_POD_ANNOTATIONS", None)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def deletion_order(pod: dict[str, Any]) -> tuple[Any, ...]:
    """The ReplicaSet controller's victim order (controller.ActivePodsWithRanks, Kubernetes
    1.22+): unscheduled, then Pending before Running, not Ready before Ready, then the lowest
    pod-deletion-cost, then the most recently Ready, then the newest. (Its spread rank, pods on
    nodes with more siblings first, and restart counts are left out: the simulator has no nodes
    and restarts nothing.)"""
    meta, status = pod["metadata"], pod.get("status") or {}
    ready = condition_status(pod, "Ready") == "True"
    ready_since = next(
        (
            c.get("lastTransitionTime") or ""
            for c in status.get("conditions") or []
            if c.get("type") == "Ready"
        ),
        "",
    )
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        _PHASE_RANK.get(status.get("phase", "Pending"), 0),
        ready,
        int((meta.get("annotations") or {}).get(DELETION_COST, "0")),
        _newest_first(ready_since) if ready else "",
        _newest_first(meta.get("creationTimestamp", "")),
    )


class PodSimulator:
    def __init__(
        self, store: Store, *, grace_cap_seconds: float | None = None, tick_seconds: float = 0.2
    ) -> None:
        self.store = store
        self.deployments = store.resource_type("apps", "v1", "deployments")
        self.pods = store.resource_type("", "v1", "pods")
        self.configmaps = store.resource_type("", "v1", "configmaps")
        self.grace_cap = grace_cap_seconds
        self.tick = tick_seconds
        self.running: dict[tuple[str, str], RunningPod] = {}
        self.dropped_calls = 0
        self.killed_pods = 0
        self._addresses = (f"127.0.{high}.{low}" for high in range(0, 250) for low in range(2, 255))
        self._free: list[str] = []
        self._podinfo = Path(tempfile.mkdtemp(prefix="voiceop-podinfo-"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pod-simulator", daemon=True)
        self._lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> PodSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for pod in self.running.values():
            pod.process.kill()
        for pod in self.running.values():
            pod.process.wait(5)
        shutil.rmtree(self._podinfo, ignore_errors=True)

    def __enter__(self) -> PodSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # a test tool must not die silently mid-test
                logger.exception("pod simulator pass failed")
            self._stop.wait(self.tick)

    # --- what tests read ------------------------------------------------------------------

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus file_sd targets of every running pod."""
        with self._lock:
            return [
                {
                    "targets": [f"{p.ip}:{METRICS_PORT}"],
                    "labels": target_labels(p.namespace, p.name, p.labels),
                }
                for p in self.running.values()
                if p.kill_at is None
            ]

    def address(self, namespace: str, name: str) -> str | None:
        pod = self.running.get((namespace, name))
        return pod.ip if pod else None

    # --- one pass -------------------------------------------------------------------------

    def sync(self) -> None:
        deployments, _ = self.store.list(self.deployments, None, "app.kubernetes.io/managed-by=voiceop")
        pods, _ = self.store.list(self.pods, None, "app.kubernetes.io/managed-by=voiceop")
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences") or []:
                by_owner.setdefault(ref["uid"], []).append(pod)
        for deployment in deployments:
            self._scale(deployment, by_owner.get(deployment["metadata"]["uid"], []))
        pods, _ = self.store.list(self.pods, None, "app.kubernetes.io/managed-by=voiceop")
        for pod in pods:
            self._kubelet(pod)
        for deployment in deployments:
            self._deployment_status(deployment)

    def _scale(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        want = (deployment.get("spec") or {}).get("replicas", 1)
        alive = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
        for _ in range(want - len(alive)):
            self._create_pod(deployment)
        if len(alive) > want:
            for victim in sorted(alive, key=deletion_order)[: len(alive) - want]:
                self._terminate(victim, deployment)

    def _create_pod(self, deployment: dict[str, Any]) -> None:
        meta = deployment["metadata"]
        template = deployment["spec"]["template"]
        name = f"{meta['name']}-{secrets.token_hex(4)[:7]}-{secrets.token_hex(3)[:5]}"
        ip = self._free.pop() if self._free else next(self._addresses)
        podinfo = self._podinfo / f"{meta['namespace']}_{name}"
        podinfo.mkdir(parents=True)
        annotations_file = podinfo / "annotations"
        process = media_process(
            ip,
            template["spec"],
            meta["namespace"],
            name,
            podinfo,
            self._runtime_config(meta["namespace"], template["spec"]),
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"].get("labels") or {}),
                "annotations": dict(template["metadata"].get("annotations") or {}),
                "finalizers": [FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        self.store.create(self.pods, meta["namespace"], pod)
        status = {
            "phase": "Pending",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [],
            "startTime": now_iso(),
        }
        self._write_status(meta["namespace"], name, status)
        with self._lock:
            self.running[(meta["namespace"], name)] = RunningPod(
                name,
                meta["namespace"],
                ip,
                process,
                time.monotonic(),
                annotations_file,
                labels=dict(template["metadata"].get("labels") or {}),
            )

    def _runtime_config(self, namespace: str, pod_spec: dict[str, Any]) -> str | None:
        """The runtime.json of the agent's ConfigMap the pod mounts, as it is now."""
        name = runtime_configmap_of(pod_spec)
        if name is None:
            return None
        try:
            return str(self.store.get(self.configmaps, namespace, name)["data"]["runtime.json"])
        except (ApiError, KeyError, TypeError):
            return None

    def _terminate(self, pod: dict[str, Any], deployment: dict[str, Any]) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.store.delete(self.pods, namespace, name)
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        if self.grace_cap is not None:
            grace = min(grace, self.grace_cap)
        running = self.running.get((namespace, name))
        if running is not None:
            running.kill_at = time.monotonic() + grace
            running.process.terminate()  # media-sim drains on SIGTERM

    def _kubelet(self, pod: dict[str, Any]) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        running = self.running.get((namespace, name))
        if running is None:
            self._finalize(namespace, name)
            return
        if running.kill_at is not None:
            if running.process.poll() is not None:
                self._gone(running)
            elif time.monotonic() >= running.kill_at:
                self.dropped_calls += self._active_calls(running)
                self.killed_pods += 1
                running.process.kill()
                running.process.wait(5)
                self._gone(running)
            return
        write_downward_annotations(running.annotations_file, pod["metadata"].get("annotations") or {})
        config = self._runtime_config(namespace, pod["spec"])
        if config is not None:  # the kubelet keeps a ConfigMap volume current
            write_volume_file(running.annotations_file.parent / "runtime.json", config)
        healthy = http_get(f"http://{running.ip}:{METRICS_PORT}/readyz")[0] == 200
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        gated = all(condition_status(pod, gate) == "True" for gate in gates)
        conditions = {c["type"]: dict(c) for c in (pod.get("status") or {}).get("conditions") or []}
        changed = False
        for condition, value in (("ContainersReady", healthy), ("Ready", healthy and gated)):
            truth = "True" if value else "False"
            if conditions.get(condition, {}).get("status") != truth:
                conditions[condition] = {"type": condition, "status": truth, "lastTransitionTime": now_iso()}
                changed = True
        if changed:
            status = dict(pod.get("status") or {})
            status["conditions"] = sorted(conditions.values(), key=lambda c: c["type"])
            status["phase"] = "Running" if healthy else "Pending"
            self._write_status(namespace, name, status, pod["metadata"]["resourceVersion"])

    def _active_calls(self, running: RunningPod) -> int:
        return active_calls(running.ip, running.last_calls)

    def _gone(self, running: RunningPod) -> None:
        with self._lock:
            self.running.pop((running.namespace, running.name), None)
        self._free.append(running.ip)
        shutil.rmtree(running.annotations_file.parent, ignore_errors=True)
        self._finalize(running.namespace, running.name)

    def _finalize(self, namespace: str, name: str) -> None:
        try:
            self.store.patch(
                self.pods, namespace, name, "application/merge-patch+json", {"metadata": {"finalizers": None}}
            )
        except ApiError:
            pass

    def _write_status(
        self, namespace: str, name: str, status: dict[str, Any], version: str | None = None
    ) -> None:
        body: dict[str, Any] = {"status": status}
        if version:
            body["metadata"] = {"resourceVersion": version}  # the operator writes conditions too
        try:
            self.store.patch(
                self.pods, namespace, name, "application/merge-patch+json", body, subresource="status"
            )
        except ApiError:
            pass  # changed meanwhile: the next pass sees it

    def _deployment_status(self, deployment: dict[str, Any]) -> None:
        meta = deployment["metadata"]
        pods, _ = self.store.list(self.pods, meta["namespace"])
        mine = [
            p
            for p in pods
            if any(ref["uid"] == meta["uid"] for ref in p["metadata"].get("ownerReferences") or [])
            and "deletionTimestamp" not in p["metadata"]
        ]
        ready = sum(1 for p in mine if condition_status(p, "Ready") == "True")
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(mine),
            "updatedReplicas": len(mine),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if deployment.get("status") != status:
            try:
                self.store.patch(
                    self.deployments,
                    meta["namespace"],
                    meta["name"],
                    "application/merge-patch+json",
                    {"status": status},
                    subresource="status",
                )
            except ApiError:
                pass
