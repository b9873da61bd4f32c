"""`voiceop demo`: the operator at work, with no cluster.

A loopback API server, the real operator (kopf, watches, server-side apply) against it, the
bundled examples applied, media-sim processes standing in for media pods on 127.0.0.x, and a
caller load that rises and falls. It prints what the operator made and every scaling decision,
then a summary. Health checks in the examples point at public hosts; the demo drops them so
that nothing leaves the machine.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voiceop.api import all_crds
from voiceop.controller.runtime import OperatorRuntime
from voiceop.handlers.entry import run_operator
from voiceop.inputs.yamlio import read_manifests
from voiceop.kube import Connection
from voiceop.sandbox.apiserver import LoopbackApiServer
from voiceop.sandbox.load import CallLoad
from voiceop.sandbox.pods import PodSimulator

NS = "contact-center"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def say(text: str) -> None:
    print(text, flush=True)


class DecisionPrinter(logging.Handler):
    """Every scaling decision of the operator, as it happens."""

    def __init__(self, started: float) -> None:
        super().__init__(logging.INFO)
        self.started = started
        self.decisions = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.decisions += 1
        say(f"  [{time.monotonic() - self.started:5.1f}s] scale  {record.getMessage()}")


def load_shape(duration: float, peak: float) -> Any:
    """Calls per second: up over the first third, held, down over the last third."""

    def rate(t: float) -> float:
        if t >= duration:
            return 0.0
        phase = t / duration
        return peak * min(1.0, 3 * phase, 3 * (1 - phase))

    return rate


def call_lengths(seed: int) -> Callable[[], float]:
    """Call durations as contact centres see them, shrunk to demo time: log-normal, a median
    of 15 s and a tail (capped at 90 s), so that some pods still hold calls when they drain."""
    rng = random.Random(seed)
    return lambda: min(90.0, rng.lognormvariate(math.log(15.0), 0.7))


def examples(path: Path, scale_down_delay: float) -> list[dict[str, Any]]:
    """The examples as the demo applies them: no health checks that leave the machine, and
    builtin agents scale in after `scale_down_delay` seconds, so that the demo shows it."""
    documents, errors = read_manifests([str(path)])
    if errors:
        raise SystemExit("\n".join(str(e) for e in errors))
    objects = []
    for document in sorted(documents, key=lambda d: d.obj["kind"] != "Namespace"):
        obj = document.obj
        if obj["kind"] == "AIBackend":
            obj["spec"].pop("healthCheck", None)
        scaling = obj["spec"].get("scaling") if obj["kind"] == "VoiceAgent" else None
        if scaling and scaling.get("mode", "builtin") == "builtin":
            scaling["scaleDownDelaySeconds"] = int(scale_down_delay)
        objects.append(obj)
    return objects


def summary_of(server: LoopbackApiServer) -> list[str]:
    store = server.store
    lines = []
    for kind, api_version in (
        ("Deployment", "apps/v1"),
        ("Service", "v1"),
        ("PodDisruptionBudget", "policy/v1"),
        ("HorizontalPodAutoscaler", "autoscaling/v2"),
        ("ConfigMap", "v1"),
    ):
        items, _ = store.list(
            store.type_of_kind(api_version, kind), NS, "app.kubernetes.io/managed-by=voiceop"
        )
        lines.append(f"  {kind:<24} {', '.join(sorted(i['metadata']['name'] for i in items))}")
    return lines


def media_replicas(server: LoopbackApiServer, agent: str) -> tuple[int, int]:
    """(the agent's media Deployments' replicas, the sum of its regions' minReplicas)."""
    store = server.store
    deployments, _ = store.list(store.type_of_kind("apps/v1", "Deployment"), NS, f"voiceop.dev/agent={agent}")
    voiceagent = store.find("voiceop.dev/v1alpha1", "VoiceAgent", NS, agent) or {}
    floor = sum(r.get("minReplicas", 1) for r in voiceagent.get("spec", {}).get("regions", []))
    return sum(d["spec"].get("replicas", 1) for d in deployments), floor


def run_demo(
    duration: float = 60.0,
    peak_calls_per_second: float = 2.5,
    scale_down_delay: float = 30.0,
    examples_dir: Path = EXAMPLES,
) -> int:
    started = time.monotonic()
    printer = DecisionPrinter(started)
    scaler_log = logging.getLogger("voiceop.scaler")
    scaler_log.addHandler(printer)
    scaler_log.setLevel(logging.INFO)
    scaler_log.propagate = False
    logging.getLogger("kopf").setLevel(logging.ERROR)
    logging.getLogger("aiohttp").setLevel(logging.ERROR)

    with LoopbackApiServer() as server, PodSimulator(server.store) as pods:
        kubeconfig = server.write_kubeconfig(Path(tempfile.mkdtemp(prefix="voiceop-demo-")) / "kubeconfig")
        say(f"voiceop demo: a loopback API server at {server.url}")
        say(f"  while it runs: KUBECONFIG={kubeconfig} kubectl get voiceagents,pods -n {NS} --validate=false")
        for crd in all_crds():
            server.apply(crd)
        runtime = OperatorRuntime(connection=Connection(server=server.url, token="demo"))
        stop, ready = threading.Event(), threading.Event()
        operator = threading.Thread(
            target=run_operator,
            kwargs={"runtime": runtime, "standalone": True, "stop_flag": stop, "ready_flag": ready},
            daemon=True,
        )
        operator.start()
        if not ready.wait(20):
            say("error: the operator did not start within 20 s")
            return 1
        objects = examples(examples_dir, scale_down_delay)
        for obj in objects:
            server.apply(obj)
        say(
            f"applied {len(objects)} objects from {examples_dir}: "
            + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        )
        say(
            f"  (billing's scaleDownDelaySeconds shortened to {scale_down_delay:.0f} s, so that scale-in shows)"
        )

        agents = server.store.type_of_kind("voiceop.dev/v1alpha1", "VoiceAgent")

        def ready_agents() -> int:
            items, _ = server.store.list(agents, NS)
            return sum(
                1
                for item in items
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
            )

        deadline = time.monotonic() + 60
        while ready_agents() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        if ready_agents() < 2:
            say(f"error: {ready_agents()} of 2 VoiceAgents Ready after 60 s")
            stop.set()
            return 1
        say(f"[{time.monotonic() - started:5.1f}s] both VoiceAgents Ready; the operator made:")
        for line in summary_of(server):
            say(line)

        say(
            f"[{time.monotonic() - started:5.1f}s] callers ring billing for {duration:.0f}s (peak {peak_calls_per_second} calls/s in eu-west, half that in us-east)"
        )
        loads = [
            CallLoad(
                server.store,
                pods,
                NS,
                f"voiceop.dev/agent=billing,voiceop.dev/region={region}",
                rate=load_shape(duration, peak),
                duration=call_lengths(seed),
                peak=peak,
                seed=seed,
            ).start()
            for region, peak, seed in (
                ("eu-west", peak_calls_per_second, 1),
                ("us-east", peak_calls_per_second / 2, 2),
            )
        ]
        most_pods = 0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(1)
            most_pods = max(most_pods, len(pods.running))
        for load in loads:
            load.stop()
        say(f"[{time.monotonic() - started:5.1f}s] callers stop; the last calls end, then pods drain and go")
        drain_deadline = time.monotonic() + scale_down_delay + 120
        while time.monotonic() < drain_deadline:
            replicas, floor = media_replicas(server, "billing")
            if replicas <= floor and not any(load.live_calls() for load in loads):
                break
            time.sleep(1)
        replicas, floor = media_replicas(server, "billing")
        back_at_minimum = replicas <= floor
        if not back_at_minimum:
            say(f"error: billing still has {replicas} media pods, above its minimum {floor}")
        time.sleep(2)  # the pods the scaler removed last are gone from the simulator

        placed = sum(load.placed for load in loads)
        rejected = sum(load.rejected for load in loads)
        say("summary:")
        say(
            f"  calls placed {placed}, refused {rejected} ({100 * rejected / max(1, placed + rejected):.1f}%), cut {pods.dropped_calls}"
        )
        say(
            f"  media pods: most at once {most_pods}, now {len(pods.running)}; scaling decisions {printer.decisions}"
        )
        items, _ = server.store.list(agents, NS)
        for item in items:
            status = item.get("status") or {}
            regions = ", ".join(
                f"{r['name']} {r['readyReplicas']}/{r['desiredReplicas']}"
                for r in status.get("regions") or []
            )
            say(
                f"  VoiceAgent {item['metadata']['name']}: backend {status.get('activeBackend')}, pods ready/desired: {regions}"
            )
        stop.set()
        operator.join(15)
    return 0 if pods.dropped_calls == 0 and placed > 0 and back_at_minimum else 1


def main(duration: float, peak: float, scale_down_delay: float) -> int:
    try:
        return run_demo(duration, peak, scale_down_delay)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
