"""The pieces of a running operator, wired together: client, cache, reconciler, prober, scaler.

Independent of the event source: kopf (in `voiceop.handlers`) feeds it watch events and the
credentials it logged in with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from voiceop.api.kinds import KINDS, VOICEOP_KINDS, WATCHED_CHILD_KINDS
from voiceop.api.wire import CHILD_SELECTOR
from voiceop.controller.cache import ClusterCache
from voiceop.controller.prober import BackendProber
from voiceop.controller.reconciler import Reconciler
from voiceop.controller.scaler import Scaler
from voiceop.kube import ApiError, Connection, KubeClient
from voiceop.status import now_iso

logger = logging.getLogger("voiceop")


class OperatorRuntime:
    def __init__(self, connection: Connection | None = None, namespaces: Sequence[str] = ()) -> None:
        self.namespaces = tuple(namespaces)  # empty: all
        # Given (tests, demo): used as it is. Otherwise found at login.
        self.connection = connection
        self.connection_given = connection is not None
        self.cache = ClusterCache()
        self.client: KubeClient | None = None
        self.reconciler: Reconciler | None = None
        self.prober: BackendProber | None = None
        self.scaler: Scaler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._backlog: list[tuple[dict[str, Any], bool]] = []

    def logged_in(self, connection: Connection) -> None:
        """Credentials found by the event source (kopf's login), used for voiceop's own client."""
        if not self.connection_given:
            self.connection = connection

    async def start(self) -> None:
        """Start working once logged in (kopf runs start-up handlers before logging in)."""
        self._tasks = [asyncio.create_task(self._run(), name="voiceop-runtime")]

    async def _run(self) -> None:
        while self.connection is None:
            await asyncio.sleep(0.05)
        self.client = KubeClient.connect(self.connection)
        await self._initial_sync(self.client)
        self.reconciler = Reconciler(self.client, self.cache)
        self.prober = BackendProber(self.cache, self._write_backend_status, now_iso)
        self.scaler = Scaler(self.client, self.cache, self.reconciler)
        for raw, deleted in self._backlog:
            self.reconciler.observe(raw, deleted)
        self._backlog.clear()
        self.reconciler.enqueue(*self.reconciler.every_key())
        await asyncio.gather(self.reconciler.run(), self.prober.run(), self.scaler.run())

    async def _initial_sync(self, client: KubeClient) -> None:
        """List everything once before reconciling anything, as informers sync their caches.

        kopf delivers its initial listings kind by kind; reconciling an agent before its
        Deployments are known would re-apply them all on every restart.
        """
        scopes: Sequence[str | None] = self.namespaces or (None,)
        for kind_name in (*VOICEOP_KINDS, *WATCHED_CHILD_KINDS):
            kind = KINDS[kind_name]
            selector = None if kind_name in VOICEOP_KINDS else CHILD_SELECTOR
            for namespace in scopes if kind.namespaced else (None,):
                try:
                    items = await client.list(kind, namespace, selector)
                except ApiError as error:
                    if error.code == 404 and kind.optional:  # KEDA not installed: no ScaledObjects
                        continue
                    raise
                for item in items:
                    item.setdefault("kind", kind_name)
                    self.cache.upsert_if_absent(item)

    async def _write_backend_status(self, seen: Any, status: dict[str, Any]) -> bool:
        assert self.reconciler is not None
        return await self.reconciler.write_status_if_changed(seen, status)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.client is not None:
            await self.client.close()

    def observe(self, event: dict[str, Any]) -> None:
        raw = event.get("object") or {}
        if not raw.get("metadata"):
            return
        deleted = event.get("type") == "DELETED"
        if self.reconciler is None:  # events can arrive before start-up has finished
            self._backlog.append((raw, deleted))
            return
        self.reconciler.observe(raw, deleted)
        if raw.get("kind") in VOICEOP_KINDS:
            from voiceop import metrics

            metrics.WATCHED_OBJECTS.labels(kind=raw["kind"]).set(len(self.cache.objects[raw["kind"]]))

    def queue_depth(self) -> int:
        return 0 if self.reconciler is None else self.reconciler.queue.depth
