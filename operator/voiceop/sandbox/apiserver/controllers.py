"""Stand-ins for the controllers and kubelets a cluster has, so that status moves.

`DeploymentController` gives every Deployment the status its pods would give it once they
run: replicas as asked (1 when unset), all ready, unless a test holds some at not-ready.
It stands for kube-controller-manager and the kubelets together; it runs no container.
"""

from __future__ import annotations

from typing import Any

from voiceop.sandbox.apiserver.store import ApiError, Store, WatchEvent

DEPLOYMENTS = ("apps", "deployments")


class DeploymentController:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.rtype = store.resource_type("apps", "v1", "deployments")
        # (namespace, name) -> how many pods are ready at most (0: none).
        self.ready_limit: dict[tuple[str, str], int] = {}
        store.listeners.append(self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        if event.key == DEPLOYMENTS and event.type != "DELETED":
            self._update(event.new)

    def _update(self, deployment: dict[str, Any]) -> None:
        meta = deployment["metadata"]
        key = (meta["namespace"], meta["name"])
        replicas = (deployment.get("spec") or {}).get("replicas", 1)
        ready = min(replicas, self.ready_limit.get(key, replicas))
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if ready < replicas:
            status["unavailableReplicas"] = replicas - ready
        if deployment.get("status") == status:
            return
        try:
            self.store.replace(
                self.rtype, key[0], key[1], {**deployment, "status": status}, subresource="status"
            )
        except ApiError:
            pass  # deleted meanwhile

    def limit_ready(self, namespace: str, name: str, ready: int | None) -> None:
        """Hold a Deployment at `ready` ready pods at most (None: release)."""
        if ready is None:
            self.ready_limit.pop((namespace, name), None)
        else:
            self.ready_limit[(namespace, name)] = ready
        try:
            self._update(self.store.get(self.rtype, namespace, name))
        except ApiError:
            pass
