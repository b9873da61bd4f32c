"""Reliability in figures: the operator under faults, kills, restarts and bad input.

Every row comes from a run in this invocation. The operator runs as `voiceop run` in its own
process against the loopback API server in this process (and, with `--control-plane
kubernetes|both`, against the control plane built from source with the chart's RBAC):

- faults: for the churn (agents and endpoints created, edited, deleted), 10% of the operator's
  API requests fail (500, 409, 429 with Retry-After, or a dropped connection) and every watch
  stream is dropped every 3 s; then the faults stop. Converged at the end, time to converge,
  orphans, duplicated children, and the writes against the same churn without faults;
- kills: the operator is SIGKILLed at random points of the churn and restarted, with media-sim
  pods carrying calls; after each restart it must converge; orphans, duplicates, calls cut;
- restarts: the API server restarted (loopback; kube-apiserver), and etcd paused (SIGSTOP for
  10 s): the operator recovers without a restart of its own;
- invalid objects: a thousand objects, each a valid example with one field made invalid from
  its CRD schema (type, bounds, pattern, enum, length, items, unknown field, a required field
  left out, a reference to nothing), applied to the running operator: each is refused at
  admission naming the field, or gets Ready=False naming it; 0 crashes, 0 restarts; valid
  objects applied meanwhile still converge;
- secrets: every ConfigMap, status, Event and log line of the whole run scanned for the values
  of the Secrets used: 0 found.

    python benchmarks/chaos.py            # the full form (minutes of churn, 50 kills, 1,000 objects)
    python benchmarks/chaos.py --short    # CI's form
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from voiceop.api import all_crds, parse_object  # noqa: E402
from voiceop.api.inventory import Inventory  # noqa: E402
from voiceop.api.kinds import KINDS  # noqa: E402
from voiceop.controller.diff import is_subset  # noqa: E402
from voiceop.inputs.yamlio import read_manifests  # noqa: E402
from voiceop.render import render_all  # noqa: E402
from voiceop.sandbox.apiserver import ApiError, LoopbackApiServer  # noqa: E402
from voiceop.sandbox.apiserver.controllers import DeploymentController  # noqa: E402

NS = "chaos"
API = "voiceop.dev/v1alpha1"
WRITE_VERBS = ("create", "update", "patch", "delete")
CHILD_KINDS = ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler")


# --- the world ------------------------------------------------------------------------------


@dataclass
class World:
    """Regions, backends (one with a Secret), agents and endpoints; the Secret's value is
    random per run, so that a scan can find it anywhere it leaked to."""

    secret_value: str = field(default_factory=lambda: "sk-" + secrets.token_hex(16))
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: int = 0

    def __post_init__(self) -> None:
        documents, errors = read_manifests([str(ROOT / "examples")])
        assert not errors, errors
        self.examples = [d.obj for d in documents]

    def example(self, kind: str, name: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(
            next(
                o
                for o in self.examples
                if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
            )
        )

    def base(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "ai-credentials", "namespace": NS},
                "stringData": {"api-key": self.secret_value},
            }
        )
        for region in (copy.deepcopy(x) for x in self.examples if x["kind"] == "Region"):
            # No capacity cap: hundreds of churned agents would fill it, and a region a new agent
            # gets no pods in is (rightly) left out of its routes, which an offline render cannot know.
            region["spec"].pop("capacity", None)
            objects.append(region)
        for obj in (copy.deepcopy(x) for x in self.examples if x["kind"] == "AIBackend"):
            obj["metadata"]["namespace"] = NS
            obj["spec"].pop("healthCheck", None)  # nothing to probe: only loopback traffic
            if "credentialsSecretRef" in obj["spec"]:
                obj["spec"]["credentialsSecretRef"] = {"name": "ai-credentials", "key": "api-key"}
            objects.append(obj)
        return objects

    def new_agent(self) -> dict[str, Any]:
        agent = self.example("VoiceAgent", "billing")
        self.created += 1
        agent["metadata"] = {"name": f"agent-{self.created:04d}", "namespace": NS}
        agent["spec"]["regions"] = agent["spec"]["regions"][:2]
        self.agents[agent["metadata"]["name"]] = agent
        return agent

    def new_endpoint(self, agent: str) -> dict[str, Any]:
        endpoint = self.example("VoiceEndpoint", "billing-lines")
        endpoint["metadata"] = {"name": f"{agent}-line", "namespace": NS}
        endpoint["spec"]["agentRef"] = {"name": agent}
        endpoint["spec"]["phoneNumbers"] = [f"+3531555{self.created:04d}"]
        self.endpoints[endpoint["metadata"]["name"]] = endpoint
        return endpoint

    def churn_step(self) -> tuple[str, dict[str, Any] | None, tuple[str, str] | None]:
        """One change: ("apply", object, None) or ("delete", None, (kind, name))."""
        roll = self.rng.random()
        if roll < 0.2 or len(self.agents) < 3:
            return "apply", self.new_agent(), None
        name = self.rng.choice(sorted(self.agents))
        agent = self.agents[name]
        if roll < 0.55:
            change = self.rng.choice(("image", "regions", "backends", "prompt", "delay"))
            if change == "image":
                agent["spec"]["image"] = f"ghcr.io/example/voice-runtime:1.{self.rng.randint(0, 99)}"
            elif change == "regions":
                all_regions = [{"name": "eu-west", "minReplicas": 1, "maxReplicas": 6},
                               {"name": "us-east", "minReplicas": 1, "maxReplicas": 6},
                               {"name": "ap-southeast", "minReplicas": 1, "maxReplicas": 4}]  # fmt: skip
                agent["spec"]["regions"] = self.rng.sample(all_regions, self.rng.randint(1, 3))
            elif change == "backends":
                agent["spec"]["backends"].reverse()
            elif change == "prompt":
                agent["spec"]["settings"]["prompt"] = f"prompt {self.rng.randint(0, 10**6)}"
            else:
                agent["spec"]["scaling"]["scaleDownDelaySeconds"] = self.rng.choice((30, 60, 300))
            return "apply", copy.deepcopy(agent), None
        if roll < 0.7:
            line = f"{name}-line"
            if line in self.endpoints:
                del self.endpoints[line]
                return "delete", None, ("VoiceEndpoint", line)
            return "apply", self.new_endpoint(name), None
        if roll < 0.8:
            del self.agents[name]
            self.endpoints.pop(f"{name}-line", None)
            return "delete", None, ("VoiceAgent", name)
        backend = self.example("AIBackend", "self-hosted-pipeline")
        backend["metadata"]["namespace"] = NS
        backend["spec"].pop("healthCheck", None)
        backend["spec"]["model"] = f"pipeline-{self.rng.randint(0, 99)}"
        return "apply", backend, None


# --- the loopback cluster and its convergence -------------------------------------------------


class Loopback:
    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.server = LoopbackApiServer().start()
        for crd in all_crds():
            self.server.apply(crd)
        DeploymentController(self.server.store)
        self.kubeconfig = self.server.write_kubeconfig(Path(self.tmp.name) / "kubeconfig")
        self.store = self.server.store

    def close(self) -> None:
        self.server.stop()
        self.tmp.cleanup()

    def apply(self, obj: dict[str, Any]) -> None:
        self.server.apply(obj)

    def delete(self, kind: str, name: str) -> None:
        try:
            self.store.delete(self.store.type_of_kind(API, kind), NS, name)
        except ApiError as error:
            if error.code != 404:
                raise

    def items(self, api_version: str, kind: str, namespace: str | None = NS) -> list[dict[str, Any]]:
        items, _ = self.store.list(self.store.type_of_kind(api_version, kind), namespace)
        return items

    def writes(self) -> int:
        return sum(self.store.request_counts.get(v, 0) for v in WRITE_VERBS)

    def step(self, world: World) -> None:
        action, obj, target = world.churn_step()
        if action == "apply":
            assert obj is not None
            self.apply(obj)
        else:
            assert target is not None
            self.delete(*target)


@dataclass
class Check:
    missing: int = 0
    stale: int = 0
    orphans: int = 0
    duplicates: int = 0
    lagging_status: int = 0
    examples: list[str] = field(default_factory=list)  # what is off, for the report

    def __str__(self) -> str:
        counts = f"missing {self.missing}, stale {self.stale}, orphans {self.orphans}, duplicates {self.duplicates}, lagging {self.lagging_status}"
        return f"{counts}: {'; '.join(self.examples[:3])}"

    @property
    def converged(self) -> bool:
        return not (self.missing or self.stale or self.orphans or self.duplicates or self.lagging_status)


def expected_children(loopback: Loopback) -> list[dict[str, Any]]:
    """What the voiceop objects in the store ask for, rendered offline (references complete)."""
    inventory = Inventory()
    for kind in ("Region", "AIBackend", "VoiceAgent", "VoiceEndpoint"):
        for raw in loopback.items(API, kind, None if kind == "Region" else NS):
            try:
                inventory.add(parse_object(raw))
            except Exception:
                continue  # refused by the operator too (Ready=False): no children
    broken = {id(resource) for resource, errors in inventory.reference_errors() if errors}
    namespaced = [
        x
        for ns in inventory.namespaces()
        for group in (inventory.backends[ns], inventory.agents[ns], inventory.endpoints[ns])
        for x in group.values()
    ]
    complete = Inventory.of([r for r in (*inventory.regions.values(), *namespaced) if id(r) not in broken])
    return render_all(complete)


def check(loopback: Loopback) -> Check:
    result = Check()
    expected = {(o["kind"], o["metadata"]["name"]): o for o in expected_children(loopback)}
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in CHILD_KINDS:
        for item in loopback.items(KINDS[kind].api_version, kind):
            managed = (item["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "voiceop"
            if managed and not item["metadata"].get("deletionTimestamp"):
                live[(kind, item["metadata"]["name"])] = item
    for key, desired in expected.items():
        found = live.get(key)
        if found is None:
            result.missing += 1
            result.examples.append(f"missing {key[0]}/{key[1]}")
        elif not is_subset({k: v for k, v in desired.items() if k in ("spec", "data")}, found):
            result.stale += 1
            result.examples.append(f"stale {key[0]}/{key[1]}")
    result.orphans = sum(1 for key in live if key not in expected)
    seen: dict[tuple[str, str], int] = {}
    for (kind, _), item in live.items():
        if kind == "Deployment":
            labels = item["metadata"]["labels"]
            key = (labels.get("voiceop.dev/agent", ""), labels.get("voiceop.dev/region", ""))
            seen[key] = seen.get(key, 0) + 1
    result.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    for agent in loopback.items(API, "VoiceAgent"):
        status = agent.get("status") or {}
        if status.get("observedGeneration") != agent["metadata"].get("generation"):
            result.lagging_status += 1
    return result


def wait_converged(loopback: Loopback, timeout: float) -> tuple[float | None, Check]:
    started = time.monotonic()
    last = check(loopback)
    while not last.converged:
        if time.monotonic() - started > timeout:
            return None, last
        time.sleep(0.25)
        last = check(loopback)
    return time.monotonic() - started, last


# --- the operator as its own process ----------------------------------------------------------


class Operator:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Operator:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        command = [
            sys.executable,
            "-m",
            "voiceop",
            "run",
            "--standalone",
            "--metrics-port=0",
            "--health-port=0",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def every(seconds: float, action: Callable[[], object]) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            action()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


# --- the rows ---------------------------------------------------------------------------------


Row = tuple[str, str, str, str]  # what, measure, value, verdict


def churn_run(seconds: float, faults: bool, log: Path, world: World) -> tuple[float | None, Check, int]:
    loopback = Loopback()
    operator = Operator(loopback.kubeconfig, log)
    try:
        for obj in world.base():
            loopback.apply(obj)
        for _ in range(8):
            loopback.apply(world.new_agent())
        operator.start()
        wait_converged(loopback, 120)
        writes_before = loopback.writes()
        if faults:
            loopback.store.fail_randomly(0.10, seed=11)
        deadline = time.monotonic() + seconds
        with every(3.0, loopback.store.drop_watches) if faults else nullcontext():
            while time.monotonic() < deadline:
                loopback.step(world)
                time.sleep(0.2)
        loopback.store.fail_randomly(0)
        took, final = wait_converged(loopback, 180)
        return took, final, loopback.writes() - writes_before
    finally:
        operator.stop()
        Scan.collect(loopback)
        loopback.close()


@contextmanager
def nullcontext() -> Iterator[None]:
    yield


def faults_rows(seconds: float, log: Path) -> list[Row]:
    _, _, calm_writes = churn_run(seconds, False, log, World())
    took, final, writes = churn_run(seconds, True, log, World())
    what = f"10% of requests fail, watches dropped every 3 s, {seconds:.0f} s of churn"
    return [
        (what, "converged at the end", "yes" if final.converged else f"no: {final}", verdict(final.converged)),
        (what, "time to converge after the faults (s)", f"{took:.1f}" if took is not None else "-", verdict(took is not None)),
        (what, "orphans / duplicated children", f"{final.orphans} / {final.duplicates}", verdict(not final.orphans and not final.duplicates)),
        (what, "writes, against the same churn without faults", f"{writes} vs {calm_writes} ({writes / max(1, calm_writes):.2f}x)", "-"),
    ]  # fmt: skip


def verdict(holds: bool) -> str:
    return "PASS" if holds else "FAIL"


def kills_rows(kills: int, log: Path) -> list[Row]:
    from voiceop.sandbox.load import CallLoad
    from voiceop.sandbox.pods import PodSimulator

    world = World()
    loopback = Loopback()
    operator = Operator(loopback.kubeconfig, log)
    pods = PodSimulator(loopback.store).start()
    rng = random.Random(5)
    converged_each, worst = 0, 0.0
    failures: list[str] = []
    loads: list[CallLoad] = []
    try:
        for obj in world.base():
            loopback.apply(obj)
        for _ in range(3):
            agent = world.new_agent()
            agent["spec"]["drain"] = {"maxCallDurationSeconds": 120}
            agent["spec"]["scaling"]["scaleDownDelaySeconds"] = 20
            loopback.apply(agent)
        operator.start()
        wait_converged(loopback, 120)
        for index, name in enumerate(sorted(world.agents)):
            lengths = random.Random(index)
            load = CallLoad(
                loopback.store,
                pods,
                NS,
                f"voiceop.dev/agent={name}",
                rate=lambda t: 1.0,
                duration=lambda lengths=lengths: lengths.uniform(5, 20),
                peak=1.0,
                seed=index,
            )
            loads.append(load.start())
        for _ in range(kills):
            time.sleep(rng.uniform(0.5, 4.0))
            # Edits only: the calls' agents stay (a deleted agent's pods go with their calls).
            agent = world.agents[rng.choice(sorted(world.agents))]
            agent["spec"]["settings"]["prompt"] = f"prompt {rng.randint(0, 10**6)}"
            agent["spec"]["scaling"]["scaleDownDelaySeconds"] = rng.choice((10, 20, 40))
            loopback.apply(copy.deepcopy(agent))
            operator.kill()
            operator.start()
            took, state = wait_converged(loopback, 60)
            if took is None:
                failures.append(str(state))
            else:
                converged_each += 1
                worst = max(worst, took)
        for load in loads:
            load.stop()
        _, final = wait_converged(loopback, 60)
        time.sleep(2)
        cut = pods.dropped_calls
        placed = sum(load.placed for load in loads)
    finally:
        for load in loads:
            load.stop()
        operator.stop()
        pods.stop()
        Scan.collect(loopback)
        loopback.close()
    what = f"operator SIGKILLed {kills} times during churn, media-sim pods with calls"
    return [
        (what, "converged after each restart", f"{converged_each}/{kills} (slowest {worst:.1f} s)", verdict(converged_each == kills)),
        (what, "orphans / duplicated children", f"{final.orphans} / {final.duplicates}", verdict(not final.orphans and not final.duplicates)),
        (what, "calls cut (of calls placed)", f"{cut} ({placed})", verdict(cut == 0 and placed > 0)),
    ]  # fmt: skip


def restart_rows(log: Path) -> list[Row]:
    world = World()
    loopback = Loopback()
    operator = Operator(loopback.kubeconfig, log)
    try:
        for obj in world.base():
            loopback.apply(obj)
        for _ in range(5):
            loopback.apply(world.new_agent())
        operator.start()
        wait_converged(loopback, 120)
        pid = operator.process.pid if operator.process else 0
        loopback.server.restart(down_seconds=3.0)
        for _ in range(5):
            loopback.step(world)
        took, state = wait_converged(loopback, 90)
        same = operator.alive and operator.process is not None and operator.process.pid == pid
    finally:
        operator.stop()
        Scan.collect(loopback)
        loopback.close()
    what = "loopback API server restarted (3 s down)"
    ok = took is not None and same
    return [
        (
            what,
            "recovered, same operator process (s)",
            f"{took:.1f}" if took is not None else f"no: {state}",
            verdict(ok),
        )
    ]


def kubernetes_rows(log: Path) -> list[Row]:
    """kube-apiserver restarted and etcd paused, the operator with the chart's RBAC."""
    from clusterlib import operator_identity
    from voiceop.sandbox.cluster.controlplane import ControlPlane
    from voiceop.sandbox.cluster.rest import Discovery
    from voiceop.sandbox.cluster.session import apply_crds

    world = World()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as plane:
        admin = plane.admin()
        apply_crds(admin)
        discovery = Discovery(admin)
        kubeconfig = operator_identity(plane, admin, discovery, Path(tmp) / "operator")

        def apply(obj: dict[str, Any]) -> None:
            admin.apply(discovery.path(obj), obj, manager="chaos")

        def image_of(agent: str) -> str | None:
            found = admin.get_or_none(f"/apis/apps/v1/namespaces/{NS}/deployments/{agent}-eu-west")
            return found["spec"]["template"]["spec"]["containers"][0]["image"] if found else None

        def rolled(agent: dict[str, Any], timeout: float) -> float | None:
            started = time.monotonic()
            while image_of(agent["metadata"]["name"]) != agent["spec"]["image"]:
                if time.monotonic() - started > timeout:
                    return None
                time.sleep(0.25)
            return time.monotonic() - started

        def deployed(agent: dict[str, Any]) -> bool:
            """Its Deployment made a ReplicaSet: the controller manager is up and working."""
            found = admin.get_or_none(
                f"/apis/apps/v1/namespaces/{NS}/deployments/{agent['metadata']['name']}-eu-west"
            )
            return bool(found and (found.get("status") or {}).get("observedGeneration"))

        for obj in world.base():
            apply(obj)
        agent = world.new_agent()
        apply(agent)
        operator = Operator(kubeconfig, log).start()
        try:
            rolled(agent, 120)
            deadline = time.monotonic() + 120
            while not deployed(agent) and time.monotonic() < deadline:
                time.sleep(0.5)
            pid = operator.process.pid if operator.process else 0
            restarted = time.monotonic()
            plane.restart_apiserver()
            agent["spec"]["image"] = "ghcr.io/example/voice-runtime:2.0.0"
            apply(agent)
            took = rolled(agent, 120)
            took = None if took is None else time.monotonic() - restarted  # from the restart on
            same = operator.alive and operator.process is not None and operator.process.pid == pid
            rows.append(("kube-apiserver restarted", "change served after the restart, same operator process (s)", f"{took:.1f}" if took is not None else "no", verdict(took is not None and same)))  # fmt: skip
            etcd = next(c for c in plane.components if c.name == "etcd")
            etcd.process.send_signal(signal.SIGSTOP)
            time.sleep(10)
            etcd.process.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            agent["spec"]["image"] = "ghcr.io/example/voice-runtime:2.1.0"
            deadline = time.monotonic() + 60
            while True:  # kube-apiserver itself needs a moment to reach etcd again
                try:
                    apply(agent)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            took = rolled(agent, 120)
            took = None if took is None else time.monotonic() - resumed  # from etcd's return on
            same = operator.alive and operator.process is not None and operator.process.pid == pid
            rows.append(("etcd paused 10 s (SIGSTOP)", "change served after etcd resumed, same operator (s)", f"{took:.1f}" if took is not None else "no", verdict(took is not None and same)))  # fmt: skip
        finally:
            operator.stop()
        Scan.texts.append(json.dumps(admin.get(f"/api/v1/namespaces/{NS}/configmaps")))
        Scan.texts.append(json.dumps(admin.get(f"/api/v1/namespaces/{NS}/events")))
        Scan.texts.append(json.dumps(admin.get(f"/apis/voiceop.dev/v1alpha1/namespaces/{NS}/voiceagents")))
    Scan.secret_values.append(world.secret_value)
    return rows


