"""`voiceop demo`: the operator at work, with no cluster.

A loopback API server (or, with `--control-plane kubernetes`, the real control plane built from
source and the sandbox kubelet), the real operator (kopf, watches, server-side apply) against
it, the bundled examples applied, media-sim processes standing in for media pods on 127.x
addresses, and a caller load that rises and falls. It prints what the operator made and every scaling decision,
then a summary. Health checks in the examples point at public hosts; the demo drops them so
that nothing leaves the machine.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voiceop.controller.runtime import OperatorRuntime
from voiceop.handlers.entry import run_operator
from voiceop.inputs.yamlio import read_manifests
from voiceop.sandbox.demo_world import DemoWorld, kubernetes_world, loopback_world

NS = "contact-center"
API = "voiceop.dev/v1alpha1"
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


def summary_of(world: DemoWorld) -> list[str]:
    lines = []
    for kind, api_version in (
        ("Deployment", "apps/v1"),
        ("Service", "v1"),
        ("PodDisruptionBudget", "policy/v1"),
        ("HorizontalPodAutoscaler", "autoscaling/v2"),
        ("ConfigMap", "v1"),
    ):
        items = world.list(api_version, kind, NS, "app.kubernetes.io/managed-by=voiceop")
        lines.append(f"  {kind:<24} {', '.join(sorted(i['metadata']['name'] for i in items))}")
    return lines


def media_replicas(world: DemoWorld, agent: str) -> tuple[int, int]:
    """(the agent's media Deployments' replicas, the sum of its regions' minReplicas)."""
    deployments = world.list("apps/v1", "Deployment", NS, f"voiceop.dev/agent={agent}")
    voiceagent = next((a for a in world.list(API, "VoiceAgent", NS) if a["metadata"]["name"] == agent), {})
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


def say_pods_and_agents(world: DemoWorld, printer: DecisionPrinter, most_pods: int) -> None:
    """The summary's last lines: media pods, and each VoiceAgent's backend and pods per region."""
    say(
        f"  media pods: most at once {most_pods}, now {world.running_pods()}; scaling decisions {printer.decisions}"
    )
    for item in world.list(API, "VoiceAgent", NS):
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
    control_plane: str = "loopback",
) -> int:
    started = time.monotonic()
    printer = DecisionPrinter(started)
    scaler_log = logging.getLogger("voiceop.scaler")
    scaler_log.addHandler(printer)
    scaler_log.setLevel(logging.INFO)
    scaler_log.propagate = False
    logging.getLogger("kopf").setLevel(logging.ERROR)
    logging.getLogger("aiohttp").setLevel(logging.ERROR)

    with kubernetes_world() if control_plane == "kubernetes" else loopback_world() as world:
        say(f"voiceop demo: {world.where}")
        say(f"  while it runs: KUBECONFIG={world.kubeconfig} kubectl get voiceagents,pods -n {NS}")
        runtime = OperatorRuntime(connection=world.connection)
        stop, ready = threading.Event(), threading.Event()
        operator = threading.Thread(
            target=run_operator,
            kwargs={"runtime": runtime, "standalone": True, "stop_flag": stop, "ready_flag": ready},
            daemon=True,
        )
        operator.start()
        try:
            if not ready.wait(20):
                say("error: the operator did not start within 20 s")
                return 1
            return _demo_with_operator(
                world, printer, started, duration, peak_calls_per_second, scale_down_delay, examples_dir, sip
            )
        finally:
            stop.set()
            operator.join(15)


