"""`voiceop run`: the operator process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence

import kopf
from kopf._core.engines.peering import Identity  # kopf.operator takes one; not re-exported
from prometheus_client import start_http_server

from voiceop.controller.runtime import OperatorRuntime
from voiceop.controller.standby import PeeringRef
from voiceop.handlers.registry import build_registry
from voiceop.handoffs import DEFAULT_WINDOW_SECONDS
from voiceop.render.options import DEFAULT_OPTIONS, RenderOptions


def run_operator(
    *,
    namespaces: Sequence[str] = (),
    standalone: bool = False,
    priority: int = 0,
    peering: str = "voiceop",
    liveness_endpoint: str | None = None,
    runtime: OperatorRuntime | None = None,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    relist_seconds: float = 300.0,
    render_options: RenderOptions = DEFAULT_OPTIONS,
    handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS,
    peering_lifetime: float | None = None,
) -> int:
    """Run until stopped: all namespaces, or only `namespaces`; with peering unless standalone.
    The exit status: 1 when the runtime's work failed (see OperatorRuntime._ended), else 0."""
    runtime = runtime or OperatorRuntime(
        namespaces=namespaces,
        relist_seconds=relist_seconds,
        render_options=render_options,
        handoff_window_seconds=handoff_window_seconds,
        peering_lifetime=peering_lifetime,
    )
    # One identity for kopf's peering and voiceop's runtime, so both apply the rule to the same peer.
    identity = os.environ.get("POD_ID") or f"voiceop-{uuid.uuid4().hex[:12]}@{socket.gethostname()}"
    if not standalone:
        runtime.peering = PeeringRef(peering, identity, priority)
    registry = build_registry(runtime)
    # A failed runtime stops the process (see OperatorRuntime._ended): through the caller's
    # flag when there is one, else one of our own.
    stop = stop_flag if stop_flag is not None else asyncio.Event()
    runtime.on_failure = stop.set
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=standalone,
            priority=priority,
            identity=Identity(identity),
            peering_name=None if standalone else peering,  # a name makes peering mandatory
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            liveness_endpoint=liveness_endpoint,
            stop_flag=stop,
            ready_flag=ready_flag,
        )
    )
    return 1 if runtime.failure is not None else 0


def configure_logging(verbose: bool) -> None:
    """kopf's log format; at INFO unless verbose (DEBUG).

    kopf logs "Handler 'observe-deployments' succeeded." at INFO for every watch event, one
    line per event of every child (thousands while a fleet converges, and each pod's churn
    after): its object log is kept to warnings unless verbose, as kopf does itself for its
    frequent indexing handlers. voiceop's own decisions log under `voiceop` and post Events.
    """
    kopf.configure(verbose=verbose)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if verbose else logging.WARNING)


def main(
    namespaces: Sequence[str],
    standalone: bool,
    priority: int,
    peering: str,
    metrics_port: int,
    health_port: int,
    verbose: bool,
    relist_seconds: float = 300.0,
    render_options: RenderOptions = DEFAULT_OPTIONS,
    handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS,
    peering_lifetime: float | None = None,
) -> int:
    configure_logging(verbose)
    if metrics_port:
        start_http_server(metrics_port)
    liveness = f"http://0.0.0.0:{health_port}/healthz" if health_port else None
    return run_operator(
        namespaces=namespaces,
        standalone=standalone,
        priority=priority,
        peering=peering,
        liveness_endpoint=liveness,
        relist_seconds=relist_seconds,
        render_options=render_options,
        handoff_window_seconds=handoff_window_seconds,
        peering_lifetime=peering_lifetime,
    )
