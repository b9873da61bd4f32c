"""The operator against the loopback API server: 300 agents x 3 regions.

Runs `voiceop run --standalone` as its own process (so its memory is its own) against a
loopback API server in this process, applies 3 Regions, 2 AIBackends and N VoiceAgents, and
measures:
- time until every agent is Ready and done rolling out, against the baseline of rendering the
  same agents offline in this process (the pure work, without any API);
- API requests per child object while converging;
- write requests when a fresh operator process re-lists everything (a full resync): must be 0;
- the operator's resident memory, idle and with everything converged.

    python benchmarks/reconcile.py [--agents 300]
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
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


def ready_agents(server: LoopbackApiServer) -> int:
    rtype = server.store.resource_type("voiceop.dev", "v1alpha1", "voiceagents")
    items, _ = server.store.list(rtype, NS)
    count = 0
    for item in items:
        conditions = {c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions") or []}
        if conditions.get("Ready") == "True" and conditions.get("Progressing") == "False":
            count += 1
    return count


def writes(server: LoopbackApiServer) -> int:
    return sum(server.store.request_counts.get(verb, 0) for verb in WRITES)


def requests(server: LoopbackApiServer) -> int:
    return sum(server.store.request_counts.values())


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=300)
    args = parser.parse_args()
    objects = world(args.agents)

    inventory = Inventory.of(parse_object(o) for o in objects if o["apiVersion"].startswith("voiceop.dev"))
    started = time.perf_counter()
    children = [c for c in render_all(inventory) if c["metadata"]["name"] != "voiceop-routes"]
    render_s = time.perf_counter() - started

    with LoopbackApiServer() as server, tempfile.TemporaryDirectory() as tmp:
        for crd in all_crds():
            server.apply(crd)
        DeploymentController(server.store)
        kubeconfig = server.write_kubeconfig(Path(tmp) / "kubeconfig")

        operator = start_operator(kubeconfig)
        wait(lambda: server.store.watch_count("voiceagents") > 0, 30)
        time.sleep(1.0)
        idle_rss = rss_mib(operator.pid)
        before_requests = requests(server)

        for obj in objects:
            server.apply(obj)
        # Polled twice a second: listing every agent costs the API server (and so the operator) CPU.
        converge_s = wait(lambda: ready_agents(server) == args.agents, 600, poll=0.5)
        time.sleep(2.0)  # let stragglers (status of regions, routes) land
        converge_requests = requests(server) - before_requests
        converged_rss = rss_mib(operator.pid)
        operator_cpu = cpu_seconds(operator.pid)
        server_cpu = time.process_time()
        operator.send_signal(signal.SIGINT)  # a clean stop (a profile, if asked, is written)
        operator.wait(30)

        writes_before = writes(server)
        requests_before = requests(server)
        restarted = start_operator(kubeconfig)
        wait(lambda: server.store.watch_count("voiceagents") > 0, 30)
        time.sleep(5.0)  # the new process lists everything and reconciles every key
        resync_writes = writes(server) - writes_before
        resync_requests = requests(server) - requests_before
        restarted.terminate()
        restarted.wait(30)

    n_children = len(children)
    print(f"{args.agents} agents x 3 regions -> {n_children} children (no endpoints, so no routes ConfigMap)")
    print(f"{'measure':<52} {'value':>12} {'baseline':>12} {'ratio':>8}")
    rows = [
        ("time to converge (s) vs offline render (s)", converge_s, render_s),
        ("API requests per child object while converging", converge_requests / n_children, 1.0),
        ("write requests on a full resync (restart)", resync_writes, None),
        ("requests on a full resync (lists, watches)", resync_requests, None),
        ("operator RSS converged (MiB) vs idle (MiB)", converged_rss, idle_rss),
    ]
    rows.append(("operator CPU (s) vs API server + test harness CPU (s)", operator_cpu, server_cpu))
    for label, value, baseline in rows:
        base = f"{baseline:>12.2f}" if baseline is not None else f"{'-':>12}"
        ratio = f"{value / baseline:>8.2f}" if baseline else f"{'-':>8}"
        print(f"{label:<52} {value:>12.2f} {base} {ratio}")


if __name__ == "__main__":
    main()
