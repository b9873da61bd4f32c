"""Reconciliation: make the cluster match what the voiceop objects in the cache ask for.

Level-triggered and keyed: a change anywhere enqueues the keys it affects (an agent, a
namespace's routes, a region); each key's reconciler renders the whole desired state from the
cache, writes only what differs, deletes what is no longer wanted, and writes status only when
it changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from voiceop.api.wire import AGENT_LABEL, REGION_LABEL, ROUTES_CONFIGMAP
from voiceop.controller.agents import AgentReconciler, SignalTable
from voiceop.controller.cache import ClusterCache, Raw, Seen
from voiceop.controller.queue import WorkQueue
from voiceop.controller.regions import RegionReconciler
from voiceop.controller.routes import RoutesReconciler
from voiceop.controller.signals import ReplicaTable
from voiceop.controller.status_writer import StatusWriter
from voiceop.handoffs import DEFAULT_WINDOW_SECONDS
from voiceop.kube import KubeClient
from voiceop.render.options import DEFAULT_OPTIONS, RenderOptions
from voiceop.status import now_iso

# (what, namespace, name): ("agent", ns, name), ("routes", ns, ""), ("region", "", name)
Key = tuple[str, str, str]

# The key whose reconcile is running (in its task): the cache changes its own writes make do
# not enqueue it again, as its pass already works on them.
_working_on: ContextVar[Key | None] = ContextVar("working_on", default=None)


@dataclass
class Reconciler:
    client: KubeClient
    cache: ClusterCache
    clock: Callable[[], str] = now_iso
    workers: int = 4
    signals: SignalTable = field(default_factory=dict)
    replicas: ReplicaTable = field(default_factory=dict)
    options: RenderOptions = DEFAULT_OPTIONS
    handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS

    def __post_init__(self) -> None:
        self.status = StatusWriter(self.client, self.cache, self.clock)
        self.agents = AgentReconciler(
            self.client,
            self.cache,
            self.status,
            self.signals,
            self.options,
            self.handoff_window_seconds,
            self.replicas,
        )
        self.routes = RoutesReconciler(self.client, self.cache, self.status)
        self.regions = RegionReconciler(self.cache, self.status, self.signals)
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, label=lambda key: key[0], workers=self.workers)
        self.cache.on_change = self._changed

    def enqueue(self, *keys: Key) -> None:
        self.queue.enqueue(*keys)

    @property
    def idle(self) -> bool:
        return self.queue.idle

    async def run(self) -> None:
        await self.queue.run()

    async def reconcile(self, key: Key) -> None:
        what, namespace, name = key
        token = _working_on.set(key)
        try:
            if what == "agent":
                await self.agents.reconcile(namespace, name)
            elif what == "routes":
                await self.routes.reconcile(namespace)
            elif what == "region":
                await self.regions.reconcile(name)
        finally:
            _working_on.reset(token)

    async def write_status_if_changed(self, seen: Seen, status: dict[str, object]) -> bool:
        return await self.status.write_if_changed(seen, status)

    # --- what a change affects ------------------------------------------------------------

    def observe(self, raw: Raw, deleted: bool) -> None:
        """Record a watch event; what it changes is enqueued (see `_changed`)."""
        if deleted:
            self.cache.remove(raw)
        else:
            self.cache.upsert(raw)

    def _changed(self, before: Raw | None, after: Raw | None) -> None:
        """The cache changed (a watch event, or a write's answer): enqueue what it affects."""
        raw = after if after is not None else before
        assert raw is not None
        working_on = _working_on.get()
        self.enqueue(*(key for key in self.affected(raw, _spec_changed(before, after)) if key != working_on))

    def affected(self, raw: Raw, spec_changed: bool = True) -> Iterable[Key]:
        """The keys a change to `raw` affects. A Region or VoiceAgent whose status alone changed
        (voiceop's own status writes) affects only itself: agents and routes read their spec."""
        kind = raw["kind"]
        meta = raw["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        if kind == "Region":
            yield ("region", "", name)
            if not spec_changed:
                return
            for (ns, agent_name), agent in self.cache.agents().items():
                if any(r.name == name for r in agent.spec.regions):
                    yield ("agent", ns, agent_name)
                    yield ("routes", ns, "")
            # Agents refused for a missing Region are not parsed-and-valid: look at raw specs.
            for ns, agent_name in self._agents_naming("regions", name):
                yield ("agent", ns, agent_name)
        elif kind == "AIBackend":
            for (ns, agent_name), agent in self.cache.agents(namespace).items():
                if any(b.name == name for b in agent.spec.backends):
                    yield ("agent", ns, agent_name)
        elif kind == "VoiceAgent":
            yield ("agent", namespace, name)
            if spec_changed:  # the routes read an agent's spec (and its Deployments), not its status
                yield ("routes", namespace, "")
        elif kind == "VoiceEndpoint":
            yield ("routes", namespace, "")
        elif kind == "Pod":
            return  # pods are the scaler's, read from the cache on its own clock
        else:  # a child
            labels = meta.get("labels") or {}
            if labels.get(AGENT_LABEL):
                yield ("agent", namespace, labels[AGENT_LABEL])
            if kind == "Deployment":
                yield ("routes", namespace, "")
                if labels.get(REGION_LABEL):
                    yield ("region", "", labels[REGION_LABEL])
            if kind == "ConfigMap" and name == ROUTES_CONFIGMAP:
                yield ("routes", namespace, "")

    def _agents_naming(self, field_name: str, name: str) -> Iterable[tuple[str, str]]:
        for (ns, agent_name), seen in self.cache.objects["VoiceAgent"].items():
            entries = (seen.raw.get("spec") or {}).get(field_name) or []
            if any(isinstance(e, dict) and e.get("name") == name for e in entries):
                yield ns, agent_name

    def every_key(self) -> list[Key]:
        """Everything there is to reconcile: a full resync."""
        keys: list[Key] = [("region", "", name) for (_, name) in self.cache.objects["Region"]]
        keys += [("agent", ns, name) for (ns, name) in self.cache.objects["VoiceAgent"]]
        keys += [("routes", ns, "") for ns in {ns for (ns, _) in self.cache.objects["VoiceEndpoint"]}]
        return keys


def _spec_changed(before: Raw | None, after: Raw | None) -> bool:
    """Whether a change is more than status: created, deleted (or being), recreated, relabelled,
    or a new generation (the API server bumps it for every change outside metadata and status)."""
    if before is None or after is None:
        return True
    old, new = before["metadata"], after["metadata"]
    return bool(
        old.get("uid") != new.get("uid")
        or old.get("generation") != new.get("generation")
        or old.get("generation") is None
        or old.get("labels") != new.get("labels")
        or old.get("deletionTimestamp") != new.get("deletionTimestamp")
    )
