"""The sandbox kubelet: nodes for a real control plane whose pods are `voiceop media-sim`
processes on 127.x addresses.

As a kubelet behaves, as far as voiceop depends on it:
- registers Nodes (one per Region and zone by default, labelled with the Region's node
  selector and zone, with capacity) and keeps them Ready: a Lease renewed every 10 s from a
  thread of its own (a pass over thousands of pods must not starve it), and the Ready status
  posted again whenever the node lifecycle controller has marked it Unknown;
- runs each voiceop media pod the scheduler binds to one of its nodes as a process on its
  own loopback address, which is the pod IP (nothing else ever receives traffic);
- computes `Ready` as the kubelet does: containers ready (the process's /readyz) AND every
  readiness gate True; writes status only when it changed;
- writes the downward-API annotations file and the runtime ConfigMap's file with a lag (the
  real one refreshes them within its sync period: seconds, a minute at worst), and gives the
  process the container's environment (literal values, the pod's name and namespace);
- on deletion runs the preStop hook (GET /drain), sends SIGTERM, SIGKILL at the end of
  `terminationGracePeriodSeconds`, counts a call cut for every call a killed process held,
  then removes the pod (grace 0), as the kubelet confirms a deletion.
Pods of other programs on its nodes are left Pending: this kubelet runs only media pods.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceop.api.wire import MANAGED_BY, MANAGER
from voiceop.sandbox.cluster.nodes import (
    CAPACITY,
    NodeSpec,
    node_is_ready,
    nodes_for_region,
    register_node,
    renew_lease,
    report_node_status,
)
from voiceop.sandbox.cluster.rest import Rest, RestError
from voiceop.sandbox.pods import (
    METRICS_PORT,
    active_calls,
    http_get,
    media_process,
    runtime_configmap_of,
    target_labels,
    write_downward_annotations,
    write_volume_file,
)
from voiceop.status import now_iso

logger = logging.getLogger("voiceop.sandbox.kubelet")

HEARTBEAT_SECONDS = 10.0  # the kubelet's node status update frequency and lease renewal


@dataclass
class Process:
    namespace: str
    name: str
    uid: str
    ip: str
    process: subprocess.Popen[bytes]
    annotations_file: Path
    terminating: bool = False
    # The downward-API file's pending contents and when the kubelet will write them.
    pending_annotations: dict[str, str] | None = None
    write_at: float = 0.0
    last_status: Any = None
    calls: int = 0
    runtime_configmap: str | None = None  # the agent's runtime ConfigMap the pod mounts
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class LaggedFile:
    """A volume file the kubelet refreshes some time after its source changed."""

    path: Path
    pending: str | None = None
    write_at: float = 0.0

    def sync(self, text: str, now: float, lag: float) -> None:
        if text != self.pending:
            self.pending, self.write_at = text, now + lag
        if now >= self.write_at:
            write_volume_file(self.path, text)


@dataclass
class SandboxKubelet:
    rest: Rest
    extra_nodes: list[NodeSpec] = field(default_factory=list)
    nodes_from_regions: bool = True
    annotation_lag_seconds: float = 2.0
    tick_seconds: float = 0.3
    # Shorter than every call in a test: a removed busy pod then WOULD cut its calls.
    grace_cap_seconds: float | None = None
    # Hollow, as kubemark's hollow kubelet: each pod runs `sleep` and is reported ready, with
    # no media-sim behind its address (for fleets too large to run, e.g. the reconcile benchmark).
    hollow: bool = False
    node_capacity: dict[str, str] | None = None  # None: a typical node (32 CPUs, 250 pods)
    cut_calls: int = 0
    config_refresh_seconds: float = 2.0  # how often runtime ConfigMaps are read again
    killed_with_calls: list[tuple[str, int]] = field(default_factory=list)
    # Every pod whose deletion this kubelet carried out: (namespace/name, annotations, calls then).
    terminated: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    running: dict[str, Process] = field(default_factory=dict)  # pod uid -> process

    def __post_init__(self) -> None:
        self._addresses = (f"127.1.{high}.{low}" for high in range(0, 250) for low in range(2, 255))
        self._free: list[str] = []
        self._podinfo = Path(tempfile.mkdtemp(prefix="voiceop-kubelet-"))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._configs: dict[tuple[str, str], str] = {}  # (namespace, name) -> runtime.json
        self._configs_read = 0.0
        self._config_files: dict[str, LaggedFile] = {}  # pod uid -> its runtime.json

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> SandboxKubelet:
        for spec in self.extra_nodes:
            self.register(spec)
        for target, name in (
            (self._loop, "sandbox-kubelet"),
            (self._heartbeats, "sandbox-kubelet-heartbeat"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        with self._lock:
            processes = list(self.running.values())
            self.running.clear()
        for proc in processes:
            proc.process.kill()
        for proc in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.process.wait(5)
        shutil.rmtree(self._podinfo, ignore_errors=True)

    def __enter__(self) -> SandboxKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except RestError as error:
                if error.code in (429, 503):  # a CRD's storage starting, an apiserver restarting
                    logger.info("kubelet pass retried: %s", error)
                else:
                    logger.exception("kubelet pass failed")
            except Exception:  # a test tool must not die silently mid-test
                logger.exception("kubelet pass failed")
            self._stop.wait(self.tick_seconds)

    # --- what tests and the demo read -----------------------------------------------------

    def address(self, namespace: str, name: str) -> str | None:
        with self._lock:
            for proc in self.running.values():
                if (proc.namespace, proc.name) == (namespace, name):
                    return proc.ip
        return None

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus file_sd targets of every running pod."""
        with self._lock:
            return [
                {
                    "targets": [f"{p.ip}:{METRICS_PORT}"],
                    "labels": target_labels(p.namespace, p.name, p.labels),
                }
                for p in self.running.values()
                if not p.terminating
            ]

    # --- one pass -------------------------------------------------------------------------

    def sync(self) -> None:
        if self.nodes_from_regions:
            self._sync_region_nodes()
        pods = self.rest.get("/api/v1/pods", {"labelSelector": f"{MANAGED_BY}={MANAGER}"})["items"]
        if not self.hollow and time.monotonic() - self._configs_read >= self.config_refresh_seconds:
            self._read_runtime_configs()
        seen = set()
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") not in self.nodes:
                continue
            seen.add(pod["metadata"]["uid"])
            self._sync_pod(pod)
        with self._lock:
            vanished = [p for uid, p in self.running.items() if uid not in seen and not p.terminating]
        for proc in vanished:  # force-deleted: the kubelet kills at once
            self._kill(proc)
            self._forget(proc)

    def _read_runtime_configs(self) -> None:
        """Every voiceop runtime ConfigMap, in one list (the kubelet watches what its pods mount)."""
        self._configs_read = time.monotonic()
        items = self.rest.get("/api/v1/configmaps", {"labelSelector": f"{MANAGED_BY}={MANAGER}"})["items"]
        self._configs = {
            (c["metadata"]["namespace"], c["metadata"]["name"]): str((c.get("data") or {})["runtime.json"])
            for c in items
            if "runtime.json" in (c.get("data") or {})
        }

    def _sync_region_nodes(self) -> None:
        try:
            regions = self.rest.get("/apis/voiceop.dev/v1alpha1/regions")["items"]
        except RestError as error:
            if error.code == 404:
                return  # CRDs not applied yet
            raise
        for region in regions:
            for spec in nodes_for_region(region):
                if spec.name not in self.nodes:
                    self.register(spec)

    def register(self, spec: NodeSpec) -> None:
        """A node of this kubelet (Regions name the rest): registered Ready, heartbeats kept."""
        register_node(self.rest, spec, self.node_capacity)
        self.nodes[spec.name] = spec

    def _heartbeats(self) -> None:
        """As the kubelet's node status loop: a beat every 10 s whatever the pods keep the
        pod loop busy with. The pod loop had renewed the leases between its passes: at 1,000
        agents on this machine a pass outlasted the 40 s grace, the node lifecycle controller
        marked every node Unknown and tainted it, and no pod was ever scheduled again."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._heartbeat()
            except Exception:  # a test tool must not die silently mid-test
                logger.exception("kubelet heartbeat failed")

    def _heartbeat(self) -> None:
        for name in list(self.nodes):
            with contextlib.suppress(RestError):  # an API server restarting: the next beat
                renew_lease(self.rest, name)
                # The node lifecycle controller only ever marks a node Unknown; Ready again is
                # the kubelet's to post, as its status update does when the node differs.
                node = self.rest.get(f"/api/v1/nodes/{name}")
                if not node_is_ready(node):
                    logger.info("node %s was marked not Ready; posting Ready", name)
                    report_node_status(self.rest, name, self.node_capacity or CAPACITY)

    # --- pods -----------------------------------------------------------------------------

    def _sync_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with self._lock:
            proc = self.running.get(meta["uid"])
        if meta.get("deletionTimestamp"):
            if proc is None:
                self._confirm_deletion(pod)
            elif not proc.terminating:
                proc.terminating = True
                threading.Thread(target=self._terminate_safely, args=(proc, pod), daemon=True).start()
            return
        if proc is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            proc = self._run(pod)
        if proc.process.poll() is not None:
            logger.warning(
                "media-sim of %s/%s exited with %s; restarting",
                proc.namespace,
                proc.name,
                proc.process.returncode,
            )
            self._forget(proc)
            proc = self._run(pod)
        self._sync_annotations(proc, meta.get("annotations") or {})
        config = self._configs.get((proc.namespace, proc.runtime_configmap or ""))
        if config is not None and proc.uid in self._config_files:
            self._config_files[proc.uid].sync(config, time.monotonic(), self.annotation_lag_seconds)
        self._sync_status(proc, pod)

    def _run(self, pod: dict[str, Any]) -> Process:
        meta = pod["metadata"]
        ip = self._free.pop() if self._free else next(self._addresses)
        podinfo = self._podinfo / f"{meta['namespace']}_{meta['name']}"
        podinfo.mkdir(parents=True, exist_ok=True)
        annotations_file = podinfo / "annotations"
        write_downward_annotations(annotations_file, meta.get("annotations") or {})
        configmap = runtime_configmap_of(pod["spec"])
        if self.hollow:
            process = subprocess.Popen(
                ["sleep", "infinity"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        else:
            config = self._runtime_config(meta["namespace"], configmap)
            process = media_process(ip, pod["spec"], meta["namespace"], meta["name"], podinfo, config)
            self._config_files[meta["uid"]] = LaggedFile(podinfo / "runtime.json", config)
        proc = Process(meta["namespace"], meta["name"], meta["uid"], ip, process, annotations_file)
        proc.runtime_configmap = configmap
        proc.labels = dict(meta.get("labels") or {})
        with self._lock:
            self.running[meta["uid"]] = proc
        return proc

    def _runtime_config(self, namespace: str, configmap: str | None) -> str | None:
        """What the pod's runtime ConfigMap holds when it starts (read now if not listed yet)."""
        if configmap is None:
            return None
        if (namespace, configmap) not in self._configs:
            found = self.rest.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{configmap}")
            if found and "runtime.json" in (found.get("data") or {}):
                self._configs[(namespace, configmap)] = str(found["data"]["runtime.json"])
        return self._configs.get((namespace, configmap))

    def _sync_annotations(self, proc: Process, annotations: dict[str, str]) -> None:
        now = time.monotonic()
        if proc.pending_annotations != annotations:
            proc.pending_annotations = dict(annotations)
            proc.write_at = now + self.annotation_lag_seconds
        if now >= proc.write_at:
            write_downward_annotations(proc.annotations_file, proc.pending_annotations)

    def _sync_status(self, proc: Process, pod: dict[str, Any]) -> None:
        ready_process = self.hollow or http_get(f"http://{proc.ip}:{METRICS_PORT}/readyz")[0] == 200
        conditions = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        gated = all((conditions.get(g) or {}).get("status") == "True" for g in gates)
        ready = ready_process and gated
        containers = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": ready_process,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": pod["metadata"].get("creationTimestamp")}},
            }
            for c in pod["spec"]["containers"]
        ]
        wanted = {
            "Initialized": "True",
            "ContainersReady": "True" if ready_process else "False",
            "Ready": "True" if ready else "False",
        }
        observed = (ready_process, ready)
        if proc.last_status == observed and all(
            (conditions.get(k) or {}).get("status") == v for k, v in wanted.items()
        ):
            return
        now = now_iso()
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": proc.ip,
            "podIPs": [{"ip": proc.ip}],
            "startTime": (pod.get("status") or {}).get("startTime") or now,
            "containerStatuses": containers,
            # Strategic merge on `type`: the operator's readiness-gate condition stays as it is.
            "conditions": [
                {"type": kind, "status": value, "lastTransitionTime": now}
                if (conditions.get(kind) or {}).get("status") != value
                else conditions[kind]
                for kind, value in wanted.items()
            ],
        }
        path = f"/api/v1/namespaces/{proc.namespace}/pods/{proc.name}/status"
        try:
            self.rest.patch(path, {"status": status}, kind="strategic")
            proc.last_status = observed
        except RestError as error:
            logger.info("status of %s/%s: %s", proc.namespace, proc.name, error)

    def _terminate_safely(self, proc: Process, pod: dict[str, Any]) -> None:
        try:
            self._terminate(proc, pod)
        except Exception:
            logger.exception("terminating %s/%s failed; killing it", proc.namespace, proc.name)
            self._kill(proc)
            self._forget(proc)
            self._confirm_deletion(pod)

    def _terminate(self, proc: Process, pod: dict[str, Any]) -> None:
        """preStop, SIGTERM, SIGKILL at the end of the grace period; then confirm the deletion."""
        grace = float(
            pod["metadata"].get("deletionGracePeriodSeconds")
            or pod["spec"].get("terminationGracePeriodSeconds")
            or 30
        )
        if self.grace_cap_seconds is not None:
            grace = min(grace, self.grace_cap_seconds)
        deadline = time.monotonic() + grace
        proc.calls = active_calls(proc.ip, proc.calls)
        self.terminated.append(
            (f"{proc.namespace}/{proc.name}", dict(pod["metadata"].get("annotations") or {}), proc.calls)
        )
        for container in pod["spec"]["containers"]:
            hook = ((container.get("lifecycle") or {}).get("preStop") or {}).get("httpGet")
            if hook:
                port = hook.get("port", METRICS_PORT)
                if isinstance(port, str) and not port.isdigit():  # a named container port
                    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
                    port = named.get(port, METRICS_PORT)
                http_get(f"http://{proc.ip}:{port}{hook.get('path', '/')}", timeout=max(0.1, grace))
        if proc.process.poll() is None:
            proc.process.terminate()
        while proc.process.poll() is None and time.monotonic() < deadline:
            proc.calls = active_calls(proc.ip, proc.calls)
            time.sleep(0.2)
        if proc.process.poll() is None:
            self._kill(proc)
        self._forget(proc)
        self._confirm_deletion(pod)

    def _kill(self, proc: Process) -> None:
        calls = active_calls(proc.ip, proc.calls)
        proc.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.process.wait(5)
        if calls:
            self.cut_calls += calls
            self.killed_with_calls.append((f"{proc.namespace}/{proc.name}", calls))
            logger.warning("killed %s/%s holding %d call(s)", proc.namespace, proc.name, calls)

    def _forget(self, proc: Process) -> None:
        with self._lock:
            self.running.pop(proc.uid, None)
        self._config_files.pop(proc.uid, None)
        self._free.append(proc.ip)
        shutil.rmtree(proc.annotations_file.parent, ignore_errors=True)

    def _confirm_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        with contextlib.suppress(RestError):
            self.rest.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
