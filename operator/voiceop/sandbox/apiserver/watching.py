"""Opening watches on the loopback API server: replay from a resourceVersion, WatchList, 410."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

from voiceop.sandbox.apiserver.errors import ApiError
from voiceop.sandbox.apiserver.resources import ResourceType
from voiceop.sandbox.apiserver.selectors import SelectorError, parse_field_selector, parse_selector
from voiceop.sandbox.apiserver.watch import Watch, WatchEvent

Obj = dict[str, Any]


class Watching:
    """Mixed into the Store: the state it reads is the Store's own."""

    _lock: threading.RLock
    _watches: set[Watch]
    _log: Any  # deque[WatchEvent]
    _last_revision: int

    def _table(self, rtype: ResourceType) -> dict[tuple[str, str], Obj]:
        raise NotImplementedError

    def open_watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        since: str | None,
        loop: asyncio.AbstractEventLoop,
        *,
        send_initial_events: bool = False,
    ) -> Watch:
        """A watch from `since`, or from now with every current object ADDED first.

        With `send_initial_events` (a WatchList, as kubectl and informers since 1.27 ask for),
        the current objects come first and then a BOOKMARK annotated
        `k8s.io/initial-events-end`, as a real API server sends.
        """
        try:
            watch = Watch(
                rtype, namespace, parse_selector(label_selector), parse_field_selector(field_selector), loop
            )
        except (SelectorError, ValueError) as error:
            raise ApiError(400, "BadRequest", str(error)) from None
        with self._lock:
            if since in (None, "", "0") or send_initial_events:
                for _, obj in sorted(self._table(rtype).items()):
                    if watch.matches(obj):
                        watch.queue.put_nowait(
                            {"type": "ADDED", "object": watch.rtype_view(copy.deepcopy(obj))}
                        )
                if send_initial_events:
                    watch.queue.put_nowait(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "apiVersion": rtype.api_version,
                                "kind": rtype.kind,
                                "metadata": {
                                    "resourceVersion": str(self._last_revision),
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        }
                    )
            else:
                revision = int(since)
                oldest = self._log[0].resource_version if self._log else self._last_revision + 1
                if revision < oldest - 1 and revision < self._last_revision:
                    raise ApiError(410, "Expired", f"too old resource version: {revision} ({oldest - 1})")
                for event in self._log:
                    if event.resource_version > revision:
                        message = watch.event_for(event)
                        if message is not None:
                            watch.queue.put_nowait(copy.deepcopy(message))
            self._watches.add(watch)
            return watch

    def close_watch(self, watch: Watch) -> None:
        with self._lock:
            self._watches.discard(watch)


__all__ = ["WatchEvent", "Watching"]
