"""A Kubernetes API server on 127.0.0.1 that keeps state: for tests and `voiceop demo` only.

It serves discovery, CRUD, patches (merge, JSON, apply), status and scale subresources, watch
streams, resourceVersion conflicts, finalizers and ownerReference garbage collection, over
real HTTP, so the operator runs against it exactly as against a cluster. It is not a cluster:
nothing schedules pods, nothing authenticates, and it forgets everything when it stops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from voiceop.sandbox.apiserver.http import build_app
from voiceop.sandbox.apiserver.store import ApiError, Store

__all__ = ["ApiError", "LoopbackApiServer", "Store"]


class LoopbackApiServer:
    """Runs the server in a thread of its own; `with LoopbackApiServer() as server: ...`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the loopback API server listens on loopback addresses only")
        self.host = host
        self.port = port
        self.store = Store()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackApiServer:
        self._thread = threading.Thread(target=self._serve, name="loopback-apiserver", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise RuntimeError("loopback API server failed to start") from self._error
        return self

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._listen())
        except BaseException as error:  # reported to start()
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._shutdown())
        self._loop.close()

    async def _listen(self) -> None:
        self._runner = web.AppRunner(build_app(self.store), handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None)
        assert sockets, "the site did not bind"
        self.port = sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def restart(self, down_seconds: float = 2.0) -> None:
        """As an API server restart: every connection and watch dropped, nothing answers for a
        while, then the same state is served again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self._loop, self._thread, self._runner, self._error = None, None, None, None
        self._ready = threading.Event()
        self.start()

    def __enter__(self) -> LoopbackApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
            "users": [{"name": "loopback", "user": {"token": "loopback"}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "loopback"}}],
            "current-context": "loopback",
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.kubeconfig()))
        return path

    # Conveniences for tests and the demo: direct, synchronous access to the state.

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object by its apiVersion and kind, like `kubectl apply`."""
        rtype = self.store.type_of_kind(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata", {})
        try:
            return self.store.patch(
                rtype,
                meta.get("namespace"),
                meta["name"],
                "application/apply-patch+yaml",
                obj,
                field_manager="kubectl",
            )
        except ApiError:
            raise
