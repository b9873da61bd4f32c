"""A stand-in for AI backends on 127.0.0.1, that a test or the demo makes healthy, slow or down.

It serves each backend name two paths: `/<name>/healthz` (what an AIBackend's healthCheck.url
names, for the operator's prober) and `/<name>/session` (what its endpoint names, for media-sim's
sessions: the answer time is the backend's time to first audio). Nothing but loopback is served.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

MODES = ("healthy", "slow", "down")


class BackendStandIn:
    def __init__(self, session_latency_s: float = 0.0) -> None:
        """`session_latency_s`: a healthy backend's time to first audio (the demo gives one)."""
        self.session_latency_s = session_latency_s
        self.mode = "healthy"  # for every backend, unless `modes` names it
        self.modes: dict[str, str] = {}
        self.delay_s = 0.0
        self.hits = 0  # health checks answered
        self.sessions = 0  # session exchanges answered
        self._server: Any = None

        async def answer(request: web.Request) -> web.Response:
            if request.match_info["what"] == "healthz":
                self.hits += 1
            else:
                self.sessions += 1
            mode = self.modes.get(request.match_info["name"], self.mode)
            if mode == "slow":
                await asyncio.sleep(self.delay_s)
            elif request.match_info["what"] == "session" and self.session_latency_s:
                await asyncio.sleep(self.session_latency_s)
            if mode == "down":
                return web.Response(status=503, text="down")
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/{name}/{what:healthz|session}", answer)
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def set(self, name: str, mode: str, delay_s: float | None = None) -> None:
        assert mode in MODES, mode
        self.modes[name] = mode
        if delay_s is not None:
            self.delay_s = delay_s

    def __enter__(self) -> BackendStandIn:
        self._thread.start()

        async def start() -> int:
            runner = web.AppRunner(self._app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._server = runner
            return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        self.port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def url(self, name: str) -> str:
        """The backend's health check (AIBackend spec.healthCheck.url)."""
        return f"http://127.0.0.1:{self.port}/{name}/healthz"

    def session_url(self, name: str) -> str:
        """The backend's endpoint (AIBackend spec.endpoint), as media-sim dials it."""
        return f"http://127.0.0.1:{self.port}/{name}/session"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
