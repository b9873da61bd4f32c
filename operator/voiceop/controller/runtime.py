"""The pieces of a running operator, wired together: client, cache, reconciler, prober."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import kopf

from voiceop.controller.cache import CHILD_KINDS, VOICEOP_KINDS, ClusterCache
from voiceop.controller.prober import BackendProber
from voiceop.controller.reconciler import Reconciler
from voiceop.controller.scaler import Scaler
from voiceop.kube import KINDS, ApiError, KubeClient
from voiceop.render.metadata import MANAGED_BY
from voiceop.status import now_iso

logger = logging.getLogger("voiceop")

VOICEOP_RESOURCES: tuple[tuple[str, ...], ...] = tuple(
    ("voiceop.dev", "v1alpha1", plural)
    for plural in ("regions", "aibackends", "voiceagents", "voiceendpoints")
)
# Children are watched through a server-side label selector: never every ConfigMap of a cluster.
CHILD_RESOURCES: tuple[tuple[str, ...], ...] = (
    ("apps", "v1", "deployments"),
    ("v1", "services"),
    ("v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("v1", "pods"),
)


class OperatorRuntime:
    def __init__(self, connection: kopf.ConnectionInfo | None = None, namespaces: Sequence[str] = ()) -> None:
        self.namespaces = tuple(namespaces)  # empty: all
        # Given (tests, demo): used as it is. Otherwise found at login.
        self.connection = connection
        self._fixed_connection = connection is not None
        self.cache = ClusterCache()
        self.client: KubeClient | None = None
        self.reconciler: Reconciler | None = None
        self.prober: BackendProber | None = None
        self.scaler: Scaler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._backlog: list[tuple[dict[str, Any], bool]] = []

    def login(self, **kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster credentials first, then kubeconfig; remembered for voiceop's own client."""
        if self._fixed_connection:
            return self.connection
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            self.connection = info
        return info

    @staticmethod
    def configure(settings: kopf.OperatorSettings) -> None:
        for resource in CHILD_RESOURCES:
            settings.watching.label_selectors[resource] = f"{MANAGED_BY}=voiceop"  # type: ignore[index]
        # kopf keeps nothing in our objects' status; anything it stores goes under voiceop.dev.
        settings.persistence.finalizer = "voiceop.dev/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="voiceop.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="voiceop.dev", key="last-handled-configuration"
        )
        # voiceop posts its own Events for decisions; kopf's per-handler log events would be noise.
        settings.posting.enabled = False
        # Reconnect watches well before load balancers cut idle streams (often at 5-10 minutes).
        settings.watching.server_timeout = 240
        settings.watching.client_timeout = 270
        settings.watching.reconnect_backoff = 0.5
        settings.networking.request_timeout = 30

    async def start(self) -> None:
        """Start working once logged in (kopf runs start-up handlers before logging in)."""
        self._tasks = [asyncio.create_task(self._run(), name="voiceop-runtime")]

    async def _run(self) -> None:
        while self.connection is None:
            await asyncio.sleep(0.05)
        self.client = KubeClient.from_connection_info(self.connection)
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
        for kind_name in ("Region", "AIBackend", "VoiceAgent", "VoiceEndpoint", *CHILD_KINDS):
            kind = KINDS[kind_name]
            selector = None if kind_name in VOICEOP_KINDS else f"{MANAGED_BY}=voiceop"
            for namespace in scopes if kind.namespaced else (None,):
                try:
                    items = await client.list(kind, namespace, selector)
                except ApiError as error:
                    if error.code == 404:  # e.g. KEDA not installed: no ScaledObjects to know
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
        return 0 if self.reconciler is None else len(self.reconciler._pending)
