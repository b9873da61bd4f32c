"""Loops that run a pass on a clock for the life of the operator: scaling, probing, relisting.

A pass that fails is logged and counted, and the next one runs on time. These loops run side
by side and nothing else watches them: a failure that ended one (a status write refused while
kube-apiserver restarts, a relist that met an empty kind) had silently stopped scaling, probing
or relisting until the process restarted, while the rest of the operator looked healthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from voiceop import metrics
from voiceop.kube import ApiError

logger = logging.getLogger("voiceop")


async def every(seconds: float, run_pass: Callable[[], Awaitable[None]], name: str) -> None:
    """`run_pass` every `seconds` (start to start; at once again when a pass overruns) for ever."""
    while True:
        started = time.monotonic()
        try:
            await run_pass()
        except ApiError as error:  # the API server's answer: expected now and then
            metrics.LOOP_FAILURES.labels(loop=name).inc()
            logger.warning("%s pass failed: %s; next in %.2f s", name, error, seconds)
        except Exception:  # a bug, perhaps tripped by one object: keep the other objects served
            metrics.LOOP_FAILURES.labels(loop=name).inc()
            logger.exception("%s pass failed; next in %.2f s", name, seconds)
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
