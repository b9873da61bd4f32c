"""An agent's children and status: cache -> render (pure) -> apply what differs -> status."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voiceop import metrics
from voiceop.api.kinds import KINDS
from voiceop.api.references import agent_reference_errors
from voiceop.api.v1alpha1 import VoiceAgent
from voiceop.backends import active_backend, backend_available
from voiceop.controller.cache import ClusterCache, Raw, Seen
from voiceop.controller.diff import UpToDateMemo, stamped
from voiceop.controller.signals import RegionSignals, ReplicaTable, last_reported
from voiceop.controller.status_writer import StatusWriter
from voiceop.handoffs import DEFAULT_WINDOW_SECONDS, HandoffWindow, handoffs_high, handoffs_status
from voiceop.kube import HANDOVER_MANAGER, ApiError, KubeClient
from voiceop.render import render_agent
from voiceop.render.agent import render_errors
from voiceop.render.names import media_name
from voiceop.render.options import DEFAULT_OPTIONS, RenderOptions
from voiceop.status import Cond, RegionObservation, agent_conditions, agent_status, scaling_limited

SignalTable = dict[tuple[str, str, str], RegionSignals]  # (namespace, agent, region) -> signals


@dataclass
class AgentReconciler:
    client: KubeClient
    cache: ClusterCache
    status: StatusWriter
    signals: SignalTable
    options: RenderOptions = DEFAULT_OPTIONS
    handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS
    replicas: ReplicaTable = field(default_factory=dict)  # the scaler's choices (builtin mode)
    # A new Deployment's replicas in builtin mode, before the scaler has chosen (the scaler's
    # answer for an empty region when it runs; the region's minimum otherwise).
    initial_replicas: Callable[[VoiceAgent, str], int] | None = None
    # (namespace, agent) -> (fingerprint of the inputs, stamped children as JSON): renders are
    # reused while nothing they depend on changed, so the many events of a rollout cost no
    # re-render. Kept as compact JSON, deflated: a benchmark agent's 10 children are 15.4 KB of
    # JSON, 2.7 KB deflated (12 MiB less at 1,000 agents); inflating and decoding cost 0.1 ms,
    # rendering and stamping again 1.34 ms.
    _rendered: dict[tuple[str, str], tuple[tuple[Any, ...], bytes]] = field(default_factory=dict)
    _compared: UpToDateMemo = field(default_factory=UpToDateMemo)

    async def reconcile(self, namespace: str, name: str) -> None:
        seen = self.cache.seen("VoiceAgent", namespace, name)
        if seen is None or seen.raw["metadata"].get("deletionTimestamp"):
            self._rendered.pop((namespace, name), None)
            self._compared.forget((namespace, name))
            return  # gone: the garbage collector removes its children (ownerReferences)
        if seen.resource is None:
            await self.status.refuse(seen, "InvalidSpec", seen.errors)
            return
        agent: VoiceAgent = seen.resource  # type: ignore[assignment]
        backends = self.cache.backends(namespace)
        missing = agent_reference_errors(agent, self.cache.regions(), backends)
        if missing:
            # Children stay as they are: a Region or AIBackend that is briefly gone must not
            # take live calls down with it.
            await self.status.refuse(seen, "MissingReference", missing)
            return
        problems = render_errors(agent, self.options)
        if problems:  # the agent and the operator's flags together: children stay as they are
            await self.status.refuse(seen, "InvalidSpec", problems)
            return
        active = active_backend(agent, backends)
        previous = (seen.raw.get("status") or {}).get("activeBackend")
        await self._converge_children(seen, self._with_replicas(agent, self._desired_children(agent, active)))
        if previous and active and previous != active:
            await self.client.post_event(
                seen.raw, "Warning", "BackendFailover", f"active AIBackend {previous} -> {active}"
            )
        await self._write_status(seen, agent, active)

    def _desired_children(self, agent: VoiceAgent, active: str | None) -> list[Raw]:
        regions, backends = self.cache.regions(), self.cache.backends(agent.namespace)
        # Generations, not resourceVersions: status writes must not count as changes.
        fingerprint = (
            self.options,
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
            return json.loads(zlib.decompress(cached[1]))
        rendered = render_agent(agent, regions, backends, active_backend=active, options=self.options)
        desired = [stamped(child) for child in rendered]
        self._rendered[(agent.namespace, agent.name)] = (
            fingerprint,
            zlib.compress(json.dumps(desired, separators=(",", ":")).encode(), 1),
        )
        return desired

    def _with_replicas(self, agent: VoiceAgent, desired: list[Raw]) -> list[Raw]:
        """In builtin mode the scaler's replicas go along in each Deployment's apply (after the
        render and its hash: scaling is no change to the render). voiceop's field manager then
        keeps owning spec.replicas, which server-side apply removes, and the Deployment resets
        to 1, when its only owner leaves it out: a switch from mode none did that, with calls on
        the pods. A new Deployment starts with the count the scaler would choose, not with 1."""
        if agent.spec.scaling.mode != "builtin":
            return desired
        regions = {media_name(agent.name, r.name): r.name for r in agent.spec.regions}
        for child in desired:
            region = regions.get(child["metadata"]["name"]) if child["kind"] == "Deployment" else None
            if region is not None:
                child["spec"]["replicas"] = self._replicas_of(agent, region)
        return desired

    def _replicas_of(self, agent: VoiceAgent, region: str) -> int:
        name = media_name(agent.name, region)
        chosen = self.replicas.get((agent.namespace, agent.name, region))
        if chosen is not None:
            self.cache.reserve_replicas(agent.namespace, name, region, chosen)
            return chosen
        live = self.cache.child("Deployment", agent.namespace, name)
        if live is not None:  # a restart, or a switch into builtin: what runs now
            return int((live.get("spec") or {}).get("replicas", 1))
        if self.initial_replicas is not None:
            initial = self.initial_replicas(agent, region)
            self.cache.reserve_replicas(agent.namespace, name, region, initial)
            return initial
        return next(r.min_replicas for r in agent.spec.regions if r.name == region)

    async def _hand_over_replicas(self, live: Raw) -> None:
        """Before an apply that leaves spec.replicas out (modes hpa and keda): a second field
        manager applies the live count, without force, so that the count stays where voiceop's
        manager owned it (a switch from builtin or none) instead of falling to 1 until the HPA
        acts; where another manager (the HPA) owns it with another value, that is a conflict and
        nothing changes. What the Kubernetes docs advise for handing replicas to an HPA."""
        meta = live["metadata"]
        body = {
            "apiVersion": KINDS["Deployment"].api_version,
            "kind": "Deployment",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": (live.get("spec") or {}).get("replicas", 1)},
        }
        try:
            self.cache.upsert(await self.client.apply(body, manager=HANDOVER_MANAGER, force=False))
        except ApiError as error:
            if error.code != 409:
                raise

    async def _converge_children(self, seen: Seen, desired: list[Raw]) -> None:
        namespace, name = seen.namespace, seen.name
        live = self.cache.children_of(namespace, name)
        changed = []
        for child in desired:
            current = live.get((child["kind"], child["metadata"]["name"]))
            if self._compared.check((namespace, name), child, current):
                continue
            if current is not None and child["kind"] == "Deployment" and "replicas" not in child["spec"]:
                await self._hand_over_replicas(current)
            try:
                self.cache.upsert(await self.client.apply(child))
            except BaseException:
                if current is None and child["kind"] == "Deployment":
                    self.cache.release_replicas(namespace, child["metadata"]["name"])
                raise
            changed.append(f"{child['kind']}/{child['metadata']['name']}")
        wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
        uid = seen.raw["metadata"].get("uid")
        pruned = []
        for (kind, child_name), raw in live.items():
            owners = {ref.get("uid") for ref in raw["metadata"].get("ownerReferences") or []}
            if (kind, child_name) not in wanted and uid in owners:
                await self.client.delete(KINDS[kind], namespace, child_name)
                self.cache.remove(raw)
                self._compared.forget((namespace, name), (kind, child_name))
                pruned.append(f"{kind}/{child_name}")
        if changed:
            await self.client.post_event(seen.raw, "Normal", "Applied", "applied " + ", ".join(changed))
        if pruned:
            await self.client.post_event(seen.raw, "Normal", "Pruned", "deleted " + ", ".join(pruned))
        metrics.MANAGED_OBJECTS.labels(kind="all").set(sum(len(t) for t in self.cache.children.values()))

    def _signals_of(self, agent: VoiceAgent, live_status: Raw | None) -> dict[str, RegionSignals]:
        """Each region's signals: the scaler's, else (builtin, before its first tick) the status's."""
        out = {}
        for bounds in agent.spec.regions:
            signals = self.signals.get((agent.namespace, agent.name, bounds.name))
            if signals is None and agent.spec.scaling.mode == "builtin":
                signals = last_reported(live_status, bounds.name)
            out[bounds.name] = signals or RegionSignals()
        return out

    def _observe_regions(
        self, agent: VoiceAgent, signals: dict[str, RegionSignals]
    ) -> list[RegionObservation]:
        observations = []
        for bounds in agent.spec.regions:
            deployment = (
                self.cache.child("Deployment", agent.namespace, media_name(agent.name, bounds.name)) or {}
            )
            spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
            region = signals[bounds.name]
            generation = (deployment.get("metadata") or {}).get("generation", 0)
            observations.append(
                RegionObservation(
                    name=bounds.name,
                    min_replicas=bounds.min_replicas,
                    desired=region.desired if region.desired is not None else spec.get("replicas", 1),
                    replicas=status.get("replicas", 0),
                    ready=status.get("readyReplicas", 0),
                    updated=bool(deployment) and status.get("observedGeneration", 0) >= generation,
                    active_calls=region.active_calls,
                    p95_latency_ms=region.p95_latency_ms,
                    limited_by=region.limited_by,
                )
            )
        return observations

    async def _write_status(self, seen: Seen, agent: VoiceAgent, active: str | None) -> None:
        signals = self._signals_of(agent, seen.raw.get("status"))
        observations = self._observe_regions(agent, signals)
        backends = self.cache.backends(agent.namespace)
        available = [b for b, backend in backends.items() if backend_available(backend)]
        conditions = agent_conditions(observations, [b.name for b in agent.spec.backends], available, active)
        if agent.spec.scaling.mode == "builtin":
            conditions.append(scaling_limited({name: region.limited_by for name, region in signals.items()}))
        live = dict(seen.raw.get("status") or {})
        handoffs = self._handoffs(agent, signals, conditions)
        generation = seen.raw["metadata"].get("generation")
        status = agent_status(
            live, generation, agent.name, observations, conditions, active, self.status.clock()
        )
        if handoffs is not None:
            status["handoffs"] = handoffs
        elif agent.spec.fallback is None or agent.spec.fallback.human_handoff is None:
            status["handoffs"] = None  # no hand-offs to count: the block goes
        else:
            status["handoffs"] = live.get("handoffs")  # not read yet (a restart): kept as shown
        metrics.AGENT_READY.labels(namespace=agent.namespace, agent=agent.name).set(
            1 if conditions[0].status == "True" else 0
        )
        await self.status.write_if_changed(seen, status)
        await self._announce_handoffs_high(seen, live, conditions)

    def _handoffs(
        self, agent: VoiceAgent, signals: dict[str, RegionSignals], conditions: list[Cond]
    ) -> dict[str, Any] | None:
        """`status.handoffs` and `HandoffsHigh` once the scaler has read the counters; until then
        (a restart) the status keeps what it showed."""
        fallback = agent.spec.fallback
        windows = {name: s.handoffs for name, s in signals.items() if s.handoffs is not None}
        if fallback is None or fallback.human_handoff is None or not windows:
            return None
        regions = {r.name: windows.get(r.name, HandoffWindow()) for r in agent.spec.regions}
        total = sum(regions.values(), HandoffWindow())
        conditions.append(handoffs_high(total, fallback.max_handoff_rate, self.handoff_window_seconds))
        labels = {"namespace": agent.namespace, "agent": agent.name}
        metrics.MAX_HANDOFF_RATE.labels(**labels).set(fallback.max_handoff_rate)
        return handoffs_status(self.handoff_window_seconds, regions)

    async def _announce_handoffs_high(self, seen: Seen, live: Raw, conditions: list[Cond]) -> None:
        """A Warning Event when HandoffsHigh turns True (not on every pass while it stays)."""
        high = next((c for c in conditions if c.type == "HandoffsHigh"), None)
        before: Raw = next((c for c in live.get("conditions") or [] if c.get("type") == "HandoffsHigh"), {})
        if high is not None and high.status == "True" and before.get("status") != "True":
            await self.client.post_event(seen.raw, "Warning", "HandoffsHigh", high.message)
