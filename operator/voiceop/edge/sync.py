"""`voiceop edge sync`: keep Kamailio's tables in step with the cluster.

Watches the `voiceop-routes` ConfigMaps and the media endpoints (EndpointSlices, or Pods
where the cluster cannot publish pod IPs in EndpointSlices), and after each change (gathered
for DEBOUNCE_SECONDS) rewrites the files that changed, each whole, and reloads what they
feed over Kamailio's control socket: `dispatcher.reload` for the sets, `htable.reload` for
a table. Kamailio keeps serving from the old data until a reload succeeds; a reload refused
(the dispatcher's rate limit, Kamailio not up yet) is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voiceop.api.kinds import KINDS, Kind
from voiceop.api.wire import COMPONENT_LABEL, MANAGED_BY, MANAGER, ROUTES_CONFIGMAP
from voiceop.inputs.files import write_files
from voiceop.kube import ApiError, KubeClient, LoginError, connection_from_environment
from voiceop.render.edge.config import (
    DISPATCHER_LIST,
    TABLES,
    EdgeInputError,
    EdgeSettings,
    MediaEndpoint,
    build_tables,
    kamailio_cfg,
    routes_of_configmap,
    table_files,
)
from voiceop.render.edge.endpoints import from_endpointslice, from_pod

logger = logging.getLogger("voiceop.edge")
DEBOUNCE_SECONDS = 0.1
RELOAD_RETRY_SECONDS = 0.5
RELOAD_ATTEMPTS = 20
MEDIA_SELECTOR = f"{MANAGED_BY}={MANAGER},{COMPONENT_LABEL}=media"
ENDPOINTSLICE = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", "observed")
ROUTES_FIELD = f"metadata.name={ROUTES_CONFIGMAP}"
# What a change of each file needs Kamailio to do.
RELOADS: dict[str, list[str]] = {
    DISPATCHER_LIST: ["dispatcher.reload"],
    f"{TABLES}/numbers": ["htable.reload", "numbers"],
    f"{TABLES}/prefixes": ["htable.reload", "prefixes"],
    f"{TABLES}/routes": ["htable.reload", "routes"],
    f"{TABLES}/handoffs": ["htable.reload", "handoffs"],
}


class Kamailio:
    """Kamailio's control socket, through kamcmd."""

    def __init__(self, socket_path: str, kamcmd: str = "kamcmd") -> None:
        self.socket_path = socket_path
        self.kamcmd = kamcmd

    async def call(self, *command: str) -> tuple[bool, str]:
        process = await asyncio.create_subprocess_exec(
            self.kamcmd,
            "-s",
            f"unix:{self.socket_path}",
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode(errors="replace").strip()
        return process.returncode == 0 and not text.startswith("error"), text

    def identity(self) -> tuple[int, int] | None:
        """Which Kamailio is up: its control socket's inode and time (None: none is up)."""
        try:
            stat = os.stat(self.socket_path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns)

    async def reload(self, command: Sequence[str]) -> None:
        for attempt in range(RELOAD_ATTEMPTS):
            ok, text = await self.call(*command)
            if ok:
                return
            logger.info("%s refused (%s); again in %.1f s", " ".join(command), text, RELOAD_RETRY_SECONDS)
            if attempt + 1 < RELOAD_ATTEMPTS:
                await asyncio.sleep(RELOAD_RETRY_SECONDS)
        raise RuntimeError(f"kamailio refused {' '.join(command)} {RELOAD_ATTEMPTS} times: {text}")


class EdgeSync:
    def __init__(
        self,
        client: KubeClient,
        settings: EdgeSettings,
        kamailio: Kamailio | None,
        namespaces: Sequence[str] = (),
        endpoints_from: str = "endpointslices",
    ) -> None:
        self.client = client
        self.settings = settings
        self.kamailio = kamailio
        self.namespaces: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self.endpoint_kind = KINDS["Pod"] if endpoints_from == "pods" else ENDPOINTSLICE
        self.routes: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[tuple[str, str], list[MediaEndpoint]] = {}
        self.written: dict[str, str] = {}
        self.kamailio_seen: tuple[int, int] | None = None  # the Kamailio last fully reloaded
        self.mtimes: dict[str, int] = {}  # table file -> the mtime it was last given
        self.changed = asyncio.Event()
        self.listed: set[tuple[str, str | None]] = set()
        self.all_listed = asyncio.Event()
        self.synced = asyncio.Event()
        self.syncs = 0

    # --- state from watch events ------------------------------------------------------

    def _on_routes(self, event_type: str, configmap: dict[str, Any]) -> None:
        namespace = configmap["metadata"].get("namespace", "default")
        if event_type == "DELETED":
            self.routes.pop(namespace, None)
        else:
            try:
                self.routes[namespace] = routes_of_configmap(configmap)[1]
            except EdgeInputError as error:
                # Keep the last good table: a bad write must not empty the edge.
                logger.error("%s; keeping the previous routes of %s", error, namespace)
                return
        self.changed.set()

    def _on_endpoints(self, event_type: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        if event_type == "DELETED":
            self.endpoints.pop(key, None)
        else:
            try:
                found = (
                    from_pod(obj)
                    if obj.get("kind", self.endpoint_kind.kind) == "Pod"
                    else from_endpointslice(obj)
                )
            except EdgeInputError as error:
                logger.error("%s; ignoring it", error)
                found = []
            self.endpoints[key] = found
        self.changed.set()

    async def _follow(self, kind: Kind, namespace: str | None, params: dict[str, str], on_event: Any) -> None:
        """List, then watch from the list's version; list again after any end or error."""
        while True:
            try:
                items, version = await self.client.list_versioned(kind, namespace, params)
                seen = set()
                for item in items:
                    item.setdefault("kind", kind.kind)
                    seen.add((item["metadata"].get("namespace", "default"), item["metadata"]["name"]))
                    on_event("ADDED", item)
                self._forget_unseen(kind, namespace, seen)
                self.listed.add((kind.kind, namespace))
                if len(self.listed) == 2 * len(self.namespaces):
                    self.all_listed.set()
                async for event in self.client.watch(kind, namespace, version, params):
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        event["object"].setdefault("kind", kind.kind)
                        on_event(event["type"], event["object"])
            except (TimeoutError, ApiError, OSError, ValueError) as error:
                logger.warning("watch of %s ended (%s); listing again", kind.plural, error)
                await asyncio.sleep(0.5)

    def _forget_unseen(self, kind: Kind, namespace: str | None, seen: set[tuple[str, str]]) -> None:
        """After a relist, drop what was deleted while no watch was open."""
        if kind.kind == "ConfigMap":
            for ns in [
                ns for ns in self.routes if (namespace in (None, ns)) and (ns, ROUTES_CONFIGMAP) not in seen
            ]:
                self.routes.pop(ns)
                self.changed.set()
        else:
            for key in [k for k in self.endpoints if namespace in (None, k[0]) and k not in seen]:
                self.endpoints.pop(key)
                self.changed.set()

    # --- files and reloads --------------------------------------------------------------

    def desired_files(self) -> dict[str, str]:
        endpoints = [e for found in self.endpoints.values() for e in found]
        return table_files(build_tables(self.routes, endpoints, self.settings.handoff_gateway))

    async def write_and_reload(self) -> list[str]:
        """Files that changed since the last write, written, and what they feed reloaded."""
        try:
            desired = self.desired_files()
        except EdgeInputError as error:
            logger.error("%s; the edge keeps its current tables", error)
            return []
        changed = [name for name, text in desired.items() if self.written.get(name) != text]
        if not changed:
            return []
        directory = Path(self.settings.config_dir)
        write_files(directory, {name: desired[name] for name in changed})
        for name in changed:
            if name.startswith(f"{TABLES}/"):
                self._distinct_mtime(directory / name)
        self.written.update({name: desired[name] for name in changed})
        # A Kamailio that is not up yet, or has restarted, reads every file when it starts:
        # _reload_if_restarted reloads them all once it answers.
        running = self.kamailio.identity() if self.kamailio is not None else None
        if running is not None and running == self.kamailio_seen:
            await self._reload(changed)
        self.syncs += 1
        logger.info("edge tables synced (%s)", ", ".join(changed))
        return changed

    def _distinct_mtime(self, path: Path) -> None:
        """db_text reloads a table only when the file's mtime, in whole seconds, has changed:
        two writes within one second would leave Kamailio on the first. Each write gets a
        second of its own (at most a few seconds ahead of the clock under a burst of changes)."""
        previous = self.mtimes.get(path.name, 0)
        mtime = max(int(time.time()), previous + 1)
        os.utime(path, (mtime, mtime))
        self.mtimes[path.name] = mtime

    async def _reload(self, names: Sequence[str]) -> None:
        assert self.kamailio is not None
        for name in sorted(names, key=lambda n: n != DISPATCHER_LIST):  # sets before the routes naming them
            if name in RELOADS:
                await self.kamailio.reload(RELOADS[name])

    async def _reload_if_restarted(self) -> None:
        if self.kamailio is None or not self.written:
            return
        identity = self.kamailio.identity()
        if identity is not None and identity != self.kamailio_seen:
            await self._reload(list(self.written))
            self.kamailio_seen = identity
            logger.info("kamailio is up: every table reloaded")

    async def _writer(self) -> None:
        await self.all_listed.wait()  # never publish a half-listed cluster
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=0.5)
            if self.changed.is_set():
                await asyncio.sleep(DEBOUNCE_SECONDS)
                self.changed.clear()
                try:
                    await self.write_and_reload()
                except RuntimeError as error:  # Kamailio refused a reload: reload all when it answers
                    logger.error("%s", error)
                    self.kamailio_seen = None
                if not self.synced.is_set():
                    self.synced.set()
                    print("synced", flush=True)
            try:
                await self._reload_if_restarted()
            except RuntimeError as error:
                logger.error("%s", error)

    async def run(self) -> None:
        endpoint_params = {"labelSelector": MEDIA_SELECTOR}
        tasks = [asyncio.create_task(self._writer())]
        for namespace in self.namespaces:
            tasks.append(
                asyncio.create_task(
                    self._follow(
                        KINDS["ConfigMap"], namespace, {"fieldSelector": ROUTES_FIELD}, self._on_routes
                    )
                )
            )
            tasks.append(
                asyncio.create_task(
                    self._follow(self.endpoint_kind, namespace, endpoint_params, self._on_endpoints)
                )
            )
        self.changed.set()  # the first write, even of empty tables, once everything is listed
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()


def write_config(settings: EdgeSettings) -> None:
    """kamailio.cfg and empty tables, so that Kamailio can start before the first sync."""
    directory = Path(settings.config_dir)
    files = {"kamailio.cfg": kamailio_cfg(settings)}
    files.update({n: t for n, t in table_files(build_tables({}, [])).items() if not (directory / n).exists()})
    write_files(directory, files)


async def _main(
    settings: EdgeSettings, namespaces: Sequence[str], endpoints_from: str, kamcmd: str, once: bool
) -> int:
    client = KubeClient.connect(connection_from_environment())
    sync = EdgeSync(
        client,
        settings,
        None if once else Kamailio(settings.control_socket, kamcmd),
        namespaces,
        endpoints_from,
    )
    write_config(settings)
    runner = asyncio.create_task(sync.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.create_task(stop.wait()), runner]
    if once:
        waiters.append(asyncio.create_task(sync.synced.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await client.close()
    return 0


def main(
    settings: EdgeSettings, namespaces: Sequence[str], endpoints_from: str, kamcmd: str, once: bool
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main(settings, namespaces, endpoints_from, kamcmd, once))
    except LoginError as error:
        print(f"voiceop edge sync: {error}", flush=True)
        return 2
