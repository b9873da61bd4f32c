"""kopf registrations: where events come in. Each handler hands over to the runtime in a line.

kopf watches (with reconnects), logs in, coordinates replicas (peering) and serves liveness;
everything voiceop decides happens in `voiceop.controller`. Handlers go into a registry of
their own per runtime, so that tests can run several operators side by side.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import kopf

from voiceop.api.kinds import KINDS, VOICEOP_KINDS, WATCHED_CHILD_KINDS
from voiceop.api.wire import CHILD_SELECTOR, MANAGED_BY, MANAGER
from voiceop.controller.runtime import OperatorRuntime
from voiceop.kube import LIST_CHUNK, Connection


def build_registry(runtime: OperatorRuntime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """Credentials for kopf and for voiceop's own API client."""
        if runtime.connection_given and runtime.connection is not None:
            return kopf.ConnectionInfo(**dataclasses.asdict(runtime.connection))  # given (tests, demo)
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            runtime.logged_in(connection_of(info))
        return info

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        """Configure kopf, then start the reconciler and the backend prober."""
        configure(settings, runtime.peering_lifetime)
        await runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        """Stop the reconciler and close connections."""
        await runtime.stop()

    async def observe(event: kopf.RawEvent, **_: Any) -> None:
        """A watch event of voiceop's kinds or of a child: into the cache, then the queue.

        A coroutine, so that kopf runs it on the event loop: kopf runs plain functions in a
        thread pool, where this one once changed the cache while a reconcile iterated it
        ("dictionary changed size during iteration", found by benchmarks/chaos.py)."""
        runtime.observe(dict(event))

    for name in VOICEOP_KINDS:
        kind = KINDS[name]
        kopf.on.event(*kind.resource, id=f"observe-{kind.plural}", registry=registry)(observe)
    for name in WATCHED_CHILD_KINDS:
        kind = KINDS[name]
        kopf.on.event(
            *kind.resource, labels={MANAGED_BY: MANAGER}, id=f"observe-{kind.plural}", registry=registry
        )(observe)

    @kopf.on.probe(id="reconcile_queue", registry=registry)
    def reconcile_queue(**_: Any) -> int:
        """Keys waiting to be reconciled (in the liveness answer)."""
        return runtime.queue_depth()

    return registry


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled state: voiceop's handlers are event handlers only, which kopf calls for
    every event without a diff, yet kopf built one per event (a deep copy of the object, a
    second to drop its progress, and the diff): ~1 ms of each of the ~15,000 events of 300 agents
    converging. A handler on creation, update or resume would need it back (a test holds the
    registry to event handlers)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> None:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        pass


def configure(settings: kopf.OperatorSettings, peering_lifetime: float | None = None) -> None:
    """kopf configured once, at start-up."""
    if peering_lifetime is not None:
        # How long a replica that stopped heartbeating (SIGKILL, a lost node) holds the lead.
        settings.peering.lifetime = int(peering_lifetime)
    for name in WATCHED_CHILD_KINDS:
        # Children are watched through a server-side label selector: never every ConfigMap of a cluster.
        settings.watching.label_selectors[KINDS[name].resource] = CHILD_SELECTOR  # type: ignore[index]
    # kopf keeps nothing in our objects' status; anything it stores goes under voiceop.dev.
    settings.persistence.finalizer = "voiceop.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="voiceop.dev")
    settings.persistence.diffbase_storage = NoDiffBase()
    # voiceop posts its own Events for decisions; kopf's per-handler log events would be noise.
    settings.posting.enabled = False
    # Reconnect watches well before load balancers cut idle streams (often at 5-10 minutes).
    settings.watching.server_timeout = 240
    settings.watching.client_timeout = 270
    settings.watching.reconnect_backoff = 0.5
    settings.networking.request_timeout = 30
    # kopf keeps a worker task (queue, coroutines, contexts) per object until it has idled this
    # long (5 s by default). voiceop's handlers only hand events to its cache, so a worker is cheap
    # to start again; with 3,300 objects converging the idle workers set the operator's peak
    # memory, which CPython keeps: 300 agents converged at 176 MiB RSS with 5 s, 131 MiB with 0.5 s.
    settings.queueing.idle_timeout = 0.5
    # kopf's initial listings in chunks as well: a restart holds a chunk of a kind at a time.
    settings.watching.chunk_size = LIST_CHUNK


def connection_of(info: kopf.ConnectionInfo) -> Connection:
    """kopf's credentials as voiceop's client takes them."""
    return Connection(**{f.name: getattr(info, f.name) for f in dataclasses.fields(Connection)})