def _demo_with_operator(
    world: DemoWorld,
    printer: DecisionPrinter,
    started: float,
    duration: float,
    peak_calls_per_second: float,
    scale_down_delay: float,
    examples_dir: Path,
    sip: bool,
) -> int:
    objects = examples(examples_dir, scale_down_delay)
    for obj in objects:
        world.apply(obj)
    say(
        f"applied {len(objects)} objects from {examples_dir}: "
        + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    )
    say(f"  (billing's scaleDownDelaySeconds shortened to {scale_down_delay:.0f} s, so that scale-in shows)")

    def ready_agents() -> int:
        return sum(
            1
            for item in world.list(API, "VoiceAgent", NS)
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
        )

    deadline = time.monotonic() + 90
    while ready_agents() < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    if ready_agents() < 2:
        say(f"error: {ready_agents()} of 2 VoiceAgents Ready after 90 s")
        return 1
    say(f"[{time.monotonic() - started:5.1f}s] both VoiceAgents Ready; the operator made:")
    for line in summary_of(world):
        say(line)

    edge = None
    if sip:
        from voiceop.sandbox.sip import SyncedEdge, sip_tools_available

        missing = sip_tools_available()
        if missing:
            say(f"  --sip: {missing}; the callers use media-sim's HTTP call endpoint instead")
        else:
            edge = SyncedEdge(
                world.kubeconfig,
                world.kubeconfig.parent / "edge",
                namespaces=(NS,),
                endpoints_from=world.endpoints_from,
            ).start()
            say(
                f"[{time.monotonic() - started:5.1f}s] SIP edge: Kamailio on udp:{edge.address}:{edge.port}, fed by `voiceop edge sync`"
            )
            time.sleep(2)  # the edge's first sync of the pods' readiness
    say(
        f"[{time.monotonic() - started:5.1f}s] callers ring billing for {duration:.0f}s (peak {peak_calls_per_second} calls/s in eu-west, half that in us-east)"
        + (f", placed by sipp through Kamailio to {BILLING_NUMBER}" if edge else "")
    )
    if edge is not None:
        return _sip_demo(world, edge, printer, started, duration, peak_calls_per_second, scale_down_delay)
    loads = [
        world.call_load(
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
        most_pods = max(most_pods, world.running_pods())
    for load in loads:
        load.stop()
    say(f"[{time.monotonic() - started:5.1f}s] callers stop; the last calls end, then pods drain and go")
    drain_deadline = time.monotonic() + scale_down_delay + 120
    while time.monotonic() < drain_deadline:
        replicas, floor = media_replicas(world, "billing")
        if replicas <= floor and not any(load.live_calls() for load in loads):
            break
        time.sleep(1)
    replicas, floor = media_replicas(world, "billing")
    back_at_minimum = replicas <= floor
    if not back_at_minimum:
        say(f"error: billing still has {replicas} media pods, above its minimum {floor}")
    time.sleep(2)  # the pods the scaler removed last are gone

    placed = sum(load.placed for load in loads)
    rejected = sum(load.rejected for load in loads)
    say("summary:")
    say(
        f"  calls placed {placed}, refused {rejected} ({100 * rejected / max(1, placed + rejected):.1f}%), cut {world.cut_calls()}"
    )
    say_pods_and_agents(world, printer, most_pods)
    return 0 if world.cut_calls() == 0 and placed > 0 and back_at_minimum else 1


def _sip_demo(
    world: DemoWorld,
    edge: Any,
    printer: DecisionPrinter,
    started: float,
    duration: float,
    peak: float,
    scale_down_delay: float,
) -> int:
    try:
        runs = sip_callers(edge, duration, peak)
        most_pods = 0
        while any(r.process is not None and r.process.poll() is None for r in runs):
            time.sleep(1)
            most_pods = max(most_pods, world.running_pods())
        results = [r.wait() for r in runs]
        say(
            f"[{time.monotonic() - started:5.1f}s] callers stop; the last calls have ended, pods drain and go"
        )
        deadline = time.monotonic() + scale_down_delay + 120
        while (
            time.monotonic() < deadline
            and media_replicas(world, "billing")[0] > media_replicas(world, "billing")[1]
        ):
            time.sleep(1)
        replicas, floor = media_replicas(world, "billing")
        time.sleep(2)
        placed = sum(r.successful + r.failed for r in results)
        failed = sum(r.failed for r in results)
        say("summary:")
        say(
            f"  SIP calls placed {placed} (sipp), answered and ended {placed - failed}, failed {failed}, cut {world.cut_calls()}"
        )
        for region, result in zip(CALLERS, results, strict=True):
            say(
                f"  callers for {region}: {result.successful} calls, INVITE->200 {result.response_ms:.1f} ms mean"
            )
        say_pods_and_agents(world, printer, most_pods)
        return 0 if failed == 0 and world.cut_calls() == 0 and placed > 0 and replicas <= floor else 1
    finally:
        edge.stop()


def main(
    duration: float, peak: float, scale_down_delay: float, sip: bool = False, control_plane: str = "loopback"
) -> int:
    from voiceop.sandbox.cluster.controlplane import ControlPlaneMissing

    try:
        return run_demo(duration, peak, scale_down_delay, sip=sip, control_plane=control_plane)
    except ControlPlaneMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