# --- invalid objects ------------------------------------------------------------------------


def invalid_rows(count: int, log: Path) -> list[Row]:
    from invalid_objects import mutations

    world = World()
    loopback = Loopback()
    operator = Operator(loopback.kubeconfig, log)
    refused = named = ready_false = unexplained = 0
    examples: list[str] = []
    try:
        for obj in world.base():
            loopback.apply(obj)
        operator.start()
        accepted: list[tuple[str, str, str]] = []  # (kind, name, field)
        valid_agents = []
        for index, (obj, path) in enumerate(mutations(world, count, seed=3)):
            if index % 50 == 0:  # valid agents meanwhile: they must still converge
                valid = world.new_agent()
                loopback.apply(valid)
                valid_agents.append(valid["metadata"]["name"])
            try:
                loopback.apply(obj)
            except ApiError as error:
                refused += 1
                said = error.message + json.dumps(error.causes)
                named += path_named(path, said)
                if not path_named(path, said) and len(examples) < 3:
                    examples.append(f"{path}: {error.message[:160]}")
                continue
            accepted.append((obj["kind"], obj["metadata"]["name"], path))
        deadline = time.monotonic() + 120
        pending = list(accepted)
        while pending and time.monotonic() < deadline:
            still = []
            for kind, name, path in pending:
                obj = loopback.store.find(API, kind, None if kind == "Region" else NS, name) or {}
                ready = next(
                    (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
                    None,
                )
                if ready is None or (
                    ready["status"] != "False"
                    and ready.get("observedGeneration") != obj["metadata"].get("generation")
                ):
                    still.append((kind, name, path))
                elif ready["status"] == "False" and path_named(path, ready["message"]):
                    ready_false += 1
                else:
                    unexplained += 1
                    if len(examples) < 6:
                        examples.append(
                            f"{kind} {name} {path}: Ready={ready['status']} {ready['message'][:120]}"
                        )
            pending = still
            time.sleep(0.5)
        unexplained += len(pending)
        valid_ok = sum(
            1 for name in valid_agents
            if any(c["type"] == "Ready" and c["status"] == "True" for c in ((loopback.store.find(API, "VoiceAgent", NS, name) or {}).get("status") or {}).get("conditions") or [])
        )  # fmt: skip
        alive, starts = operator.alive, operator.starts
    finally:
        operator.stop()
        Scan.collect(loopback)
        loopback.close()
    for line in examples:
        print(f"  invalid-object example: {line}", file=sys.stderr)
    what = f"{count} invalid objects (one field each, from the CRD schemas)"
    return [
        (what, "refused at admission naming the field", f"{named}/{refused}", verdict(named == refused)),
        (what, "admitted, then Ready=False naming the field", f"{ready_false}", "-"),
        (what, "neither (unexplained)", f"{unexplained}", verdict(unexplained == 0)),
        (what, "operator crashes / restarts", f"{0 if alive else 1} / {starts - 1}", verdict(alive and starts == 1)),
        (what, "valid agents applied meanwhile, Ready", f"{valid_ok}/{len(valid_agents)}", verdict(valid_ok == len(valid_agents))),
    ]  # fmt: skip


def path_named(path: str, text: str) -> bool:
    """Whether an error names the field (or, for a field left out, its parent's path)."""
    return path in text or path.rsplit(".", 1)[0] in text


# --- secrets --------------------------------------------------------------------------------


class Scan:
    """Everything a user or a log reader sees, collected from every run of this invocation."""

    texts: ClassVar[list[str]] = []
    secret_values: ClassVar[list[str]] = []
    logs: ClassVar[list[Path]] = []

    @classmethod
    def collect(cls, loopback: Loopback) -> None:
        for api_version, kind in (
            ("v1", "ConfigMap"),
            ("v1", "Event"),
            (API, "VoiceAgent"),
            (API, "AIBackend"),
            (API, "VoiceEndpoint"),
        ):
            cls.texts.append(json.dumps(loopback.items(api_version, kind)))  # fmt: skip
        cls.texts.append(json.dumps(loopback.items(API, "Region", None)))
        secret = loopback.store.find("v1", "Secret", NS, "ai-credentials") or {}
        cls.secret_values += [v for v in (secret.get("stringData") or {}).values()]

    @classmethod
    def rows(cls) -> list[Row]:
        haystack = "\n".join(cls.texts) + "\n".join(
            p.read_text(errors="replace") for p in cls.logs if p.exists()
        )
        values = sorted(set(cls.secret_values))
        found = sum(haystack.count(v) for v in values)
        what = "every ConfigMap, status, Event and operator log line of this run"
        return [
            (
                what,
                f"Secret values found ({len(values)} values, {len(haystack) // 1024} KiB scanned)",
                str(found),
                verdict(found == 0 and bool(values)),
            )
        ]


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI's form: a short churn, 5 kills, 200 objects")
    parser.add_argument("--control-plane", choices=("loopback", "kubernetes", "both"), default="both")
    args = parser.parse_args()
    churn_s, kills, invalid = (30.0, 5, 200) if args.short else (180.0, 50, 1000)
    log_dir = Path(tempfile.mkdtemp(prefix="voiceop-chaos-"))
    rows: list[Row] = []
    started = time.monotonic()
    sections: list[tuple[str, Callable[[Path], list[Row]]]] = [
        ("faults", lambda log: faults_rows(churn_s, log)),
        ("kills", lambda log: kills_rows(kills, log)),
        ("restart", restart_rows),
        ("invalid", lambda log: invalid_rows(invalid, log)),
    ]
    if args.control_plane in ("kubernetes", "both"):
        sections.append(("kubernetes", kubernetes_rows))
    for name, run in sections:
        log = log_dir / f"{name}.log"
        Scan.logs.append(log)
        print(f"[{time.monotonic() - started:6.0f}s] {name} ...", file=sys.stderr, flush=True)
        try:
            rows += run(log)
        except Exception as error:  # a section that cannot finish is a failed row, not no table
            rows.append((name, "the section itself", f"{type(error).__name__}: {str(error)[:120]}", "FAIL"))
    rows += Scan.rows()
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("what", "measure", "value", "verdict")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print(
        f"chaos benchmark ({'short' if args.short else 'full'} form), {time.monotonic() - started:.0f} s; operator logs in {log_dir}"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0 if all(r[3] != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
