"""Reconciliation: make the cluster match what the voiceop objects in the cache ask for.

Level-triggered and keyed: a change anywhere enqueues the keys it affects (an agent, a
namespace's routes, a region), a key waiting in the queue is not queued twice, and each
reconcile renders the whole desired state of its key from the cache, writes only what differs,
deletes what is no longer wanted, and writes status only when it changed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from voiceop import metrics
from voiceop.api import FieldError
from voiceop.api.v1alpha1 import AIBackend, VoiceAgent, VoiceEndpoint
from voiceop.controller.cache import ClusterCache, Raw, Seen
from voiceop.controller.diff import stamped, up_to_date
from voiceop.kube import KINDS, ApiError, KubeClient
from voiceop.references import agent_reference_errors, endpoint_reference_errors
from voiceop.render import render_agent
from voiceop.render.metadata import AGENT_LABEL, MANAGED_BY, REGION_LABEL
from voiceop.render.names import ROUTES_CONFIGMAP, media_name
from voiceop.render.routes import routes_configmap, routes_for
from voiceop.status import (
    Cond,
    RegionObservation,
    agent_conditions,
    agent_region_status,
    describe,
    now_iso,
    set_conditions,
    status_differs,
    without_nones,
)

logger = logging.getLogger("voiceop.reconciler")

Key = tuple[
    str, str, str
]  # (what, namespace, name): ("agent", ns, name), ("routes", ns, ""), ("region", "", name)


def backend_available(backend: AIBackend) -> bool:
    """Unprobed or unknown counts as available: a backend is given up only on evidence."""
    for condition in backend.status.conditions if backend.status else []:
        if condition.type == "Available":
            return condition.status != "False"
    return True


def active_backend(agent: VoiceAgent, backends: dict[str, AIBackend]) -> str | None:
    """The first available backend in the agent's failover order."""
    for ref in agent.spec.backends:
        backend = backends.get(ref.name)
        if backend is not None and backend_available(backend):
            return ref.name
    return None


@dataclass
class RegionSignals:
    """Live signals of one agent in one region, from the autoscaler when it runs."""

    active_calls: int = 0
    p95_latency_ms: int | None = None
    desired: int | None = None
    limited_by: str | None = None


