"""`voiceop media-sim`: a simulated media pod that keeps the media pod contract (DESIGN.md).

On its metrics port (9090) it serves
- `GET /metrics`: voice_active_calls, voice_calls_total{backend, model},
  voice_response_latency_seconds, voice_handoffs_total{reason, backend, model}, in the
  Prometheus text format;
- `GET /healthz`: 200 while the process works (liveness: a draining pod is alive);
- `GET /readyz`: 200 while it takes calls, 503 while it drains (readiness);
- `GET /drain`: stop taking calls and answer when the last call has ended (the preStop hook);
- `GET /handoffs?since=UNIX`: its hand-off records and per-minute call counts, as JSON, for
  `voiceop handoffs` to collect;
and `POST /calls?duration=S`: take a call for S seconds (200), or refuse it when every slot
is taken or it drains (503), for load that does not speak SIP. With `--sip-port` it answers
SIP on the same address (mediasip.py): each dialog holds a slot until its BYE. SIGTERM
drains (no new call, the calls in progress end as their callers hang up), then exits.

It drains when the operator takes it out of the serving set: the operator flips the readiness
gate and sets the annotation `voiceop.dev/draining-since`, which the kubelet writes into the
downward-API file `$VOICEOP_POD_ANNOTATIONS`; it takes calls again when the annotation goes.

Its AI layer (mediaai.py) follows the runtime config: each turn of a call is an exchange with the
active backend, whose time to first audio plus the pod's own load makes the voice latency. The
fallback hands calls to a human: before answering when the backend does not answer
(backendUnavailable: SIP 302 to the human), mid-call when the backend stays over its latency
budget (latencyOverBudget) or the caller asks (callerRequest: SIP REFER to the human).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from voiceop.api.wire import DRAINING_SINCE
from voiceop.sandbox.mediaai import SESSION_TIMEOUT_S, AiLayer, HandoffRecord

LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0)


# Every call learns whether it goes on with the AI or was handed to a human.
Transfer = Callable[[str, str], Awaitable[bool]]  # (call id, target) -> transferred


@dataclass
class Call:
    task: asyncio.Task[None] | None = None
    wants_human: asyncio.Event = field(default_factory=asyncio.Event)
    transfer: Transfer | None = None  # how this call is handed off (SIP: REFER); None: end it
    handed_off: bool = False


@dataclass(frozen=True)
class Admission:
    """What happens to a new call: taken, refused (status, reason) or redirected to a human."""

    refusal: tuple[int, str] | None = None
    redirect: str | None = None

    @property
    def taken(self) -> bool:
        return self.refusal is None and self.redirect is None


@dataclass
class MediaPod:
    slots: int
    ai: AiLayer = field(default_factory=lambda: AiLayer(None, "", {}))
    out_of_service: bool = False  # the operator drains it (annotation): reversible
    stopping: bool = False  # preStop or SIGTERM: for good
    turn_seconds: float = 2.0
    calls: dict[str, Call] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    rng: random.Random = field(default_factory=lambda: random.Random(os.getpid()))

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.active = Gauge("voice_active_calls", "Calls in progress.", registry=self.registry)
        self.total = Counter(
            "voice_calls",
            "Calls handled (answered, or handed off before).",
            ["backend", "model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "voice_response_latency_seconds",
            "Caller stops speaking -> agent audio starts.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.handoffs = Counter(
            "voice_handoffs",
            "Calls handed to a human.",
            ["reason", "backend", "model"],
            registry=self.registry,
        )
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def accepting(self) -> bool:
        return not (self.out_of_service or self.stopping)

    def refusal(self, fill_to_target: bool = False) -> tuple[int, str] | None:
        """The SIP answer to a new call when it cannot be taken: draining 503, full 486; and,
        when the edge fills pods to their target first (X-Voiceop-Fill: target), 486 at the
        target share of calls, so that the call goes to a pod below it."""
        if not self.accepting:
            return (503, "Service Unavailable")
        if len(self.calls) >= self.slots:
            return (486, "Busy Here")
        target = self.ai.config.target_calls_per_pod
        if fill_to_target and target is not None and len(self.calls) >= target:
            return (486, "Busy Here (at target)")
        return None

    async def admit(self, call_id: str, fill_to_target: bool = False) -> Admission:
        """Before answering: a slot, and a backend that answers (else the fallback decides)."""
        refusal = self.refusal(fill_to_target)
        if refusal is not None:
            return Admission(refusal=refusal)
        if await self.ai.available():
            return Admission()
        if not self.ai.config.fallback.on("backendUnavailable"):
            return Admission(refusal=(503, "Backend Unavailable"))
        self._count_call()
        self._hand_off_record(call_id, "backendUnavailable", None, "redirect").outcome = "transferred"
        return Admission(redirect=self.ai.config.fallback.target)

    def open_dialog(
        self, call_id: str, duration: float | None = None, caller: str = "", transfer: Transfer | None = None
    ) -> bool:
        """Take a slot for `call_id` until hang_up (or for `duration` seconds); False if none."""
        if self.refusal() is not None or call_id in self.calls:
            return False
        call = Call(transfer=transfer)
        self.calls[call_id] = call
        call.task = asyncio.get_running_loop().create_task(self._converse(call_id, call, duration))
        self._count_call()
        self.active.set(len(self.calls))
        self.idle.clear()
        return True

    def hang_up(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.task is not None:
            call.task.cancel()

    def is_open(self, call_id: str) -> bool:
        return call_id in self.calls

    def caller_asks(self, call_id: str, digit: str) -> bool:
        """A DTMF digit from the caller; True when it asks for a human and one is configured."""
        call = self.calls.get(call_id)
        fallback = self.ai.config.fallback
        if call is None or digit != fallback.digit or not fallback.on("callerRequest"):
            return False
        call.wants_human.set()
        return True

    def take(self, duration: float) -> tuple[str, Admission]:
        call_id = f"http-{next(self._ids)}"
        return call_id, Admission() if self.open_dialog(call_id, duration) else Admission(
            refusal=(503, "full")
        )

    def pod_overhead(self) -> float:
        """The media pod's own share of a turn's latency: it grows as the pod fills up."""
        utilization = len(self.calls) / self.slots
        return 0.6 * utilization**4 + self.rng.uniform(-0.05, 0.05)

    def declare_series(self) -> None:
        """Every backend's and trigger's series at 0, so that a first call or hand-off is an
        increase Prometheus sees (a series that appears at 1 has grown by nothing it can tell)."""
        config = self.ai.config
        for backend, model in self.ai.backend_series():
            self.total.labels(backend, model)
            for reason in config.fallback.when if config.fallback.target else ():
                self.handoffs.labels(reason, backend, model)

    def _count_call(self) -> None:
        self.total.labels(*self.ai.backend_labels).inc()
        self.ai.count_call()

    def _hand_off_record(self, call_id: str, reason: str, latency: float | None, how: str) -> HandoffRecord:
        self.handoffs.labels(reason, *self.ai.backend_labels).inc()
        return self.ai.record(call_id, reason, latency, how)

    async def _converse(self, call_id: str, call: Call, duration: float | None) -> None:
        try:
            elapsed, over_budget = 0.0, 0
            while duration is None or elapsed < duration:
                turn = self.turn_seconds if duration is None else min(duration - elapsed, self.turn_seconds)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(call.wants_human.wait(), turn)
                elapsed += turn
                if call.wants_human.is_set():
                    call.wants_human.clear()
                    if await self._hand_off(call_id, call, "callerRequest", None):
                        return
                    continue
                ttfa = await self.ai.time_to_first_audio()
                self.latency.observe(max(0.05, (ttfa or SESSION_TIMEOUT_S) + self.pod_overhead()))
                over_budget = over_budget + 1 if ttfa is None or self.ai.over_budget(ttfa) else 0
                fallback = self.ai.config.fallback
                if over_budget >= fallback.over_budget_turns and fallback.on("latencyOverBudget"):
                    over_budget = 0
                    if await self._hand_off(call_id, call, "latencyOverBudget", ttfa):
                        return
        except asyncio.CancelledError:
            pass  # the caller hung up
        finally:
            self.calls.pop(call_id, None)
            self.active.set(len(self.calls))
            if not self.calls:
                self.idle.set()

    async def _hand_off(self, call_id: str, call: Call, reason: str, latency: float | None) -> bool:
        """Hand a call in progress to the human; True when it left this pod."""
        target = self.ai.config.fallback.target
        if target is None or call.handed_off:
            return False
        record = self._hand_off_record(call_id, reason, latency, "refer" if call.transfer else "http")
        transferred = True if call.transfer is None else await call.transfer(call_id, target)
        record.outcome = "transferred" if transferred else "failed"
        call.handed_off = transferred
        return transferred

    async def drain(self) -> None:
        self.stopping = True
        await self.idle.wait()

    def read_annotations(self, path: Path) -> None:
        """Follow the downward-API annotations file (missing: no annotations yet)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return
        self.out_of_service = DRAINING_SINCE in parse_downward_annotations(text)


