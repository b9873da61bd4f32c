"""The operator against an API server: 300 agents x 3 regions.

Runs `voiceop run --standalone` as its own process (so its memory is its own) against the
loopback API server in this process, and with `--control-plane kubernetes` also against the
real control plane built from source (etcd, kube-apiserver, controller-manager, scheduler; the
operator with the chart's ServiceAccount and RBAC; a hollow sandbox kubelet that reports each
scheduled pod Ready without running media-sim, as kubemark's hollow nodes do), applies 3
Regions, 2 AIBackends and N VoiceAgents, and measures:
- time until every agent is Ready and done rolling out, against the baseline of rendering the
  same agents offline in this process (the pure work, without any API);
- API requests per child object while converging;
- write requests when a fresh operator process re-lists everything (a full resync): must be 0;
- the operator's resident memory, idle and with everything converged.

On the real control plane the operator's requests are what kube-apiserver dispatched for its
ServiceAccount (a FlowSchema of its own, apiserver_flowcontrol_dispatched_requests_total), and
its writes on resync are kube-apiserver's apiserver_request_total writes to what voiceop owns.

    python benchmarks/reconcile.py [--agents 300] [--control-plane loopback|kubernetes|both]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from voiceop.api import all_crds, parse_object  # noqa: E402
from voiceop.api.inventory import Inventory  # noqa: E402
from voiceop.inputs.yamlio import read_manifests  # noqa: E402
from voiceop.render import render_all  # noqa: E402
from voiceop.sandbox.apiserver import LoopbackApiServer  # noqa: E402
from voiceop.sandbox.apiserver.controllers import DeploymentController  # noqa: E402

NS = "contact-center"
WRITES = ("create", "update", "patch", "delete")


def world(agents: int) -> list[dict[str, Any]]:
    documents, _ = read_manifests([str(ROOT / "examples")])
    base = [d.obj for d in documents if d.obj["kind"] in ("Namespace", "Region", "AIBackend")]
    for obj in base:
        obj.get("spec", {}).pop("healthCheck", None)  # nothing to probe: only loopback traffic
    template = next(
        d.obj for d in documents if d.obj["kind"] == "VoiceAgent" and d.obj["metadata"]["name"] == "billing"
    )
    out = sorted(base, key=lambda o: o["kind"] != "Namespace")
    for index in range(agents):
        agent = copy.deepcopy(template)
        agent["metadata"]["name"] = f"agent-{index:04d}"
        out.append(agent)
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def converged_agents(agents: list[dict[str, Any]]) -> int:
    count = 0
    for item in agents:
        conditions = {c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions") or []}
        if conditions.get("Ready") == "True" and conditions.get("Progressing") == "False":
            count += 1
    return count


class LoopbackTarget:
    """The loopback API server in this process (its CPU is this process's)."""

    name = "loopback"

    def __enter__(self) -> LoopbackTarget:
        self._tmp = tempfile.TemporaryDirectory()
        self.server = LoopbackApiServer().start()
        for crd in all_crds():
            self.server.apply(crd)
        DeploymentController(self.server.store)
        self.server.store.request_log = deque()  # every request, for where they went
        self.kubeconfig = self.server.write_kubeconfig(Path(self._tmp.name) / "kubeconfig")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._tmp.cleanup()

    def apply(self, obj: dict[str, Any]) -> None:
        self.server.apply(obj)

    def ready_agents(self) -> int:
        store = self.server.store
        items, _ = store.list(store.resource_type("voiceop.dev", "v1alpha1", "voiceagents"), NS)
        return converged_agents(items)

    def watching(self) -> bool:
        return self.server.store.watch_count("voiceagents") > 0

    def operator_requests(self) -> float:
        return float(sum(self.server.store.request_counts.values()))

    def operator_writes(self) -> float:
        return float(sum(self.writes_by_resource().values()))

    def writes_by_resource(self) -> dict[str, float]:
        counts = self.server.store.request_counts
        return {verb: float(counts[verb]) for verb in WRITES if counts.get(verb)}

    def server_cpu(self) -> float:
        return time.process_time()

    def mark(self) -> int:
        """Requests served so far: a mark to list the writes after (see writes_since)."""
        return sum(self.server.store.request_counts.values())

    def writes_since(self, mark: int) -> list[tuple[str, str]]:
        """The write requests served after `mark`."""
        return [(verb, path) for verb, path in self.requests_since(mark) if verb in WRITES]

    def requests_since(self, mark: int) -> list[tuple[str, str]]:
        log = list(self.server.store.request_log)
        newer = sum(self.server.store.request_counts.values()) - mark
        return log[max(0, len(log) - newer) :]


def resource_of(path: str) -> str:
    """ "deployments", "voiceagents/status": what an API path names (/api/v1/..., /apis/g/v/...)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    return "/".join(parts[:1] + parts[2:3])


def where_requests_went(requests: list[tuple[str, str]], per: int) -> str:
    """ "patch deployments 0.30, ...": the requests by verb and resource, per child."""
    counts = Counter(f"{verb} {resource_of(path)}" for verb, path in requests)
    return ", ".join(f"{what} {n / per:.3f}" for what, n in counts.most_common())


# Writes kube-apiserver counted that can only be the operator's: to its children (their status
# is the controllers'), and to voiceop's custom resources and their status. Events are left out
# (every controller posts them; the cluster tests check voiceop's by their reporter).
CHILDREN = {"deployments", "services", "configmaps", "poddisruptionbudgets", "horizontalpodautoscalers"}
CUSTOM = {"regions", "aibackends", "voiceagents", "voiceendpoints"}


class KubernetesTarget:
    """The control plane built from source, the operator as it ships (chart RBAC)."""

    name = "kubernetes"

    def __enter__(self) -> KubernetesTarget:
        from clusterlib import operator_identity
        from voiceop.sandbox.cluster.controlplane import ControlPlane, find_binary
        from voiceop.sandbox.cluster.kubelet import SandboxKubelet
        from voiceop.sandbox.cluster.rest import Discovery
        from voiceop.sandbox.cluster.session import apply_crds

        find_binary()  # ControlPlaneMissing names the build command
        self._tmp = tempfile.TemporaryDirectory()
        self.plane = ControlPlane().start()
        self.admin = self.plane.admin()
        apply_crds(self.admin)
        self.discovery = Discovery(self.admin)
        self.kubeconfig = operator_identity(
            self.plane, self.admin, self.discovery, Path(self._tmp.name) / "op"
        )
        self.apply(FLOW_SCHEMA)
        # Hollow nodes as large as the fleet needs (kubemark's are too): capacity is not measured here.
        big = {"cpu": "2000", "memory": "8Ti", "pods": "5000", "ephemeral-storage": "10Ti"}
        self.kubelet = SandboxKubelet(self.admin, hollow=True, tick_seconds=1.0, node_capacity=big).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kubelet.stop()
        self.plane.stop()
        self._tmp.cleanup()

    def apply(self, obj: dict[str, Any]) -> None:
        self.admin.apply(self.discovery.path(obj), obj, manager="benchmark")

    def ready_agents(self) -> int:
        return converged_agents(
            self.admin.get(f"/apis/voiceop.dev/v1alpha1/namespaces/{NS}/voiceagents")["items"]
        )

    def watching(self) -> bool:
        return self.operator_requests() > 0

    def operator_requests(self) -> float:
        total = 0.0
        for line in self.admin.get("/metrics").splitlines():
            if line.startswith("apiserver_flowcontrol_dispatched_requests_total{") and (
                f'flow_schema="{FLOW_SCHEMA["metadata"]["name"]}"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def operator_writes(self) -> float:
        return sum(self.writes_by_resource().values())

    def writes_by_resource(self) -> dict[str, float]:
        from voiceop.sandbox.cluster.rest import WRITE_VERBS, request_counts

        return {
            f"{verb} {resource}{'/' + sub if sub else ''}": n
            for (verb, resource, sub), n in request_counts(self.admin).items()
            if verb in WRITE_VERBS and (resource in CUSTOM or (resource in CHILDREN and sub in ("", "scale")))
        }

    def agent_statuses(self) -> dict[str, Any]:
        items = self.admin.get(f"/apis/voiceop.dev/v1alpha1/namespaces/{NS}/voiceagents")["items"]
        return {i["metadata"]["name"]: i.get("status") or {} for i in items}

    def events_since(self, since: str) -> list[str]:
        items = self.admin.get(f"/api/v1/namespaces/{NS}/events")["items"]
        return [
            f"{e['involvedObject']['kind']}/{e['involvedObject']['name']} {e['reason']}: {e['message']}"
            for e in items
            if (e.get("lastTimestamp") or e.get("eventTime") or "") >= since
            and (e.get("source") or {})
            .get("component", e.get("reportingComponent", ""))
            .startswith("voiceop")
        ]

    def server_cpu(self) -> float:
        plane = sum(cpu_seconds(c.process.pid) for c in self.plane.components if c.process.poll() is None)
        return plane + time.process_time()


# The operator's ServiceAccount gets a FlowSchema of its own: kube-apiserver then counts the
# requests it dispatched for the operator apart from the controllers' and the kubelet's.
FLOW_SCHEMA: dict[str, Any] = {
    "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
    "kind": "FlowSchema",
    "metadata": {"name": "voiceop-operator"},
    "spec": {
        "matchingPrecedence": 500,
        "priorityLevelConfiguration": {"name": "workload-high"},
        "distinguisherMethod": {"type": "ByUser"},
        "rules": [
            {
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "serviceAccount": {"name": "voiceop", "namespace": "voiceop-system"},
                    }
                ],
                "resourceRules": [
                    {
                        "verbs": ["*"],
                        "apiGroups": ["*"],
                        "resources": ["*"],
                        "clusterScope": True,
                        "namespaces": ["*"],
                    }
                ],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            }
        ],
    },
}


def start_operator(kubeconfig: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    profile = (
        ["-m", "cProfile", "-o", os.environ["PROFILE_OPERATOR"]] if os.environ.get("PROFILE_OPERATOR") else []
    )
    command = [
        sys.executable,
        *profile,
        "-m",
        "voiceop",
        "run",
        "--standalone",
        "--metrics-port",
        "0",
        "--health-port",
        "0",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(predicate: Any, timeout: float, poll: float = 0.05) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("did not converge")
        time.sleep(poll)
    return time.perf_counter() - started


def wait_quiet(target: LoopbackTarget | KubernetesTarget, seconds: float, timeout: float) -> float:
    """Seconds until the operator made no write for `seconds` (at most `timeout`)."""
    started = last_change = time.perf_counter()
    writes = target.operator_writes()
    while time.perf_counter() - last_change < seconds:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"the operator kept writing for {timeout:.0f} s after converging")
        time.sleep(0.5)
        if (now := target.operator_writes()) != writes:
            writes, last_change = now, time.perf_counter()
    return time.perf_counter() - started


def measure(
    target: LoopbackTarget | KubernetesTarget, objects: list[dict[str, Any]], agents: int
) -> dict[str, Any]:
    operator = start_operator(target.kubeconfig)
    wait(target.watching, 60, poll=0.5)
    time.sleep(1.0)
    idle_rss = rss_mib(operator.pid)
    before_requests = target.operator_requests()
    request_mark = target.mark() if isinstance(target, LoopbackTarget) else 0
    cpu_before = target.server_cpu()
    for obj in objects:
        target.apply(obj)
    # Polled twice a second: listing every agent costs the API server (and so the operator) CPU.
    try:
        converge_s = wait(lambda: target.ready_agents() == agents, 1800, poll=0.5)
    except BaseException:
        operator.kill()  # a run that did not converge leaves no operator behind
        operator.wait(10)
        raise
    time.sleep(2.0)  # let stragglers (status of regions, routes) land
    measured: dict[str, Any] = {
        "converge_s": converge_s,
        "requests": target.operator_requests() - before_requests,
        "converged_rss": rss_mib(operator.pid),
        "idle_rss": idle_rss,
        "operator_cpu": cpu_seconds(operator.pid),
        "server_cpu": target.server_cpu() - cpu_before,
    }
    if isinstance(target, LoopbackTarget):
        measured["requests_by_resource"] = target.requests_since(request_mark)
    # A resync must find nothing to do: stop only once the operator has finished what it was
    # doing (the scaler's last decisions on the newest agents, their status), or a write left
    # over would be counted as one the restart made.
    measured["quiet_s"] = converge_s + 2.0 + wait_quiet(target, seconds=3.0, timeout=60.0)
    operator.send_signal(signal.SIGINT)  # a clean stop (a profile, if asked, is written)
    operator.wait(60)

    writes_before, requests_before = target.writes_by_resource(), target.operator_requests()
    statuses_before = target.agent_statuses() if isinstance(target, KubernetesTarget) else {}
    restarted_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    restart_mark = target.mark() if isinstance(target, LoopbackTarget) else 0
    restarted = start_operator(target.kubeconfig)
    wait(lambda: target.operator_requests() > requests_before, 60, poll=0.5)
    time.sleep(8.0)  # the new process lists everything and reconciles every key
    writes_after = target.writes_by_resource()
    resync = {
        k: n - writes_before.get(k, 0.0) for k, n in writes_after.items() if n > writes_before.get(k, 0.0)
    }
    measured["resync_writes"] = sum(resync.values())
    if resync:  # say which: a number alone cannot be fixed
        print(f"{target.name}: writes on resync: {resync}", file=sys.stderr)
        if isinstance(target, LoopbackTarget):
            for verb, path in target.writes_since(restart_mark)[:40]:
                print(f"  {verb} {path}", file=sys.stderr)
        if isinstance(target, KubernetesTarget):
            for line in target.events_since(restarted_at)[:40]:
                print(f"  event after the restart: {line}", file=sys.stderr)
            after = target.agent_statuses()
            changed = [n for n in after if after[n] != statuses_before.get(n)]
            for name in changed[:3]:
                for path, old, new in _differences(statuses_before.get(name), after[name]):
                    print(f"  {name} status{path}: {old!r} -> {new!r}", file=sys.stderr)
    measured["resync_requests"] = target.operator_requests() - requests_before
    restarted.terminate()
    restarted.wait(60)
    return measured


def _differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new))
            for d in _differences(old.get(k), new.get(k), f"{path}.{k}")
        ]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in _differences(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [(path, old, new)]


def apply_children(kubeconfig: str, children_file: str) -> None:
    """(In its own process, as the operator is.) Apply every child once with the operator's own
    client, 32 at a time (its connection limit), and print the seconds it took: what the API
    alone costs for the children, with no operator deciding anything."""
    import asyncio

    from voiceop.kube import KubeClient, connection_from_kubeconfig

    children = json.loads(Path(children_file).read_text())

    async def run() -> tuple[float, float]:
        client = KubeClient.connect(connection_from_kubeconfig(Path(kubeconfig)))
        gate = asyncio.Semaphore(32)

        async def one(obj: dict[str, Any]) -> None:
            async with gate:
                await client.apply(obj)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(c) for c in children))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await client.close()
        return elapsed, cpu

    elapsed, cpu = asyncio.run(run())
    print(f"{elapsed:.3f} {cpu:.3f}")


def http_floor(objects: list[dict[str, Any]], children: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Seconds a bare client takes to apply the children to a fresh loopback server, its CPU
    seconds, and the server's (this process's) meanwhile."""
    with LoopbackTarget() as target, tempfile.TemporaryDirectory() as tmp:
        for obj in objects:
            if obj["kind"] in ("Namespace", "Region", "AIBackend"):
                target.apply(obj)
        children_file = Path(tmp) / "children.json"
        children_file.write_text(json.dumps(children))
        server_cpu = time.process_time()
        done = subprocess.run(
            [sys.executable, __file__, "--apply-children", str(target.kubeconfig), str(children_file)],
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed, client_cpu = (float(x) for x in done.stdout.split()[-2:])
        return elapsed, client_cpu, time.process_time() - server_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--control-plane", choices=("loopback", "kubernetes", "both"), default="loopback")
    parser.add_argument("--apply-children", nargs=2, metavar=("KUBECONFIG", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.apply_children:
        apply_children(*args.apply_children)
        return
    objects = world(args.agents)

    inventory = Inventory.of(parse_object(o) for o in objects if o["apiVersion"].startswith("voiceop.dev"))
    started = time.perf_counter()
    children = [c for c in render_all(inventory) if c["metadata"]["name"] != "voiceop-routes"]
    render_s = time.perf_counter() - started
    n_children = len(children)

    targets = ["loopback", "kubernetes"] if args.control_plane == "both" else [args.control_plane]
    floor = http_floor(objects, children) if "loopback" in targets else None
    results = {}
    for name in targets:
        with LoopbackTarget() if name == "loopback" else KubernetesTarget() as target:
            results[name] = measure(target, objects, args.agents)

    print(f"{args.agents} agents x 3 regions -> {n_children} children (no endpoints, so no routes ConfigMap)")
    print(f"offline render of the same agents (baseline): {render_s:.2f} s")
    if floor is not None:
        # The floor under the converge and CPU targets: no operator can take less than its applies.
        floor_s, client_cpu, server_cpu = floor
        print(
            f"the {n_children} children applied once by a bare client (the operator's, 32 in flight) "
            f"to a fresh loopback server: {floor_s:.2f} s = {floor_s / render_s:.2f}x the render; "
            f"client CPU {client_cpu:.2f} s = {client_cpu / server_cpu:.2f}x the server's {server_cpu:.2f} s"
        )
    print(
        f"{'measure':<56} {'API server':>10} {'value':>10} {'baseline':>10} {'ratio':>7} {'target':>12} verdict"
    )
    rss_limit = 150.0 if args.agents <= 300 else 300.0  # the budgets: 300 and 1,000 agents
    for name, m in results.items():
        # (label, value, baseline, target as text, holds): a target is on the ratio where there
        # is a baseline, else on the value.
        rows: list[tuple[str, float, float | None, str, bool | None]] = [
            ("time to converge (s) vs offline render (s)", m["converge_s"], render_s, "ratio <= 5", None),
            (
                "operator's API requests per child while converging",
                m["requests"] / n_children,
                1.0,
                "<= 1.1",
                None,
            ),
            (
                "write requests on a full resync (restart)",
                m["resync_writes"],
                None,
                "0",
                m["resync_writes"] == 0,
            ),
            ("operator's requests on a full resync (lists, watches)", m["resync_requests"], None, "-", None),
            ("operator quiet (no write for 3 s) after the applies (s)", m["quiet_s"], None, "-", None),
            (
                "operator RSS converged (MiB) vs idle (MiB)",
                m["converged_rss"],
                m["idle_rss"],
                f"<= {rss_limit:.0f}",
                None,
            ),
            (
                "operator CPU (s) vs API server + harness CPU (s)",
                m["operator_cpu"],
                m["server_cpu"],
                "ratio <= 0.5",
                None,
            ),
        ]
        for label, value, baseline, goal, holds in rows:
            ratio_value = value / baseline if baseline else None
            if goal.startswith("ratio <= "):
                holds = ratio_value is not None and ratio_value <= float(goal.split()[-1])
            elif goal.startswith("<= "):
                holds = value <= float(goal.split()[-1])
            base = f"{baseline:>10.2f}" if baseline is not None else f"{'-':>10}"
            ratio = f"{ratio_value:>7.2f}" if ratio_value is not None else f"{'-':>7}"
            verdict = "-" if holds is None else ("PASS" if holds else "FAIL")
            print(f"{label:<56} {name:>10} {value:>10.2f} {base} {ratio} {goal:>12} {verdict}")
    for name, m in results.items():
        if "requests_by_resource" in m:
            print(f"{name}: requests per child while converging, by verb and resource: ", end="")
            print(where_requests_went(m["requests_by_resource"], n_children))


if __name__ == "__main__":
    main()
