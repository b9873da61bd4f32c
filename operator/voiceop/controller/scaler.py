"""The live autoscaling loop: every 2 s, per agent and region, read signals, decide, act.

For every agent, whatever its scaling mode, a media pod whose containers are ready and that is
not draining gets its readiness gate `voiceop.dev/accepting-calls` set True: until then it takes
no call. In builtin mode the loop also runs the policy (voiceop.scaling.policy): it drains pods
(gate False, lowest pod-deletion-cost), brings draining pods back, and sets the Deployment's
replicas through the scale subresource, lowering them only by pods that are empty. What it
sees (live calls, p95 latency, desired pods, a limit) goes to the agent's status through the
reconciler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voiceop import metrics as operator_metrics
from voiceop.api.kinds import KINDS
from voiceop.api.v1alpha1 import VoiceAgent
from voiceop.api.wire import ACCEPTING_CALLS, AGENT_LABEL, DRAINING_SINCE, POD_DELETION_COST, REGION_LABEL
from voiceop.backends import active_backend
from voiceop.controller.cache import ClusterCache, Raw
from voiceop.controller.loops import every
from voiceop.controller.reconciler import Reconciler
from voiceop.controller.signals import DirectScraper, PrometheusReader, Reading, RegionSignals
from voiceop.handoffs import DEFAULT_WINDOW_SECONDS
from voiceop.kube import ApiError, KubeClient
from voiceop.render.agent import prometheus_url
from voiceop.render.names import media_name, pod_name_regex
from voiceop.scaling.policy import PodState, PodView, ScalerMemory, ScalingConfig, bounded, decide
from voiceop.status import condition_status, now_iso, parse_time

logger = logging.getLogger("voiceop.scaler")

TICK_SECONDS = 2.0
DEFAULT_STARTUP_SECONDS = 10.0
DRAINING_COST = "-1000"
REMOVE_COST = "-2000"


def pod_state(pod: Raw) -> PodState:
    """Serving only once Ready (containers ready and gate open): a pod put back in the serving
    set counts as capacity when its container has seen it, not when the gate flips."""
    if (pod["metadata"].get("annotations") or {}).get(DRAINING_SINCE):
        return "draining"
    return "serving" if condition_status(pod, "Ready") == "True" else "starting"


def draining_since(pod: Raw) -> float | None:
    stamp = (pod["metadata"].get("annotations") or {}).get(DRAINING_SINCE)
    return parse_time(stamp) if stamp else None


def took_to_start(pod: Raw) -> float | None:
    """Seconds from the pod's creation to its containers' readiness, as its condition says now."""
    created = pod["metadata"].get("creationTimestamp")
    ready = next(
        (
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") == "ContainersReady" and c.get("status") == "True"
        ),
        None,
    )
    if not (created and ready and ready.get("lastTransitionTime")):
        return None
    took = parse_time(ready["lastTransitionTime"]) - parse_time(created)
    return took if took >= 0 else None


@dataclass
class StartupTimes:
    """One region's pod start-up times, each learned once: the first time a pod is seen with
    ready containers. A drained pod's /readyz answers 503, so its readiness goes False and, when
    it serves again, True with a new transition time; read again then, a pod's "start-up" would
    be its age, and the scaler would plan minutes ahead (seen: 89 s, pods held at 0 calls)."""

    seconds: dict[str, float] = field(default_factory=dict)  # pod uid -> seconds
    median: float | None = None  # over the pods present at the last observation

    def observe(self, pods: Sequence[Raw]) -> float | None:
        """Learn the pods not seen ready before; pods that are gone are forgotten."""
        present = {p["metadata"].get("uid") or p["metadata"]["name"]: p for p in pods}
        self.seconds = {uid: t for uid, t in self.seconds.items() if uid in present}
        for uid, pod in present.items():
            if uid not in self.seconds and (took := took_to_start(pod)) is not None:
                self.seconds[uid] = took
        learned = sorted(self.seconds.values())
        self.median = learned[len(learned) // 2] if learned else None
        return self.median


def hands_off(agent: VoiceAgent) -> bool:
    """Whether the agent's pods hand calls to humans (and so have hand-offs to count)."""
    return agent.spec.fallback is not None and agent.spec.fallback.human_handoff is not None


def with_condition(pod: Raw, kind: str, status: str, reason: str) -> list[dict[str, Any]]:
    now = now_iso()
    kept = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != kind]
    return [*kept, {"type": kind, "status": status, "reason": reason, "lastTransitionTime": now}]