@dataclass
class Reconciler:
    client: KubeClient
    cache: ClusterCache
    clock: Callable[[], str] = now_iso
    workers: int = 4
    signals: dict[tuple[str, str, str], RegionSignals] = field(default_factory=dict)
    _queue: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    _pending: set[Key] = field(default_factory=set)
    _busy: set[Key] = field(default_factory=set)
    _again: set[Key] = field(default_factory=set)
    # (namespace, agent) -> (fingerprint of the inputs, stamped children): renders are reused
    # while nothing they depend on changed, so the many events of a rollout cost no re-render.
    _rendered: dict[tuple[str, str], tuple[tuple[Any, ...], list[Raw]]] = field(default_factory=dict)

    # --- queue ----------------------------------------------------------------------------

    def enqueue(self, *keys: Key) -> None:
        for key in keys:
            if key in self._busy:
                self._again.add(key)  # changed while being reconciled: once more after
            elif key not in self._pending:
                self._pending.add(key)
                self._queue.put_nowait(key)

    @property
    def idle(self) -> bool:
        return not self._pending and not self._busy

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            if key in self._busy:  # another worker has it: keep the order of changes
                self._again.add(key)
                self._pending.discard(key)
                continue
            self._pending.discard(key)
            self._busy.add(key)
            started = time.perf_counter()
            result = "ok"
            try:
                await self.reconcile(key)
            except ApiError as error:
                result = "error"
                logger.warning("reconciling %s failed: %s; retrying", key, error)
                asyncio.get_running_loop().call_later(1.0, self.enqueue, key)
            except Exception:
                result = "error"
                logger.exception("reconciling %s failed; retrying", key)
                asyncio.get_running_loop().call_later(5.0, self.enqueue, key)
            finally:
                self._busy.discard(key)
                metrics.RECONCILES.labels(target=key[0], result=result).inc()
                metrics.RECONCILE_SECONDS.labels(target=key[0]).observe(time.perf_counter() - started)
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)

    # --- what a change affects ------------------------------------------------------------

    def observe(self, raw: Raw, deleted: bool) -> None:
        """Record a watch event and enqueue everything it affects."""
        if deleted:
            self.cache.remove(raw)
        else:
            self.cache.upsert(raw)
        self.enqueue(*self.affected(raw))

    def affected(self, raw: Raw) -> Iterable[Key]:
        kind = raw["kind"]
        meta = raw["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        if kind == "Region":
            yield ("region", "", name)
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

    async def reconcile(self, key: Key) -> None:
        what, namespace, name = key
        if what == "agent":
            await self.reconcile_agent(namespace, name)
        elif what == "routes":
            await self.reconcile_routes(namespace)
        elif what == "region":
            await self.reconcile_region(name)

    # --- agents ---------------------------------------------------------------------------

    async def reconcile_agent(self, namespace: str, name: str) -> None:
        seen = self.cache.seen("VoiceAgent", namespace, name)
        if seen is None or seen.raw["metadata"].get("deletionTimestamp"):
            return  # gone: the garbage collector removes its children (ownerReferences)
        if seen.resource is None:
            await self._refuse(seen, "InvalidSpec", seen.errors)
            return
        agent: VoiceAgent = seen.resource  # type: ignore[assignment]
        regions = self.cache.regions()
        backends = self.cache.backends(namespace)
        missing = agent_reference_errors(agent, regions, backends)
        if missing:
            # Children stay as they are: a Region or AIBackend that is briefly gone must not
            # take live calls down with it.
            await self._refuse(seen, "MissingReference", missing)
            return
        active = active_backend(agent, backends)
        desired = self._desired_children(seen, agent, active)
        await self._converge_children(
            seen, desired, previous_active=_status_field(seen.raw, "activeBackend"), active=active
        )
        await self._write_agent_status(seen, agent, active)

    def _desired_children(self, seen: Seen, agent: VoiceAgent, active: str | None) -> list[Raw]:
        regions, backends = self.cache.regions(), self.cache.backends(agent.namespace)
        # Generations, not resourceVersions: status writes must not count as changes.
        fingerprint = (
            agent.metadata.uid,
            agent.metadata.generation,
            active,
            tuple(
                (regions[r.name].metadata.uid, regions[r.name].metadata.generation)
                for r in agent.spec.regions
            ),
            tuple(
                (backends[b.name].metadata.uid, backends[b.name].metadata.generation)
                for b in agent.spec.backends
            ),
        )
        cached = self._rendered.get((agent.namespace, agent.name))
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        desired = [stamped(child) for child in render_agent(agent, regions, backends, active_backend=active)]
        self._rendered[(agent.namespace, agent.name)] = (fingerprint, desired)
        return desired

    async def _converge_children(
        self, seen: Seen, desired: list[Raw], previous_active: str | None, active: str | None
    ) -> None:
        namespace, name = seen.namespace, seen.name
        live = self.cache.children_of(namespace, name)
        changed = []
        for child in desired:
            key = (child["kind"], child["metadata"]["name"])
            if up_to_date(child, live.get(key)):
                continue
            applied = await self.client.apply(child)
            self.cache.upsert(applied)
            changed.append(f"{child['kind']}/{child['metadata']['name']}")
        wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
        uid = seen.raw["metadata"].get("uid")
        pruned = []
        for (kind, child_name), raw in live.items():
            owners = {ref.get("uid") for ref in raw["metadata"].get("ownerReferences") or []}
            if (kind, child_name) not in wanted and uid in owners:
                await self.client.delete(KINDS[kind], namespace, child_name)
                self.cache.remove(raw)
                pruned.append(f"{kind}/{child_name}")
        if changed:
            await self.post_event(seen.raw, "Normal", "Applied", "applied " + ", ".join(changed))
        if pruned:
            await self.post_event(seen.raw, "Normal", "Pruned", "deleted " + ", ".join(pruned))
        if previous_active and active and previous_active != active:
            await self.post_event(
                seen.raw, "Warning", "BackendFailover", f"active AIBackend {previous_active} -> {active}"
            )
        metrics.MANAGED_OBJECTS.labels(kind="all").set(sum(len(t) for t in self.cache.children.values()))

    def _observe_regions(self, agent: VoiceAgent) -> list[RegionObservation]:
        observations = []
        for bounds in agent.spec.regions:
            deployment = (
                self.cache.child("Deployment", agent.namespace, media_name(agent.name, bounds.name)) or {}
            )
            spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
            signals = self.signals.get((agent.namespace, agent.name, bounds.name), RegionSignals())
            generation = (deployment.get("metadata") or {}).get("generation", 0)
            observations.append(
                RegionObservation(
                    name=bounds.name,
                    min_replicas=bounds.min_replicas,
                    desired=signals.desired if signals.desired is not None else spec.get("replicas", 1),
                    replicas=status.get("replicas", 0),
                    ready=status.get("readyReplicas", 0),
                    updated=bool(deployment) and status.get("observedGeneration", 0) >= generation,
                    active_calls=signals.active_calls,
                    p95_latency_ms=signals.p95_latency_ms,
                )
            )
        return observations

    async def _write_agent_status(self, seen: Seen, agent: VoiceAgent, active: str | None) -> None:
        observations = self._observe_regions(agent)
        backends = self.cache.backends(agent.namespace)
        available = [b for b, backend in backends.items() if backend_available(backend)]
        conditions = agent_conditions(observations, [b.name for b in agent.spec.backends], available, active)
        if agent.spec.scaling.mode == "builtin":
            conditions.append(self._scaling_limited(agent))
        live = dict(seen.raw.get("status") or {})
        status: dict[str, Any] = {
            **{k: v for k, v in live.items() if k == "conditions"},
            "observedGeneration": seen.raw["metadata"].get("generation"),
            "regions": agent_region_status(observations),
            "replicas": sum(o.replicas for o in observations),
            "readyReplicas": sum(o.ready for o in observations),
            "activeCalls": sum(o.active_calls for o in observations),
            "selector": f"{AGENT_LABEL}={agent.name}",
            "activeBackend": active,  # None removes it: no backend is active
        }
        # Conditions this pass does not compute (ScalingLimited, from the autoscaler) are kept.
        status["conditions"] = set_conditions(
            live.get("conditions") or [],
            conditions,
            seen.raw["metadata"].get("generation"),
            self.clock(),
        )
        metrics.AGENT_READY.labels(namespace=agent.namespace, agent=agent.name).set(
            1 if conditions[0].status == "True" else 0
        )
        await self.write_status_if_changed(seen, status)

    def _scaling_limited(self, agent: VoiceAgent) -> Cond:
        limits = {
            f"{region.name}: {signals.limited_by}"
            for region in agent.spec.regions
            if (signals := self.signals.get((agent.namespace, agent.name, region.name)))
            and signals.limited_by
        }
        if limits:
            return Cond("ScalingLimited", "True", "LimitReached", "; ".join(sorted(limits)))
        return Cond("ScalingLimited", "False", "WithinBounds", "")

    async def _refuse(self, seen: Seen, reason: str, errors: Iterable[FieldError]) -> None:
        """Ready=False naming the fields; nothing else is touched."""
        message = describe(list(errors))
        live = dict(seen.raw.get("status") or {})
        ready = Cond("Ready", "False", reason, message)
        status = {
            **live,
            "observedGeneration": seen.raw["metadata"].get("generation"),
            "conditions": set_conditions(
                live.get("conditions") or [], [ready], seen.raw["metadata"].get("generation"), self.clock()
            ),
        }
        if await self.write_status_if_changed(seen, status):
            await self.post_event(seen.raw, "Warning", reason, message)

    async def write_status_if_changed(self, seen: Seen, status: dict[str, Any]) -> bool:
        if not status_differs(seen.raw.get("status"), status):
            return False
        meta = seen.raw["metadata"]
        kind = KINDS[seen.raw["kind"]]
        try:
            await self.client.patch_status(kind, meta.get("namespace"), meta["name"], status)
        except ApiError as error:
            if error.code == 404:
                return False  # deleted meanwhile
            raise
        # Keep the cache in step so that a second pass before the watch event sees no change,
        # unless a newer version has arrived meanwhile (it must not be overwritten).
        table = self.cache.objects[seen.raw["kind"]]
        current = table.get((seen.namespace, seen.name))
        if current is not None and current.raw["metadata"].get("resourceVersion") == meta.get(
            "resourceVersion"
        ):
            table[(seen.namespace, seen.name)] = Seen(
                {**seen.raw, "status": without_nones(status)}, seen.resource, seen.errors
            )
        return True

    # --- endpoints and routes -------------------------------------------------------------

    async def reconcile_routes(self, namespace: str) -> None:
        """The namespace's routing table first (what the SIP edge reads), then endpoint status."""
        regions = self.cache.regions()
        agents = {name: agent for (_, name), agent in self.cache.agents(namespace).items()}
        valid: list[tuple[Seen, VoiceEndpoint]] = []
        routes = {}
        for seen in self.cache.endpoint_seen(namespace):
            if seen.raw["metadata"].get("deletionTimestamp"):
                continue
            if seen.resource is None:
                await self._refuse(seen, "InvalidSpec", seen.errors)
                continue
            endpoint: VoiceEndpoint = seen.resource  # type: ignore[assignment]
            missing = endpoint_reference_errors(endpoint, agents)
            if missing:
                await self._refuse(seen, "MissingReference", missing)
                continue
            agent = agents[endpoint.spec.agent_ref.name]
            routes[endpoint.name] = routes_for(
                endpoint, agent, regions, self._regions_without_ready_pods(agent)
            )
            valid.append((seen, endpoint))
        live = self.cache.child("ConfigMap", namespace, ROUTES_CONFIGMAP)
        if valid:
            desired = stamped(routes_configmap(namespace, [e for _, e in valid], routes))
            if not up_to_date(desired, live):
                self.cache.upsert(await self.client.apply(desired))
        elif live is not None:
            await self.client.delete(KINDS["ConfigMap"], namespace, ROUTES_CONFIGMAP)
            self.cache.remove(live)
        for seen, endpoint in valid:
            await self._write_endpoint_status(seen, [r.to_wire() for r in routes[endpoint.name]])

    def _regions_without_ready_pods(self, agent: VoiceAgent) -> set[str]:
        return {
            r.name
            for r in agent.spec.regions
            if not (
                (self.cache.child("Deployment", agent.namespace, media_name(agent.name, r.name)) or {}).get(
                    "status"
                )
                or {}
            ).get("readyReplicas")
        }

    async def _write_endpoint_status(self, seen: Seen, routes: list[dict[str, Any]]) -> None:
        if routes:
            ready = Cond("Ready", "True", "Routed", f"{len(routes)} route(s)")
        else:
            ready = Cond("Ready", "False", "NoRegionAvailable", "every region of the agent is in maintenance")
        live = dict(seen.raw.get("status") or {})
        generation = seen.raw["metadata"].get("generation")
        status = {
            "observedGeneration": generation,
            "routes": routes,
            "conditions": set_conditions(live.get("conditions") or [], [ready], generation, self.clock()),
        }
        await self.write_status_if_changed(seen, status)

    # --- regions --------------------------------------------------------------------------

    async def reconcile_region(self, name: str) -> None:
        seen = self.cache.seen("Region", "", name)
        if seen is None:
            return
        if seen.resource is None:
            await self._refuse(seen, "InvalidSpec", seen.errors)
            return
        pods = sum(
            (raw.get("status") or {}).get("replicas", 0)
            for raw in self.cache.children["Deployment"].values()
            if (raw["metadata"].get("labels") or {}).get(REGION_LABEL) == name
            and (raw["metadata"].get("labels") or {}).get(MANAGED_BY) == "voiceop"
        )
        calls = sum(s.active_calls for (_, _, region), s in self.signals.items() if region == name)
        region = seen.resource
        if region.spec.maintenance:  # type: ignore[attr-defined]
            ready = Cond("Ready", "False", "Maintenance", "draining: no new calls are routed here")
        else:
            ready = Cond("Ready", "True", "Serving", f"{pods} media pod(s)")
        live = dict(seen.raw.get("status") or {})
        generation = seen.raw["metadata"].get("generation")
        status = {
            "observedGeneration": generation,
            "mediaPods": pods,
            "activeCalls": calls,
            "conditions": set_conditions(live.get("conditions") or [], [ready], generation, self.clock()),
        }
        await self.write_status_if_changed(seen, status)

    # --- events ---------------------------------------------------------------------------

    async def post_event(self, raw: Raw, event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event about `raw`: what `kubectl describe` shows. Never fails a reconcile."""
        meta = raw["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": raw.get("apiVersion"),
                "kind": raw["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "voiceop"},
            "reportingComponent": "voiceop.dev/operator",
            "reportingInstance": "voiceop",
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        try:
            await self.client.request(
                "POST", KINDS["Event"].path(namespace), verb="create_event", body=event, retry=False
            )
        except ApiError as error:
            logger.info("could not post event %s for %s: %s", reason, meta["name"], error)


def _status_field(raw: Raw, name: str) -> Any:
    return (raw.get("status") or {}).get(name)
