"""`voiceop demo`: the operator at work, with no cluster.

A loopback API server (or, with `--control-plane kubernetes`, the real control plane built from
source and the sandbox kubelet), the real operator (kopf, watches, server-side apply) against
it, the bundled examples applied, media-sim processes standing in for media pods on 127.x
addresses, and a caller load that rises and falls. It prints what the operator made and every scaling decision,
then a summary. The examples' AI backends point at public hosts; the demo points them (endpoints
and health checks) at a stand-in on 127.0.0.1, so that nothing leaves the machine, and takes
billing's first backend down for a while, then its second too: the operator fails over, and
calls that find no backend are handed to the human queue (a sipp UAS with `--sip`), counted by
reason in the summary.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from voiceop.controller.runtime import OperatorRuntime
from voiceop.handlers.entry import run_operator
from voiceop.inputs.yamlio import read_manifests
from voiceop.sandbox.backend import BackendStandIn
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


OUTAGE_BACKEND = "openai-realtime"  # billing's first backend (examples/agents.yaml)
FAILOVER_BACKEND = "self-hosted-pipeline"  # and its second
DEMO_TTFA_S = 0.35  # a healthy backend's time to first audio in the demo


def examples(path: Path, scale_down_delay: float, backends: BackendStandIn) -> list[dict[str, Any]]:
    """The examples as the demo applies them: AI backends at the loopback stand-in, and
    builtin agents scale in after `scale_down_delay` seconds, so that the demo shows it."""
    documents, errors = read_manifests([str(path)])
    if errors:
        raise SystemExit("\n".join(str(e) for e in errors))
    objects = []
    for document in sorted(documents, key=lambda d: d.obj["kind"] != "Namespace"):
        obj = document.obj
        if obj["kind"] == "AIBackend":
            name = obj["metadata"]["name"]
            obj["spec"].pop("regionalEndpoints", None)
            obj["spec"].update(
                protocol="http",
                endpoint=backends.session_url(name),
                healthCheck={"url": backends.url(name), "intervalSeconds": 1, "timeoutMs": 500},
            )
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


@dataclass
class Outage:
    """billing's first backend stops answering for a while, once the load has built up; what
    the operator makes of it (billing's active backend) is said as it changes."""

    world: DemoWorld
    backends: BackendStandIn
    started: float
    at: float
    lasts: float
    _timer: threading.Thread | None = None

    def say(self, text: str) -> None:
        say(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def active_backend(self) -> str | None:
        agents = self.world.list(API, "VoiceAgent", NS)
        billing = next((a for a in agents if a["metadata"]["name"] == "billing"), {})
        return (billing.get("status") or {}).get("activeBackend")

    def follow(self, seconds: float, active: str | None) -> str | None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = self.active_backend()
            if now != active:
                self.say(
                    f"operator: billing's active backend {active or 'none'} -> {now or 'none available'}"
                    " (its runtime ConfigMap; no pod rolls)"
                )
                active = now
            time.sleep(0.5)
        return active

    def start(self) -> Outage:
        def run() -> None:
            time.sleep(self.at)
            active = self.active_backend()
            self.say(f"outage: AIBackend {OUTAGE_BACKEND} stops answering")
            self.backends.set(OUTAGE_BACKEND, "down")
            active = self.follow(self.lasts / 2, active)
            self.say(f"outage: {FAILOVER_BACKEND} stops too; no backend left: new calls go to the humans")
            self.backends.set(FAILOVER_BACKEND, "down")
            active = self.follow(self.lasts / 2, active)
            self.backends.set(OUTAGE_BACKEND, "healthy")
            self.backends.set(FAILOVER_BACKEND, "healthy")
            self.say("both AI backends answer again")
            self.follow(8.0, active)

        self._timer = threading.Thread(target=run, name="demo-outage", daemon=True)
        self._timer.start()
        return self


def say_handoffs(world: DemoWorld, humans_received: int | None) -> None:
    """Hand-offs as billing's status counts them, and as the humans saw them."""
    billing = next((a for a in world.list(API, "VoiceAgent", NS) if a["metadata"]["name"] == "billing"), {})
    handoffs = (billing.get("status") or {}).get("handoffs") or {}
    reasons = ", ".join(f"{reason} {count}" for reason, count in (handoffs.get("byReason") or {}).items())
    received = "" if humans_received is None else f"; the human queue answered {humans_received}"
    say(
        f"  hand-offs to humans (billing, last {handoffs.get('windowSeconds', 0)} s): "
        f"{handoffs.get('handoffs', 0)} of {handoffs.get('calls', 0)} calls, by reason: {reasons or 'none'}{received}"
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

    with (
        BackendStandIn(session_latency_s=DEMO_TTFA_S) as backends,
        kubernetes_world() if control_plane == "kubernetes" else loopback_world() as world,
    ):
        say(f"voiceop demo: {world.where}; AI backends at a stand-in on 127.0.0.1:{backends.port}")
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
            demo = Demo(world, printer, started, backends, duration, peak_calls_per_second, scale_down_delay)
            return demo.run(examples_dir, sip)
        finally:
            stop.set()
            operator.join(15)


@dataclass
class Demo:
    world: DemoWorld
    printer: DecisionPrinter
    started: float
    backends: BackendStandIn
    duration: float
    peak: float
    scale_down_delay: float

    def at(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def outage(self) -> Outage:
        """A third of the way into the load, for a sixth of it (at least 8 s)."""
        return Outage(
            self.world, self.backends, self.started, self.duration / 3, max(8.0, self.duration / 6)
        ).start()

    def ready_agents(self) -> int:
        return sum(
            1
            for item in self.world.list(API, "VoiceAgent", NS)
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
        )

    def run(self, examples_dir: Path, sip: bool) -> int:
        world = self.world
        objects = examples(examples_dir, self.scale_down_delay, self.backends)
        for obj in objects:
            world.apply(obj)
        say(
            f"applied {len(objects)} objects from {examples_dir}: "
            + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        )
        say(
            f"  (billing's scaleDownDelaySeconds shortened to {self.scale_down_delay:.0f} s, so that scale-in shows)"
        )
        deadline = time.monotonic() + 90
        while self.ready_agents() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        if self.ready_agents() < 2:
            say(f"error: {self.ready_agents()} of 2 VoiceAgents Ready after 90 s")
            return 1
        say(f"{self.at()} both VoiceAgents Ready; the operator made:")
        for line in summary_of(world):
            say(line)
        if sip:
            from voiceop.sandbox.sip import sip_tools_available

            missing = sip_tools_available()
            if not missing:
                return self.run_sip()
            say(f"  --sip: {missing}; the callers use media-sim's HTTP call endpoint instead")
        return self.run_http()

    def announce_load(self, via: str = "") -> None:
        say(
            f"{self.at()} callers ring billing for {self.duration:.0f}s (peak {self.peak} calls/s in eu-west, "
            f"half that in us-east){via}"
        )

    def run_http(self) -> int:
        world = self.world
        self.announce_load()
        loads = [
            world.call_load(
                NS,
                f"voiceop.dev/agent=billing,voiceop.dev/region={region}",
                rate=load_shape(self.duration, peak),
                duration=call_lengths(seed),
                peak=peak,
                seed=seed,
            ).start()
            for region, peak, seed in (("eu-west", self.peak, 1), ("us-east", self.peak / 2, 2))
        ]
        self.outage()
        most_pods = 0
        end = time.monotonic() + self.duration
        while time.monotonic() < end:
            time.sleep(1)
            most_pods = max(most_pods, world.running_pods())
        for load in loads:
            load.stop()
        say(f"{self.at()} callers stop; the last calls end, then pods drain and go")
        drain_deadline = time.monotonic() + self.scale_down_delay + 120
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
            f"  calls placed {placed}, refused {rejected} ({100 * rejected / max(1, placed + rejected):.1f}%), "
            f"cut {world.cut_calls()}, handed to humans before an answer {sum(load.handed_off for load in loads)}"
        )
        say_handoffs(world, None)
        say_pods_and_agents(world, self.printer, most_pods)
        return 0 if world.cut_calls() == 0 and placed > 0 and back_at_minimum else 1

    def run_sip(self) -> int:
        from voiceop.sandbox.sip import HumanQueue, SyncedEdge

        world = self.world
        with HumanQueue() as humans:
            edge = SyncedEdge(
                world.kubeconfig,
                world.kubeconfig.parent / "edge",
                namespaces=(NS,),
                endpoints_from=world.endpoints_from,
                handoff_gateway=f"sip:{humans.address}:{humans.port}",  # billing hands off to a number
            ).start()
            try:
                say(
                    f"{self.at()} SIP edge: Kamailio on udp:{edge.address}:{edge.port}, fed by `voiceop edge sync`;"
                    f" the human queue (sipp) on {humans.address}:{humans.port}"
                )
                time.sleep(2)  # the edge's first sync of the pods' readiness
                self.announce_load(f", placed by sipp through Kamailio to {BILLING_NUMBER}")
                return self._sip_calls(edge, humans)
            finally:
                edge.stop()

    def _sip_calls(self, edge: Any, humans: Any) -> int:
        world = self.world
        runs = sip_callers(edge, self.duration, self.peak)
        self.outage()
        most_pods = 0
        while any(r.process is not None and r.process.poll() is None for r in runs):
            time.sleep(1)
            most_pods = max(most_pods, world.running_pods())
        results = [r.wait() for r in runs]
        say(f"{self.at()} callers stop; the last calls have ended, pods drain and go")
        deadline = time.monotonic() + self.scale_down_delay + 120
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
        say_handoffs(world, len(humans.received()))
        say_pods_and_agents(world, self.printer, most_pods)
        return 0 if failed == 0 and world.cut_calls() == 0 and placed > 0 and replicas <= floor else 1


def interrupt_on_sigterm() -> None:
    """A SIGTERM (`timeout`, `kill`, a CI runner) ends the demo as Ctrl-C does, through every
    `with` it is in: its media-sim processes, servers and SIP tools stop with it. By default the
    interpreter died at once and left the media-sims serving on 127.x (seen)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(
    duration: float, peak: float, scale_down_delay: float, sip: bool = False, control_plane: str = "loopback"
) -> int:
    from voiceop.sandbox.cluster.controlplane import ControlPlaneMissing

    interrupt_on_sigterm()
    try:
        return run_demo(duration, peak, scale_down_delay, sip=sip, control_plane=control_plane)
    except ControlPlaneMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