def build_app(pod: MediaPod) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(pod.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(status=200 if pod.accepting else 503, text="ok" if pod.accepting else "draining")

    async def drain(request: web.Request) -> web.Response:
        await pod.drain()
        return web.Response(text="drained")

    async def calls(request: web.Request) -> web.Response:
        try:
            duration = float(request.query.get("duration", "60"))
        except ValueError:
            return web.Response(status=400, text="duration must be a number of seconds")
        call_id = f"http-{next(pod._ids)}"
        admission = await pod.admit(call_id)
        if admission.redirect is not None:  # handed to a human before the AI answered
            body = {"call": call_id, "handoff": admission.redirect, "reason": "backendUnavailable"}
            return web.Response(text=json.dumps(body), content_type="application/json")
        if admission.refusal is not None or not pod.open_dialog(call_id, duration):
            return web.Response(status=503, text=(admission.refusal or (503, "no free slot"))[1])
        return web.Response(
            text=json.dumps({"call": call_id, "active": len(pod.calls)}), content_type="application/json"
        )

    async def handoffs(request: web.Request) -> web.Response:
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return web.Response(status=400, text="since must be Unix seconds")
        return web.json_response(pod.ai.served(since))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/drain", drain)
    app.router.add_post("/calls", calls)
    app.router.add_get("/handoffs", handoffs)
    return app


def media_sim_command(
    host: str,
    port: int,
    slots: int,
    annotations: Path | None = None,
    sip_port: int | None = None,
    runtime_config: Path | None = None,
) -> list[str]:
    """The command line that starts a media-sim process (the sandbox's pods, tests).

    The pod's identity (VOICEOP_POD_NAME, VOICEOP_AGENT, VOICEOP_NAMESPACE, VOICEOP_REGION) comes
    from its environment, as in a real media pod.
    """
    command = [sys.executable, "-m", "voiceop", "media-sim", "--host", host, "--port", str(port)]
    command += ["--calls-per-pod", str(slots)]
    command += ["--sip-port", str(sip_port)] if sip_port else []
    command += ["--runtime-config", str(runtime_config)] if runtime_config else []
    return command + (["--pod-annotations", str(annotations)] if annotations else [])


def parse_downward_annotations(text: str) -> dict[str, str]:
    """The kubelet's downward-API format: one `key="value"` per line, the value Go-quoted."""
    annotations = {}
    for line in text.splitlines():
        key, sep, quoted = line.partition("=")
        if sep:
            try:
                annotations[key] = json.loads(quoted)
            except ValueError:
                annotations[key] = quoted.strip('"')
    return annotations


async def follow_files(pod: MediaPod, annotations: Path | None, every: float = 1.0) -> None:
    """Follow the downward-API annotations and the mounted runtime config, as a runtime would."""
    pod.declare_series()
    while True:
        if annotations is not None:
            pod.read_annotations(annotations)
        if pod.ai.reload():
            pod.declare_series()
        await asyncio.sleep(every)


def identity_from_environment() -> dict[str, str]:
    """Who this pod is, from the environment voiceop's Deployment gives every media container."""
    names = {"pod": "VOICEOP_POD_NAME", "agent": "VOICEOP_AGENT", "namespace": "VOICEOP_NAMESPACE"}
    identity = {key: os.environ.get(variable, "") for key, variable in names.items()}
    identity["region"] = os.environ.get("VOICEOP_REGION", "")
    return identity


async def serve(
    host: str,
    port: int,
    slots: int,
    annotations: Path | None = None,
    sip_port: int | None = None,
    runtime_config: Path | None = None,
) -> None:
    identity = identity_from_environment()
    pod = MediaPod(slots=slots, ai=AiLayer(runtime_config, identity["region"], identity))
    runner = web.AppRunner(build_app(pod), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    sip = None
    if sip_port:
        from voiceop.sandbox.mediasip import SipFrontend

        sip = SipFrontend(pod, host, sip_port)
        await sip.start()
    follower = asyncio.create_task(follow_files(pod, annotations))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sip_note = f", SIP on udp:{host}:{sip_port}" if sip_port else ""
    print(f"media-sim listening on {host}:{port}{sip_note} with {slots} call slots", flush=True)
    await stop.wait()
    follower.cancel()
    await pod.drain()  # SIGTERM: finish every call, then go
    if sip is not None:
        await sip.stop()
    await pod.ai.close()
    await runner.cleanup()


def main(
    host: str,
    port: int,
    slots: int,
    annotations: Path | None = None,
    sip_port: int | None = None,
    runtime_config: Path | None = None,
) -> int:
    asyncio.run(serve(host, port, slots, annotations, sip_port, runtime_config))
    return 0
