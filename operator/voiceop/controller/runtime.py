"""The pieces of a running operator, wired together: client, cache, reconciler, prober, scaler.

Independent of the event source: kopf (in `voiceop.handlers`) feeds it watch events and the
credentials it logged in with.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from voiceop.api.kinds import KINDS, VOICEOP_KINDS, WATCHED_CHILD_KINDS
from voiceop.api.wire import CHILD_SELECTOR
from voiceop.controller.cache import ClusterCache, object_key
from voiceop.controller.loops import every
from voiceop.controller.prober import BackendProber
from voiceop.controller.reconciler import Reconciler
from voiceop.controller.scaler import Scaler
from voiceop.controller.standby import PeeringRef, is_active
from voiceop.handoffs import DEFAULT_WINDOW_SECONDS
from voiceop.kube import ApiError, Connection, KubeClient
from voiceop.render.options import DEFAULT_OPTIONS, RenderOptions
from voiceop.status import now_iso

logger = logging.getLogger("voiceop")

STANDBY_POLL_SECONDS = 1.0  # how often a replica reads the peering object


class OperatorRuntime:
    def __init__(
        self,
        connection: Connection | None = None,
        namespaces: Sequence[str] = (),
        relist_seconds: float = 300.0,
        peering: PeeringRef | None = None,
        render_options: RenderOptions = DEFAULT_OPTIONS,
        handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS,
        peering_lifetime: float | None = None,
    ) -> None:
        self.peering_lifetime = peering_lifetime  # None: kopf's (60 s)
        self.relist_seconds = relist_seconds
        self.render_options = render_options
        self.handoff_window_seconds = handoff_window_seconds
        # With peering, only the replica the peering rule makes active works (see standby.py).
        self.peering = peering
        self.active = False
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
        self.failure: BaseException | None = None
        self.on_failure: Callable[[], None] | None = None  # set by the process: stop it
        self._backlog: list[tuple[dict[str, Any], bool]] = []

    def logged_in(self, connection: Connection) -> None:
        """Credentials found by the event source (kopf's login), used for voiceop's own client."""
        if not self.connection_given:
            self.connection = connection

    async def start(self) -> None:
        """Start working once logged in (kopf runs start-up handlers before logging in)."""
        task = asyncio.create_task(self._run(), name="voiceop-runtime")
        task.add_done_callback(self._ended)
        self._tasks = [task]

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The work ended by itself, which only a failure does: say so and stop the process
        (`on_failure`), so that its Deployment starts a fresh one, as controller-runtime's
        manager exits when a runnable fails. Every loop already survives a failed pass."""
        if task.cancelled() or task.exception() is None:
            return
        self.failure = task.exception()
        logger.critical("the operator's work failed; stopping", exc_info=self.failure)
        if self.on_failure is not None:
            self.on_failure()

    async def _run(self) -> None:
        while self.connection is None:
            await asyncio.sleep(0.05)
        self.client = KubeClient.connect(self.connection)
        if self.peering is None:
            self.active = True
            await self._work(self.client)
        else:
            await self._work_while_active(self.client, self.peering)

    async def _work(self, client: KubeClient) -> None:
        await self._initial_sync(client)
        self.reconciler = Reconciler(
            client,
            self.cache,
            options=self.render_options,
            handoff_window_seconds=self.handoff_window_seconds,
        )
        self.prober = BackendProber(self.cache, self._write_backend_status, now_iso)
        self.scaler = Scaler(
            client, self.cache, self.reconciler, handoff_window_seconds=self.handoff_window_seconds
        )
        self.reconciler.agents.initial_replicas = self.scaler.initial_replicas
        for raw, deleted in self._backlog:
            self.reconciler.observe(raw, deleted)
        self._backlog.clear()
        self.reconciler.enqueue(*self.reconciler.every_key())
        # A task group, not gather: should a loop end with an error after all, the others stop
        # with it and the failure reaches `_ended` instead of leaving half an operator running.
        async with asyncio.TaskGroup() as loops:
            for loop in (
                self.reconciler.run(),
                self.prober.run(),
                self.scaler.run(),
                self._relist_periodically(),
            ):
                loops.create_task(loop)

    async def _work_while_active(self, client: KubeClient, peering: PeeringRef) -> None:
        """Stand by (no list, no write, no probe, no scaling, no cache) until peering says work.

        Becoming active starts from a fresh list; standing by again drops everything learnt,
        so that a replica never acts on a snapshot that went stale while another one worked.
        """
        work: asyncio.Task[None] | None = None
        try:
            while True:
                active = await self._peering_says_active(client, peering)
                if active and work is None:
                    logger.info("peering: %s is the active replica; listing everything", peering.identity)
                    self.active = True
                    work = asyncio.create_task(self._work(client), name="voiceop-work")
                elif active is False and work is not None:
                    logger.info("peering: another replica is active; %s stands by", peering.identity)
                    await self._stop_work(work)
                    work = None
                if work is not None and work.done():
                    work.result()  # a failure of the work surfaces here, as it would standalone
                await asyncio.sleep(STANDBY_POLL_SECONDS)
        finally:
            if work is not None:
                await self._stop_work(work)

    async def _peering_says_active(self, client: KubeClient, peering: PeeringRef) -> bool | None:
        """The rule on the peering object(s) now; None when they cannot be read (no change)."""
        scopes: Sequence[str | None] = (
            (peering.namespace,) if peering.namespace else (self.namespaces or (None,))
        )
        now = datetime.datetime.now(datetime.UTC)
        try:
            for namespace in scopes:
                path = (
                    f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{peering.name}"
                    if namespace
                    else f"/apis/kopf.dev/v1/clusterkopfpeerings/{peering.name}"
                )
                body = await client.request("GET", path, verb="get_peering", retry=False)
                if not is_active((body or {}).get("status"), peering, now):
                    return False
        except ApiError as error:
            logger.warning("peering: cannot read %s: %s", peering.name, error)
            return None
        return True

    async def _stop_work(self, work: asyncio.Task[None]) -> None:
        self.active = False
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        self.reconciler = self.prober = self.scaler = None
        self.cache = ClusterCache()
        self._backlog.clear()

    async def _relist_periodically(self) -> None:
        """List everything again on a clock, as informers relist, and drop what is gone.

        kopf's watches resume from a resourceVersion; after a 410 Gone (etcd compacted, an API
        server restarted) kopf lists again but reports nothing for objects deleted meanwhile,
        which would stay in the cache as ghosts (pods the scaler counts, endpoints still routed).
        """
        await asyncio.sleep(self.relist_seconds)  # the initial sync has just listed
        await every(self.relist_seconds, self._relist, "relist")

    async def _relist(self) -> None:
        """One relist, a kind and a chunk at a time, of metadata only, keeping only the listed
        keys: a listing of every kind at once, held until the next relist, had doubled the
        operator's memory (1,000 agents on kube-apiserver: 264 -> 573 MiB RSS, 625,000 dicts of
        list items kept for 300 s), and full chunks still added ~35 MiB a relist."""
        assert self.client is not None and self.reconciler is not None
        for kind_name in (*VOICEOP_KINDS, *WATCHED_CHILD_KINDS):
            # What the cache held before listing: only those can be ghosts (an object created
            # while the list ran is in the cache from its watch event, not in the list).
            before = {key: _version(self.cache.raw(kind_name, key)) for key in self.cache.keys_of(kind_name)}
            present: set[tuple[str, str]] = set()
            served = False
            async for chunk in self._list_kind(self.client, kind_name, metadata_only=True):
                served = True
                present.update(object_key(item) for item in chunk)
            if not served:
                continue  # not served (KEDA not installed)
            for key in self.cache.keys_of(kind_name) - present:
                ghost = self.cache.raw(kind_name, key)
                if ghost is not None and before.get(key) == _version(ghost):
                    logger.info("relist: %s %s/%s is gone", kind_name, *key)
                    self.reconciler.observe(ghost, deleted=True)

    async def _list_kind(
        self, client: KubeClient, kind_name: str, metadata_only: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every object of a kind voiceop watches (children by its label), in chunks; nothing
        at all for an optional kind the cluster does not serve (no ScaledObjects without KEDA).
        `metadata_only`: items with their metadata alone (enough to know what is gone)."""
        kind = KINDS[kind_name]
        selector = None if kind_name in VOICEOP_KINDS else CHILD_SELECTOR
        scopes: Sequence[str | None] = (self.namespaces or (None,)) if kind.namespaced else (None,)
        for namespace in scopes:
            try:
                async for items in client.list_chunks(kind, namespace, selector, metadata_only=metadata_only):
                    for item in () if metadata_only else items:
                        # kube-apiserver leaves both out of a built-in kind's list items; without
                        # them a listed child never equals what voiceop applies, and a restart
                        # re-applied it.
                        item.setdefault("kind", kind_name)
                        item.setdefault("apiVersion", kind.api_version)
                    yield items
            except ApiError as error:
                if error.code == 404 and kind.optional:
                    return
                raise

    async def _initial_sync(self, client: KubeClient) -> None:
        """List everything once before reconciling anything, as informers sync their caches.

        kopf delivers its initial listings kind by kind; reconciling an agent before its
        Deployments are known would re-apply them all on every restart.
        """
        for kind_name in (*VOICEOP_KINDS, *WATCHED_CHILD_KINDS):
            async for items in self._list_kind(client, kind_name):
                for item in items:
                    self.cache.upsert_if_absent(item)

    async def _write_backend_status(self, seen: Any, status: dict[str, Any]) -> bool:
        assert self.reconciler is not None
        return await self.reconciler.write_status_if_changed(seen, status)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure: see _ended
                await task
        if self.client is not None:
            await self.client.close()

    def observe(self, event: dict[str, Any]) -> None:
        raw = event.get("object") or {}
        if not raw.get("metadata"):
            return
        deleted = event.get("type") == "DELETED"
        if self.peering is not None and not self.active:
            return  # standing by: becoming active lists everything afresh
        if self.reconciler is None:  # events can arrive before start-up has finished
            self._backlog.append((raw, deleted))
            return
        self.reconciler.observe(raw, deleted)
        if raw.get("kind") in VOICEOP_KINDS:
            from voiceop import metrics

            metrics.WATCHED_OBJECTS.labels(kind=raw["kind"]).set(len(self.cache.objects[raw["kind"]]))

    def queue_depth(self) -> int:
        return 0 if self.reconciler is None else self.reconciler.queue.depth


def _version(raw: dict[str, Any] | None) -> str | None:
    return None if raw is None else (raw.get("metadata") or {}).get("resourceVersion")