@dataclass
class Scaler:
    client: KubeClient
    cache: ClusterCache
    reconciler: Reconciler
    tick_seconds: float = TICK_SECONDS
    memories: dict[tuple[str, str, str], ScalerMemory] = field(default_factory=dict)
    direct: DirectScraper = field(default_factory=DirectScraper)
    # (namespace, agent, region) -> observed pod start-up times: how far ahead to plan.
    startup: dict[tuple[str, str, str], StartupTimes] = field(default_factory=dict)
    prometheus: dict[str, PrometheusReader] = field(default_factory=dict)
    # (namespace, agent, region) -> {pod: live calls last reported}
    last_calls: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    handoff_window_seconds: float = DEFAULT_WINDOW_SECONDS

    def __post_init__(self) -> None:
        self.direct.handoff_window_seconds = self.handoff_window_seconds

    def initial_replicas(self, agent: VoiceAgent, region: str) -> int:
        """What a first tick chooses for a region with no pods and no calls: its minimum, within
        its caps. A new Deployment is created with it, so that no scale follows the create."""
        return bounded(0, 0, self.config_for(agent, region))[0]

    async def run(self) -> None:
        try:
            await every(self.tick_seconds, self.tick, "scaler")
        finally:
            await self.direct.close()
            for reader in self.prometheus.values():
                await reader.close()

    def media_pods(self) -> dict[tuple[str, str, str], list[Raw]]:
        """Live media pods by (namespace, agent, region): one pass over the cache per tick."""
        grouped: dict[tuple[str, str, str], list[Raw]] = {}
        for (namespace, _), raw in self.cache.children["Pod"].items():
            labels = raw["metadata"].get("labels") or {}
            if (
                AGENT_LABEL in labels
                and REGION_LABEL in labels
                and not raw["metadata"].get("deletionTimestamp")
            ):
                grouped.setdefault((namespace, labels[AGENT_LABEL], labels[REGION_LABEL]), []).append(raw)
        return grouped

    async def tick(self) -> None:
        regions = self.cache.regions()
        media = self.media_pods()
        scaled: set[tuple[str, str, str]] = set()
        for (namespace, name), agent in list(self.cache.agents().items()):
            if any(r.name not in regions for r in agent.spec.regions):
                continue  # MissingReference: the reconciler reports it
            changed = False
            for bounds in agent.spec.regions:
                key = (namespace, name, bounds.name)
                try:
                    pods = media.get(key, [])
                    await self.open_gates(pods)
                    if agent.spec.scaling.mode == "builtin":
                        scaled.add(key)
                        signals = await self.scale(agent, bounds.name, pods)
                    elif hands_off(agent):
                        signals = await self.observe(agent, bounds.name, pods)
                    else:
                        continue
                except ApiError as error:  # one region's trouble must not stall the others
                    logger.warning("%s/%s %s: scaling pass failed: %s", namespace, name, bounds.name, error)
                    continue
                if self.reconciler.signals.get(key) != signals:
                    self.reconciler.signals[key] = signals
                    changed = True
            if changed:
                self.reconciler.enqueue(("agent", namespace, name))
                for region in agent.spec.regions:
                    self.reconciler.enqueue(("region", "", region.name))
        # What an agent or region that is gone (or left builtin mode) taught us is forgotten, so
        # that coming back starts afresh: seeded with the pods then running.
        for remembered in (self.memories, self.startup, self.last_calls, self.reconciler.replicas):
            for key in [k for k in remembered if k not in scaled]:
                del remembered[key]
                self.cache.release_replicas(key[0], media_name(key[1], key[2]))  # a create not made

    async def open_gates(self, pods: Sequence[Raw]) -> None:
        """Pods up and not draining take calls: readiness gate True (pods that have one)."""
        for pod in pods:
            gates = {g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []}
            if (
                ACCEPTING_CALLS in gates
                and pod_state(pod) == "starting"
                and condition_status(pod, ACCEPTING_CALLS) != "True"
                and condition_status(pod, "ContainersReady") == "True"
            ):
                await self._set_gate(pod, "True", "MediaReady")

    async def _set_gate(self, pod: Raw, status: str, reason: str) -> None:
        """The readiness gate, guarded by the pod's resourceVersion (the kubelet writes conditions too).

        A conflict means the kubelet wrote in between: the pod is read again and the conditions
        recomputed from it, once; a second conflict waits for the next tick.
        """
        for attempt in range(2):
            meta = pod["metadata"]
            patch = {
                "metadata": {"resourceVersion": meta["resourceVersion"]},
                "status": {"conditions": with_condition(pod, ACCEPTING_CALLS, status, reason)},
            }
            try:
                updated = await self.client.patch(
                    KINDS["Pod"], meta["namespace"], meta["name"], patch, sub="status"
                )
            except ApiError as error:
                if error.code == 404 or (error.code == 409 and attempt):
                    return  # gone meanwhile; or conflicting again: the next tick sees it as it is
                if error.code != 409:
                    raise
                fresh = await self.client.get(KINDS["Pod"], meta["namespace"], meta["name"])
                if fresh is None:
                    return
                pod = {**fresh, "kind": "Pod"}
                self.cache.upsert(pod)
                continue
            self.cache.upsert({**updated, "kind": "Pod"})
            return

    def config_for(self, agent: VoiceAgent, region: str) -> ScalingConfig:
        spec = agent.spec
        bounds = next(r for r in spec.regions if r.name == region)
        caps: list[tuple[str, int]] = []
        region_obj = self.cache.regions()[region]
        if region_obj.spec.capacity and region_obj.spec.capacity.max_media_pods is not None:
            others = self.cache.replica_count.others(region, agent.namespace, media_name(agent.name, region))
            caps.append(
                (
                    f"Region {region} capacity.maxMediaPods",
                    max(0, region_obj.spec.capacity.max_media_pods - others),
                )
            )
        backends = self.cache.backends(agent.namespace)
        active = active_backend(agent, backends)
        limits = backends[active].spec.limits if active else None
        if active and limits is not None and limits.max_concurrent_sessions:
            quota_pods = limits.max_concurrent_sessions // spec.capacity.calls_per_pod
            share = max(1, quota_pods // len(spec.regions))
            caps.append((f"AIBackend {active} limits.maxConcurrentSessions", share))
        return ScalingConfig(
            calls_per_pod=spec.capacity.calls_per_pod,
            pod_startup_seconds=self.startup_of((agent.namespace, agent.name, region)),
            target_utilization=spec.scaling.target_utilization,
            tick_seconds=self.tick_seconds,
            latency_slo_ms=spec.scaling.latency_slo.p95_ms,
            scale_down_delay_seconds=spec.scaling.scale_down_delay_seconds,
            min_replicas=bounds.min_replicas,
            max_replicas=bounds.max_replicas,
            max_call_duration_seconds=spec.drain.max_call_duration_seconds,
            caps=tuple(caps),
        )

    def startup_of(self, key: tuple[str, str, str]) -> float:
        """How long a pod asked for now takes to serve: what this region's pods took to start,
        once seen (until then the 10 s default), and a tick, since the readiness gate opens on
        the tick after the pod's containers are ready (the demo's 1 s pods took 3 s to serve,
        and a burst filled the pods meanwhile)."""
        learned = self.startup[key].median if key in self.startup else None
        return DEFAULT_STARTUP_SECONDS if learned is None else max(1.0, learned) + self.tick_seconds

    async def read(self, agent: VoiceAgent, region: str, pods: Sequence[Raw]) -> Reading:
        metrics = agent.spec.scaling.metrics
        url = prometheus_url(agent, self.reconciler.options)
        if metrics.source == "prometheus" and url:
            reader = self.prometheus.setdefault(url, PrometheusReader(url))
            try:
                reading = await reader.read(
                    agent.namespace,
                    [p["metadata"]["name"] for p in pods],
                    pod_name_regex(media_name(agent.name, region)) if hands_off(agent) else None,
                    self.handoff_window_seconds,
                )
                operator_metrics.SIGNAL_READS.labels(source="prometheus").inc()
                return reading
            except Exception as error:
                logger.warning("Prometheus at %s: %s; scraping pods directly", url, error)
                operator_metrics.SIGNAL_READS.labels(source="fallback").inc()
        else:
            operator_metrics.SIGNAL_READS.labels(source="direct").inc()
        addresses = {p["metadata"]["name"]: (p.get("status") or {}).get("podIP") for p in pods}
        group = (agent.namespace, agent.name, region)
        return await self.direct.read({n: ip for n, ip in addresses.items() if ip}, group)

    async def observe(self, agent: VoiceAgent, region: str, pods: Sequence[Raw]) -> RegionSignals:
        """The signals of a region another autoscaler scales: for its status (hand-offs)."""
        reading = await self.read(agent, region, pods)
        p95 = None if reading.p95_ms is None else round(reading.p95_ms)
        return RegionSignals(sum(reading.calls.values()), p95, handoffs=reading.handoffs)

    async def scale(self, agent: VoiceAgent, region: str, pods: Sequence[Raw]) -> RegionSignals:
        self.startup.setdefault((agent.namespace, agent.name, region), StartupTimes()).observe(pods)
        reading = await self.read(agent, region, pods)
        # A pod whose metrics did not answer keeps the calls it last reported: unknown is not empty.
        key = (agent.namespace, agent.name, region)
        before = self.last_calls.get(key, {})
        calls = {
            name: reading.calls.get(name, before.get(name, 0))
            for name in (p["metadata"]["name"] for p in pods)
        }
        self.last_calls[key] = calls
        views = [
            PodView(
                p["metadata"]["name"],
                pod_state(p),
                calls[p["metadata"]["name"]],
                draining_since(p),
                fresh=p["metadata"]["name"] in reading.calls,
            )
            for p in pods
        ]
        memory = self.memories.setdefault((agent.namespace, agent.name, region), ScalerMemory())
        decision = decide(
            views,
            time.time(),
            self.config_for(agent, region),
            memory,
            reading.p95_ms,
            reading.arrivals_per_second,
        )
        by_name = {p["metadata"]["name"]: p for p in pods}
        stamp = now_iso()
        for name in decision.drain:
            await self._annotate(by_name[name], {DRAINING_SINCE: stamp, POD_DELETION_COST: DRAINING_COST})
            await self._set_gate(self._fresh(by_name[name]), "False", "Draining")
        for name in decision.undrain:
            await self._annotate(by_name[name], {DRAINING_SINCE: None, POD_DELETION_COST: None})
            await self._set_gate(self._fresh(by_name[name]), "True", "DemandReturned")
        for name in decision.remove:
            await self._annotate(by_name[name], {POD_DELETION_COST: REMOVE_COST})
        where = f"{agent.namespace}/{agent.name} {region}"
        if decision.drain:
            logger.info(
                "%s: %d pods stop taking calls (%s calls on them); they stay warm until empty and the delay ends",
                where,
                len(decision.drain),
                sum(v.calls for v in views if v.name in decision.drain),
            )
        if decision.undrain:
            logger.info("%s: %d draining pods take calls again", where, len(decision.undrain))
        # Before the write: an apply of the Deployment meanwhile carries this count, not the old one.
        self.reconciler.replicas[key] = decision.replicas
        name = media_name(agent.name, region)
        deployment = self.cache.child("Deployment", agent.namespace, name)
        if deployment is None:  # the reconciler creates it with this count: counted from now on
            self.cache.reserve_replicas(agent.namespace, name, region, decision.replicas)
        elif (deployment.get("spec") or {}).get("replicas", 1) != decision.replicas:
            # Counted in the region before the write: shares computed meanwhile (later agents in
            # this tick, new agents' reconciles) see it; a failed write counts what still runs.
            self.cache.replica_count.set(agent.namespace, name, region, decision.replicas)
            try:
                await self.client.patch(
                    KINDS["Deployment"],
                    agent.namespace,
                    name,
                    {"spec": {"replicas": decision.replicas}},
                    sub="scale",
                )
            except BaseException:
                self.cache.release_replicas(agent.namespace, name)
                raise
            logger.info(
                "%s: %d -> %d pods (%d calls%s, want %d serving%s)",
                where,
                (deployment.get("spec") or {}).get("replicas", 1),
                decision.replicas,
                sum(reading.calls.values()),
                "" if reading.p95_ms is None else f", p95 {reading.p95_ms:.0f} ms",
                decision.wanted,
                f", limited by {decision.limited_by}" if decision.limited_by else "",
            )
        p95 = None if reading.p95_ms is None else round(reading.p95_ms)
        return RegionSignals(
            sum(reading.calls.values()), p95, decision.desired, decision.limited_by, reading.handoffs
        )

    def _fresh(self, pod: Raw) -> Raw:
        meta = pod["metadata"]
        return self.cache.child("Pod", meta["namespace"], meta["name"]) or pod

    async def _annotate(self, pod: Raw, annotations: dict[str, str | None]) -> None:
        meta = pod["metadata"]
        try:
            updated = await self.client.patch(
                KINDS["Pod"], meta["namespace"], meta["name"], {"metadata": {"annotations": annotations}}
            )
            self.cache.upsert({**updated, "kind": "Pod"})
        except ApiError as error:
            if error.code != 404:
                raise
