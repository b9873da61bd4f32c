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


BILLING_NUMBER = "+35315551234"  # billing-lines (examples/endpoints.yaml)
CALLERS = {
    "eu-west": ["+442071234567", "+35318881234", "+33142681234"],  # GB, IE, FR
    "us-east": ["+12125550123", "+14165550123"],  # US, CA
}


def sip_callers(edge: Any, duration: float, peak: float) -> list[Any]:
    """sipp callers through the edge: the rate climbs to `peak` over the first third, then holds."""
    from voiceop.sandbox.sip import Callers

    runs = []
    for i, (region, numbers) in enumerate(CALLERS.items()):
        top = peak if region == "eu-west" else peak / 2
        step = max(0.1, round(top / 3, 1))
        runs.append(
            Callers(
                (edge.address, edge.port),
                BILLING_NUMBER,
                numbers,
                calls=max(1, int(top * duration * 0.8)),
                rate=step,
                hold_ms=20_000,
                max_concurrent=500,
                local_port=5090 + i,
                timeout_s=duration + 90,
                rate_increase=(step, top, max(1, int(duration / 9))),
            ).start()
        )
    return runs


def say_pods_and_agents(
    server: LoopbackApiServer, pods: PodSimulator, printer: DecisionPrinter, most_pods: int, agents: Any
) -> None:
    """The summary's last lines: media pods, and each VoiceAgent's backend and pods per region."""
    say(
        f"  media pods: most at once {most_pods}, now {len(pods.running)}; scaling decisions {printer.decisions}"
    )
    items, _ = server.store.list(agents, NS)
    for item in items:
        status = item.get("status") or {}
        regions = ", ".join(
            f"{r['name']} {r['readyReplicas']}/{r['desiredReplicas']}" for r in status.get("regions") or []
        )
        say(
            f"  VoiceAgent {item['metadata']['name']}: backend {status.get('activeBackend')}, pods ready/desired: {regions}"
        )


def run_demo(
    duration: float = 60.0,
    peak_calls_per_second: float = 2.5,
    scale_down_delay: float = 30.0,
    examples_dir: Path = EXAMPLES,
    sip: bool = False,
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

        edge = None
        if sip:
            from voiceop.sandbox.sip import SyncedEdge, sip_tools_available

            missing = sip_tools_available()
            if missing:
                say(f"  --sip: {missing}; the callers use media-sim's HTTP call endpoint instead")
            else:
                edge = SyncedEdge(kubeconfig, kubeconfig.parent / "edge", namespaces=(NS,)).start()
                say(
                    f"[{time.monotonic() - started:5.1f}s] SIP edge: Kamailio on udp:{edge.address}:{edge.port}, fed by `voiceop edge sync`"
                )
                time.sleep(2)  # the edge's first sync of the pods' readiness
        say(
            f"[{time.monotonic() - started:5.1f}s] callers ring billing for {duration:.0f}s (peak {peak_calls_per_second} calls/s in eu-west, half that in us-east)"
            + (f", placed by sipp through Kamailio to {BILLING_NUMBER}" if edge else "")
        )
        if edge is not None:
            return _sip_demo(
                server,
                pods,
                edge,
                printer,
                started,
                duration,
                peak_calls_per_second,
                scale_down_delay,
                stop,
                operator,
                agents,
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
        say_pods_and_agents(server, pods, printer, most_pods, agents)
        stop.set()
        operator.join(15)
    return 0 if pods.dropped_calls == 0 and placed > 0 and back_at_minimum else 1


def _sip_demo(
    server: LoopbackApiServer,
    pods: PodSimulator,
    edge: Any,
    printer: DecisionPrinter,
    started: float,
    duration: float,
    peak: float,
    scale_down_delay: float,
    stop: threading.Event,
    operator: threading.Thread,
    agents: Any,
) -> int:
    try:
        runs = sip_callers(edge, duration, peak)
        most_pods = 0
        while any(r.process is not None and r.process.poll() is None for r in runs):
            time.sleep(1)
            most_pods = max(most_pods, len(pods.running))
        results = [r.wait() for r in runs]
        say(
            f"[{time.monotonic() - started:5.1f}s] callers stop; the last calls have ended, pods drain and go"
        )
        deadline = time.monotonic() + scale_down_delay + 120
        while (
            time.monotonic() < deadline
            and media_replicas(server, "billing")[0] > media_replicas(server, "billing")[1]
        ):
            time.sleep(1)
        replicas, floor = media_replicas(server, "billing")
        time.sleep(2)
        placed = sum(r.successful + r.failed for r in results)
        failed = sum(r.failed for r in results)
        say("summary:")
        say(
            f"  SIP calls placed {placed} (sipp), answered and ended {placed - failed}, failed {failed}, cut {pods.dropped_calls}"
        )
        for region, result in zip(CALLERS, results, strict=True):
            say(
                f"  callers for {region}: {result.successful} calls, INVITE->200 {result.response_ms:.1f} ms mean"
            )
        say_pods_and_agents(server, pods, printer, most_pods, agents)
        return 0 if failed == 0 and pods.dropped_calls == 0 and placed > 0 and replicas <= floor else 1
    finally:
        edge.stop()
        stop.set()
        operator.join(15)


def main(duration: float, peak: float, scale_down_delay: float, sip: bool = False) -> int:
    try:
        return run_demo(duration, peak, scale_down_delay, sip=sip)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
