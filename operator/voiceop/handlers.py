"""kopf registrations: where events come in. Each handler hands over to the runtime in a line.

kopf watches (with reconnects), logs in, coordinates replicas (peering) and serves liveness;
everything voiceop decides happens in `voiceop.controller`. Handlers go into a registry of
their own per runtime, so that tests can run several operators side by side.
"""

from __future__ import annotations

from typing import Any

import kopf

from voiceop.controller.runtime import CHILD_RESOURCES, VOICEOP_RESOURCES, OperatorRuntime
from voiceop.render.metadata import MANAGED_BY


def build_registry(runtime: OperatorRuntime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """Credentials for kopf and for voiceop's own API client."""
        return runtime.login(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        """Configure kopf, then start the reconciler and the backend prober."""
        runtime.configure(settings)
        await runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        """Stop the reconciler and close connections."""
        await runtime.stop()

    def observe(event: kopf.RawEvent, **_: Any) -> None:
        """A watch event of voiceop's kinds or of a child: into the cache, then the queue."""
        runtime.observe(dict(event))

    for resource in VOICEOP_RESOURCES:
        kopf.on.event(*resource, id=f"observe-{resource[-1]}", registry=registry)(observe)
    for resource in CHILD_RESOURCES:
        kopf.on.event(
            *resource, labels={MANAGED_BY: "voiceop"}, id=f"observe-{resource[-1]}", registry=registry
        )(observe)

    @kopf.on.probe(id="reconcile_queue", registry=registry)
    def reconcile_queue(**_: Any) -> int:
        """Keys waiting to be reconciled (in the liveness answer)."""
        return runtime.queue_depth()

    return registry
