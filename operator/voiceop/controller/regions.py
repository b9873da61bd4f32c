"""A Region's status: its media pods and live calls, Ready unless in maintenance."""

from __future__ import annotations

from dataclasses import dataclass

from voiceop.api.v1alpha1 import Region
from voiceop.api.wire import MANAGED_BY, MANAGER, REGION_LABEL
from voiceop.controller.agents import SignalTable
from voiceop.controller.cache import ClusterCache
from voiceop.controller.status_writer import StatusWriter
from voiceop.status import region_status


@dataclass
class RegionReconciler:
    cache: ClusterCache
    status: StatusWriter
    signals: SignalTable

    async def reconcile(self, name: str) -> None:
        seen = self.cache.seen("Region", "", name)
        if seen is None:
            return
        if seen.resource is None:
            await self.status.refuse(seen, "InvalidSpec", seen.errors)
            return
        region: Region = seen.resource  # type: ignore[assignment]
        pods = sum(
            (raw.get("status") or {}).get("replicas", 0)
            for raw in self.cache.children["Deployment"].values()
            if (labels := raw["metadata"].get("labels") or {}).get(REGION_LABEL) == name
            and labels.get(MANAGED_BY) == MANAGER
        )
        calls = sum(s.active_calls for (_, _, region_name), s in self.signals.items() if region_name == name)
        live = dict(seen.raw.get("status") or {})
        status = region_status(
            live,
            seen.raw["metadata"].get("generation"),
            maintenance=region.spec.maintenance,
            pods=pods,
            calls=calls,
            now=self.status.clock(),
        )
        await self.status.write_if_changed(seen, status)
