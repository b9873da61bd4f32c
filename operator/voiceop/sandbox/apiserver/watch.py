"""Watches of the loopback API server: one queue per watcher, filtered by namespace and selectors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voiceop.sandbox.apiserver.resources import ResourceType

Obj = dict[str, Any]


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    key: tuple[str, str]
    old: Obj | None
    new: Obj


@dataclass(eq=False)  # identity: each open stream is its own
class Watch:
    """One open watch stream; events are put on its queue from any thread."""

    rtype: ResourceType
    namespace: str | None
    labels: Callable[[Any], bool]
    fields: Callable[[Any], bool]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(obj)

    def event_for(self, event: WatchEvent) -> Obj | None:
        """What this watcher sees of an event: objects leaving its selector look deleted."""
        if event.key != self.rtype.key:
            return None
        was, now = self.matches(event.old), self.matches(event.new)
        if event.type == "DELETED":
            kind = "DELETED" if was or now else None
        elif was and now:
            kind = "MODIFIED"
        elif now:
            kind = "ADDED"
        elif was:
            kind = "DELETED"
        else:
            kind = None
        if kind is None:
            return None
        return {"type": kind, "object": self.rtype_view(event.new)}

    def rtype_view(self, obj: Obj) -> Obj:
        return {**obj, "apiVersion": self.rtype.api_version}

    def offer(self, message: Obj | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)
