"""A namespace's routing table (what a SIP edge reads) and its endpoints' status."""

from __future__ import annotations

from dataclasses import dataclass

from voiceop.api.kinds import KINDS
from voiceop.api.references import endpoint_reference_errors
from voiceop.api.v1alpha1 import VoiceAgent, VoiceEndpoint
from voiceop.api.wire import ROUTES_CONFIGMAP
from voiceop.controller.cache import ClusterCache, Seen
from voiceop.controller.diff import stamped, up_to_date
from voiceop.controller.status_writer import StatusWriter
from voiceop.kube import KubeClient
from voiceop.render.names import media_name
from voiceop.render.routes import routes_configmap, routes_for
from voiceop.routing import Route
from voiceop.status import endpoint_status


@dataclass
class RoutesReconciler:
    client: KubeClient
    cache: ClusterCache
    status: StatusWriter

    async def reconcile(self, namespace: str) -> None:
        """The routing table first, then endpoint status."""
        regions = self.cache.regions()
        agents = {name: agent for (_, name), agent in self.cache.agents(namespace).items()}
        valid: list[tuple[Seen, VoiceEndpoint]] = []
        routes: dict[str, list[Route]] = {}
        for seen in self.cache.endpoint_seen(namespace):
            if seen.raw["metadata"].get("deletionTimestamp"):
                continue
            if seen.resource is None:
                await self.status.refuse(seen, "InvalidSpec", seen.errors)
                continue
            endpoint: VoiceEndpoint = seen.resource  # type: ignore[assignment]
            missing = endpoint_reference_errors(endpoint, agents)
            if missing:
                await self.status.refuse(seen, "MissingReference", missing)
                continue
            agent = agents[endpoint.spec.agent_ref.name]
            routes[endpoint.name] = routes_for(
                endpoint, agent, regions, self._regions_without_ready_pods(agent)
            )
            valid.append((seen, endpoint))
        live = self.cache.child("ConfigMap", namespace, ROUTES_CONFIGMAP)
        if valid:
            desired = stamped(routes_configmap(namespace, [e for _, e in valid], routes, agents))
            if not up_to_date(desired, live):
                self.cache.upsert(await self.client.apply(desired))
        elif live is not None:
            await self.client.delete(KINDS["ConfigMap"], namespace, ROUTES_CONFIGMAP)
            self.cache.remove(live)
        for seen, endpoint in valid:
            live_status = dict(seen.raw.get("status") or {})
            wire = [r.to_wire() for r in routes[endpoint.name]]
            status = endpoint_status(
                live_status, seen.raw["metadata"].get("generation"), wire, self.status.clock()
            )
            await self.status.write_if_changed(seen, status)

    def _regions_without_ready_pods(self, agent: VoiceAgent) -> set[str]:
        def ready(region: str) -> int:
            deployment = self.cache.child("Deployment", agent.namespace, media_name(agent.name, region)) or {}
            return int((deployment.get("status") or {}).get("readyReplicas") or 0)

        return {r.name for r in agent.spec.regions if not ready(r.name)}
