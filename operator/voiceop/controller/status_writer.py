"""Writing status: only when it changed, through /status, keeping the cache in step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from voiceop.api import FieldError
from voiceop.api.kinds import KINDS
from voiceop.controller.cache import ClusterCache, Seen
from voiceop.kube import ApiError, KubeClient
from voiceop.status import describe, now_iso, refused_status, status_differs, without_nones


@dataclass
class StatusWriter:
    client: KubeClient
    cache: ClusterCache
    clock: Callable[[], str] = now_iso

    async def write_if_changed(self, seen: Seen, status: dict[str, Any]) -> bool:
        if not status_differs(seen.raw.get("status"), status):
            return False
        meta = seen.raw["metadata"]
        try:
            await self.client.patch_status(
                KINDS[seen.raw["kind"]], meta.get("namespace"), meta["name"], status
            )
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

    async def refuse(self, seen: Seen, reason: str, errors: Iterable[FieldError]) -> None:
        """Ready=False naming the fields, and a Warning Event; nothing else is touched."""
        message = describe(list(errors))
        live = dict(seen.raw.get("status") or {})
        status = refused_status(live, seen.raw["metadata"].get("generation"), reason, message, self.clock())
        if await self.write_if_changed(seen, status):
            await self.client.post_event(seen.raw, "Warning", reason, message)
