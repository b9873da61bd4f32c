"""Writing status: only when it changed, through /status, keeping the cache in step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from voiceop.api import FieldError
from voiceop.api.kinds import KINDS
from voiceop.controller.cache import ClusterCache, Seen
from voiceop.kube import ApiError, KubeClient
from voiceop.status import describe, now_iso, refused_status, status_differs


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
            written = await self.client.patch_status(
                KINDS[seen.raw["kind"]], meta.get("namespace"), meta["name"], status
            )
        except ApiError as error:
            if error.code == 404:
                return False  # deleted meanwhile
            raise
        # The answer goes into the cache (unless a newer version arrived meanwhile): a second
        # pass before the watch event sees no change, and the watch event, a repeat of it,
        # wakes nothing.
        if isinstance(written, dict) and written.get("metadata"):
            self.cache.upsert({"kind": seen.raw["kind"], "apiVersion": seen.raw["apiVersion"], **written})
        return True

    async def refuse(self, seen: Seen, reason: str, errors: Iterable[FieldError]) -> None:
        """Ready=False naming the fields, and a Warning Event; nothing else is touched."""
        message = describe(list(errors))
        live = dict(seen.raw.get("status") or {})
        status = refused_status(live, seen.raw["metadata"].get("generation"), reason, message, self.clock())
        if await self.write_if_changed(seen, status):
            await self.client.post_event(seen.raw, "Warning", reason, message)
