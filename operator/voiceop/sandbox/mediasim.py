"""`voiceop media-sim`: a simulated media pod that keeps the media pod contract (DESIGN.md).

On its metrics port (9090) it serves
- `GET /metrics`: voice_active_calls, voice_calls_total, voice_response_latency_seconds,
  voice_handoffs_total{reason}, in the Prometheus text format;
- `GET /healthz`: 200 while the process works (liveness: a draining pod is alive);
- `GET /readyz`: 200 while it takes calls, 503 while it drains (readiness);
- `GET /drain`: stop taking calls and answer when the last call has ended (the preStop hook);
and `POST /calls?duration=S`: take a call for S seconds (200), or refuse it when every slot
is taken or it drains (503), for load that does not speak SIP. With `--sip-port` it answers
SIP on the same address (mediasip.py): each dialog holds a slot until its BYE. SIGTERM
drains (no new call, the calls in progress end as their callers hang up), then exits.

It drains when the operator takes it out of the serving set: the operator flips the readiness
gate and sets the annotation `voiceop.dev/draining-since`, which the kubelet writes into the
downward-API file `$VOICEOP_POD_ANNOTATIONS`; it takes calls again when the annotation goes.
Each call reports voice latency from a model that grows as the pod fills up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from voiceop.api.wire import DRAINING_SINCE

LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0)


@dataclass
class MediaPod:
    slots: int
    base_latency_s: float = 0.45
    out_of_service: bool = False  # the operator drains it (annotation): reversible
    stopping: bool = False  # preStop or SIGTERM: for good
    calls: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    rng: random.Random = field(default_factory=lambda: random.Random(os.getpid()))

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.active = Gauge("voice_active_calls", "Calls in progress.", registry=self.registry)
        self.total = Counter("voice_calls", "Calls taken.", registry=self.registry)
        self.latency = Histogram(
            "voice_response_latency_seconds",
            "Caller stops speaking -> agent audio starts.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.handoffs = Counter(
            "voice_handoffs", "Calls handed to a human.", ["reason"], registry=self.registry
        )
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def accepting(self) -> bool:
        return not (self.out_of_service or self.stopping)

    def refusal(self) -> tuple[int, str] | None:
        """The SIP answer to a new call when it cannot be taken: draining 503, full 486."""
        if not self.accepting:
            return (503, "Service Unavailable")
        if len(self.calls) >= self.slots:
            return (486, "Busy Here")
        return None

    def open_dialog(self, call_id: str, duration: float | None = None, caller: str = "") -> bool:
        """Take a slot for `call_id` until hang_up (or for `duration` seconds); False if none."""
        if self.refusal() is not None or call_id in self.calls:
            return False
        self.calls[call_id] = asyncio.get_running_loop().create_task(self._converse(call_id, duration))
        self.total.inc()
        self.active.set(len(self.calls))
        self.idle.clear()
        return True

    def hang_up(self, call_id: str) -> None:
        task = self.calls.get(call_id)
        if task is not None:
            task.cancel()

    def is_open(self, call_id: str) -> bool:
        return call_id in self.calls

    def take(self, duration: float) -> str | None:
        call_id = f"http-{next(self._ids)}"
        return call_id if self.open_dialog(call_id, duration) else None

    def turn_latency(self) -> float:
        utilization = len(self.calls) / self.slots
        return self.base_latency_s + 0.6 * utilization**4 + self.rng.uniform(-0.05, 0.05)

    async def _converse(self, call_id: str, duration: float | None) -> None:
        try:
            elapsed = 0.0
            while duration is None or elapsed < duration:
                turn = 2.0 if duration is None else min(duration - elapsed, 2.0)
                await asyncio.sleep(turn)
                elapsed += turn
                self.latency.observe(max(0.05, self.turn_latency()))
        except asyncio.CancelledError:
            pass  # the caller hung up
        finally:
            self.calls.pop(call_id, None)
            self.active.set(len(self.calls))
            if not self.calls:
                self.idle.set()

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
        call_id = pod.take(duration)
        if call_id is None:
            return web.Response(status=503, text="no free slot")
        return web.Response(
            text=json.dumps({"call": call_id, "active": len(pod.calls)}), content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/drain", drain)
    app.router.add_post("/calls", calls)
    return app


def media_sim_command(
    host: str, port: int, slots: int, annotations: Path | None = None, sip_port: int | None = None
) -> list[str]:
    """The command line that starts a media-sim process (the sandbox's pods, tests)."""
    command = [sys.executable, "-m", "voiceop", "media-sim", "--host", host, "--port", str(port)]
    command += ["--calls-per-pod", str(slots)]
    command += ["--sip-port", str(sip_port)] if sip_port else []
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


async def follow_annotations(pod: MediaPod, path: Path, every: float = 1.0) -> None:
    while True:
        pod.read_annotations(path)
        await asyncio.sleep(every)


async def serve(
    host: str, port: int, slots: int, annotations: Path | None = None, sip_port: int | None = None
) -> None:
    pod = MediaPod(slots=slots)
    runner = web.AppRunner(build_app(pod), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    sip = None
    if sip_port:
        from voiceop.sandbox.mediasip import SipFrontend

        sip = SipFrontend(pod, host, sip_port)
        await sip.start()
    follower = asyncio.create_task(follow_annotations(pod, annotations)) if annotations else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sip_note = f", SIP on udp:{host}:{sip_port}" if sip_port else ""
    print(f"media-sim listening on {host}:{port}{sip_note} with {slots} call slots", flush=True)
    await stop.wait()
    if follower is not None:
        follower.cancel()
    await pod.drain()  # SIGTERM: finish every call, then go
    if sip is not None:
        await sip.stop()
    await runner.cleanup()


def main(
    host: str, port: int, slots: int, annotations: Path | None = None, sip_port: int | None = None
) -> int:
    asyncio.run(serve(host, port, slots, annotations, sip_port))
    return 0
