"""A keyed work queue, as client-go's: a key waiting is not queued twice, a key being worked
on is never worked on by two workers at once, and a key that changes meanwhile runs once more."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from voiceop import metrics
from voiceop.kube import ApiError

logger = logging.getLogger("voiceop.reconciler")

K = TypeVar("K", bound=Hashable)

# Retry after an API error (the API is likely back soon) and after a bug (do not spin).
API_ERROR_RETRY_SECONDS = 1.0
FAILURE_RETRY_SECONDS = 5.0


@dataclass
class WorkQueue(Generic[K]):
    work: Callable[[K], Awaitable[None]]
    label: Callable[[K], str]  # the metrics' `target` label of a key
    workers: int = 4
    _queue: asyncio.Queue[K] = field(default_factory=asyncio.Queue)
    _pending: set[K] = field(default_factory=set)
    _busy: set[K] = field(default_factory=set)
    _again: set[K] = field(default_factory=set)

    def enqueue(self, *keys: K) -> None:
        for key in keys:
            if key in self._busy:
                self._again.add(key)  # changed while being worked on: once more after
            elif key not in self._pending:
                self._pending.add(key)
                self._queue.put_nowait(key)

    @property
    def idle(self) -> bool:
        return not self._pending and not self._busy

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            if key in self._busy:  # another worker has it: keep the order of changes
                self._again.add(key)
                continue
            self._busy.add(key)
            started = time.perf_counter()
            result = "ok"
            try:
                await self.work(key)
            except ApiError as error:
                result = "error"
                logger.warning("reconciling %s failed: %s; retrying", key, error)
                asyncio.get_running_loop().call_later(API_ERROR_RETRY_SECONDS, self.enqueue, key)
            except Exception:
                result = "error"
                logger.exception("reconciling %s failed; retrying", key)
                asyncio.get_running_loop().call_later(FAILURE_RETRY_SECONDS, self.enqueue, key)
            finally:
                self._busy.discard(key)
                metrics.RECONCILES.labels(target=self.label(key), result=result).inc()
                metrics.RECONCILE_SECONDS.labels(target=self.label(key)).observe(
                    time.perf_counter() - started
                )
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)
