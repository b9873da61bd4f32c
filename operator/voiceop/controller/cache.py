"""What the operator has seen of the cluster, fed by kopf's watch events.

Reconciliation reads from here, never from the API: a resync of an unchanged world costs no
request at all. voiceop objects are parsed (admitted, typed) once per resourceVersion; one that
does not parse is kept with its errors, so its status can say why.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from voiceop.api import FieldError, InvalidObject, differs_only_in_status, parse_object, with_status_of
from voiceop.api.base import CustomResource
from voiceop.api.inventory import Inventory
from voiceop.api.kinds import VOICEOP_KINDS, WATCHED_CHILD_KINDS
from voiceop.api.v1alpha1 import AIBackend, Region, VoiceAgent, VoiceEndpoint
from voiceop.api.wire import AGENT_LABEL, MANAGED_BY, REGION_LABEL

Raw = dict[str, Any]


@dataclass(frozen=True)
class Seen:
    """One voiceop object as last seen: raw, and parsed or refused."""

    raw: Raw
    resource: CustomResource | None
    errors: tuple[FieldError, ...] = ()

    @property
    def namespace(self) -> str:
        return str(self.raw["metadata"].get("namespace") or "")

    @property
    def name(self) -> str:
        return str(self.raw["metadata"]["name"])


def _newer(raw: Raw, known: Raw) -> bool:
    """Whether `raw` is a later version of the object than `known`.

    resourceVersions are opaque by contract; kube-apiserver's (and the loopback server's) are
    etcd revisions, decimal integers that grow with every write, so two of the same object
    compare by number. An object deleted and created again has a new uid: always newer. What
    does not parse as a number is taken as newer, the behaviour before this comparison.
    """
    if (raw["metadata"].get("uid") or "") != (known["metadata"].get("uid") or ""):
        return True
    mine, theirs = raw["metadata"].get("resourceVersion"), known["metadata"].get("resourceVersion")
    if mine == theirs:
        return False
    try:
        return int(str(mine)) > int(str(theirs))
    except ValueError:
        return True


SHARED_STRING_LENGTH = 64  # longer strings (a runtime config, a certificate) are rarely repeated


def shared_strings(value: Any) -> Any:
    """`value` with its keys and short strings shared with every other cached object's.

    Each decoded watch event has its own copy of every key ("metadata", "app.kubernetes.io/name")
    and of every repeated value (a namespace, an image, a label); thousands of cached children
    held them thousands of times. Interned, the cache of 300 agents' children takes 19 MiB
    instead of 36 (measured on the reconcile benchmark's objects); equal in every other way.
    """
    if isinstance(value, dict):
        return {sys.intern(k): shared_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shared_strings(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_STRING_LENGTH:
        return sys.intern(value)
    return value


# What the scaler reads of a media pod besides its metadata (voiceop owns no pod, so nothing
# is ever compared against or written back from the rest): the readiness gates it opens, the
# conditions it reads and patches, the address it scrapes. The containers, volumes and their
# statuses are most of a pod as kube-apiserver sends it.
POD_KEPT: dict[str, tuple[str, ...]] = {
    "spec": ("readinessGates",),
    "status": ("phase", "conditions", "podIP", "podIPs"),
}


def as_cached(raw: Raw) -> Raw:
    """What the cache keeps of an object: all of it but `metadata.managedFields` (the server's
    record of who set which field: nothing voiceop reads, and on kube-apiserver often the
    largest part of a Deployment or Pod), and of a Pod only what POD_KEPT names; with strings
    shared (see shared_strings)."""
    meta = raw.get("metadata") or {}
    if "managedFields" in meta:
        raw = {**raw, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    if raw.get("kind") == "Pod":
        raw = {**raw, **{part: _only(raw.get(part), keys) for part, keys in POD_KEPT.items()}}
    return shared_strings(raw)


def _only(value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: value[k] for k in keys if k in value} if isinstance(value, dict) else {}


def object_key(raw: Raw) -> tuple[str, str]:
    """(namespace or "", name): how the cache and the relist name an object."""
    meta = raw["metadata"]
    return (meta.get("namespace") or "", meta["name"])


@dataclass
class ReplicaCount:
    """Media Deployments' replicas by region: a region's total and each Deployment's part in
    it, moved together, so an agent's share of the region (what the others leave) never counts
    its own Deployment or misses another. Writes in flight count as soon as they are decided
    (`ClusterCache.reserve_replicas`, the scaler's scale), their answers or watch events after."""

    by_region: dict[str, int] = field(default_factory=dict)
    parts: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # (ns, name) -> (region, n)

    def set(self, namespace: str, name: str, region: str, replicas: int) -> None:
        old_region, old = self.parts.get((namespace, name), (region, 0))
        self.by_region[old_region] = self.by_region.get(old_region, 0) - old
        self.by_region[region] = self.by_region.get(region, 0) + replicas
        self.parts[(namespace, name)] = (region, replicas)

    def remove(self, namespace: str, name: str) -> None:
        region, old = self.parts.pop((namespace, name), ("", 0))
        if old:
            self.by_region[region] -= old

    def others(self, region: str, namespace: str, name: str) -> int:
        """The replicas in `region` of every Deployment but this one."""
        own_region, own = self.parts.get((namespace, name), (region, 0))
        return self.by_region.get(region, 0) - (own if own_region == region else 0)


def _owning_agent(kind: str, raw: Raw | None) -> str | None:
    """The agent whose child this is: labelled with it and managed by voiceop (pods are the
    ReplicaSet's, not voiceop's)."""
    if raw is None or kind == "Pod":
        return None
    labels = raw["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY) != "voiceop":
        return None
    agent = labels.get(AGENT_LABEL)
    return agent if isinstance(agent, str) else None


@dataclass
class ClusterCache:
    objects: dict[str, dict[tuple[str, str], Seen]] = field(default_factory=lambda: defaultdict(dict))
    children: dict[str, dict[tuple[str, str], Raw]] = field(default_factory=lambda: defaultdict(dict))
    # (namespace, agent) -> {(kind, name): child}: voiceop's children of each agent, kept with
    # `children` so a reconcile reads its own and does not scan every child of the cluster.
    _by_agent: dict[tuple[str, str], dict[tuple[str, str], Raw]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    # The replicas of every Deployment labelled with a region, kept with `children` as well:
    # what a region's capacity.maxMediaPods is shared by, read for each new Deployment (a
    # count afresh each time was quadratic in the fleet).
    replica_count: ReplicaCount = field(default_factory=ReplicaCount)
    # Told of every change as (before, after), None for absent: an object new, newer or gone,
    # never a repeat of the version held. The reconciler enqueues what the change affects; a
    # watch event that only echoes a write whose answer is already here wakes nothing.
    on_change: Callable[[Raw | None, Raw | None], None] | None = None

    # --- feeding --------------------------------------------------------------------------

    def upsert(self, raw: Raw) -> None:
        """An object as a watch event or a write's answer brought it; never over a newer one.

        A write's answer can arrive after the watch event of a later change (another writer, a
        controller's status): kept, it would turn the cache back (the chaos benchmark saw a
        Deployment's readyReplicas go back to 0, and the routes left its region out for good).
        """
        kind = raw["kind"]
        if kind in VOICEOP_KINDS:
            key = object_key(raw)
            previous = self.objects[kind].get(key)
            if previous is not None and not _newer(raw, previous.raw):
                return
            raw = as_cached(raw)
            if (
                previous is not None
                and previous.resource is not None
                and differs_only_in_status(previous.raw, raw)
            ):
                # A status write (most events of a converging fleet): the spec admitted before
                # stands; admitting and parsing it again was ~0.7 ms an event.
                self.objects[kind][key] = Seen(raw, with_status_of(previous.resource, raw))
            else:
                try:
                    self.objects[kind][key] = Seen(raw, parse_object(raw))
                except InvalidObject as invalid:
                    self.objects[kind][key] = Seen(raw, None, tuple(invalid.errors))
            before = None if previous is None else previous.raw
        elif kind in WATCHED_CHILD_KINDS:
            key = object_key(raw)
            before = self.children[kind].get(key)
            if before is not None and not _newer(raw, before):
                return
            raw = as_cached(raw)
            self.children[kind][key] = raw
            self._reindex(kind, key, before, raw)
        else:
            return
        if self.on_change is not None:
            self.on_change(before, raw)

    def upsert_if_absent(self, raw: Raw) -> None:
        """From an initial listing: never over a version a watch event has already brought."""
        table = self.objects if raw["kind"] in VOICEOP_KINDS else self.children
        if object_key(raw) not in table[raw["kind"]]:
            self.upsert(raw)

    def remove(self, raw: Raw) -> None:
        kind = raw["kind"]
        if kind in VOICEOP_KINDS:
            seen = self.objects[kind].pop(object_key(raw), None)
            before = None if seen is None else seen.raw
        else:
            before = self.children[kind].pop(object_key(raw), None)
            if before is not None:
                self._reindex(kind, object_key(raw), before, None)
        if before is not None and self.on_change is not None:
            self.on_change(before, None)

    def _reindex(self, kind: str, key: tuple[str, str], old: Raw | None, new: Raw | None) -> None:
        """Move a child between agents' entries as its labels say (they may change)."""
        namespace, name = key
        if (was := _owning_agent(kind, old)) is not None:
            entries = self._by_agent.get((namespace, was), {})
            entries.pop((kind, name), None)
            if not entries:
                self._by_agent.pop((namespace, was), None)
        if new is not None and (now := _owning_agent(kind, new)) is not None:
            self._by_agent[(namespace, now)][(kind, name)] = new
        if kind == "Deployment":
            self._count_replicas(namespace, name, new)

    def _count_replicas(self, namespace: str, name: str, deployment: Raw | None) -> None:
        """A Deployment's part of its region's replicas, as `deployment` says (none if None)."""
        region = (
            None if deployment is None else (deployment["metadata"].get("labels") or {}).get(REGION_LABEL)
        )
        if deployment is None or region is None:
            self.replica_count.remove(namespace, name)
        else:
            self.replica_count.set(
                namespace, name, region, int((deployment.get("spec") or {}).get("replicas", 1))
            )

    def reserve_replicas(self, namespace: str, name: str, region: str, replicas: int) -> None:
        """A Deployment about to be created counts in its region from now on: agents reconciled
        while its apply is in flight see the region with it (each had counted the region before
        the others' applies answered, and 40 agents created at once asked a region of 60 pods for
        68). Its watch event or the apply's answer replaces the reservation; a failed create
        releases it (`release_replicas`)."""
        if (namespace, name) not in self.children["Deployment"]:
            self.replica_count.set(namespace, name, region, replicas)

    def release_replicas(self, namespace: str, name: str) -> None:
        """A count decided ahead of its write (a create, a scale) whose write failed or will not
        come: the region counts the Deployment as the cache holds it again, or not at all."""
        self._count_replicas(namespace, name, self.children["Deployment"].get((namespace, name)))

    def keys_of(self, kind: str) -> set[tuple[str, str]]:
        table = self.objects if kind in VOICEOP_KINDS else self.children
        return set(table[kind])

    def raw(self, kind: str, key: tuple[str, str]) -> Raw | None:
        if kind in VOICEOP_KINDS:
            seen = self.objects[kind].get(key)
            return None if seen is None else seen.raw
        return self.children[kind].get(key)

    # --- reading --------------------------------------------------------------------------

    def seen(self, kind: str, namespace: str, name: str) -> Seen | None:
        return self.objects[kind].get((namespace, name))

    def valid(self, kind: str) -> Iterable[CustomResource]:
        return (s.resource for s in self.objects[kind].values() if s.resource is not None)

    def regions(self) -> dict[str, Region]:
        return {r.name: r for r in self.valid("Region")}  # type: ignore[misc]

    def backends(self, namespace: str) -> dict[str, AIBackend]:
        return {b.name: b for b in self.valid("AIBackend") if b.namespace == namespace}  # type: ignore[misc]

    def agents(self, namespace: str | None = None) -> dict[tuple[str, str], VoiceAgent]:
        return {
            (a.namespace, a.name): a  # type: ignore[misc]
            for a in self.valid("VoiceAgent")
            if namespace is None or a.namespace == namespace
        }

    def endpoints(self, namespace: str) -> list[VoiceEndpoint]:
        return sorted(
            (e for e in self.valid("VoiceEndpoint") if e.namespace == namespace),  # type: ignore[misc]
            key=lambda e: e.name,
        )

    def endpoint_seen(self, namespace: str) -> list[Seen]:
        return sorted(
            (s for (ns, _), s in self.objects["VoiceEndpoint"].items() if ns == namespace),
            key=lambda s: s.name,
        )

    def children_of(self, namespace: str, agent: str) -> dict[tuple[str, str], Raw]:
        """Children labelled with the agent (and managed by voiceop), by (kind, name)."""
        return dict(self._by_agent.get((namespace, agent), {}))

    def child(self, kind: str, namespace: str, name: str) -> Raw | None:
        return self.children[kind].get((namespace, name))

    def inventory(self, namespace: str) -> Inventory:
        inventory = Inventory(regions=self.regions())
        inventory.backends[namespace] = self.backends(namespace)
        inventory.agents[namespace] = {name: a for (_, name), a in self.agents(namespace).items()}
        inventory.endpoints[namespace] = {e.name: e for e in self.endpoints(namespace)}
        return inventory
