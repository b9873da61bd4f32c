"""The HTTP face of the loopback API server: discovery, CRUD, patches, watch streams."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from voiceop.sandbox.apiserver.resources import ResourceType
from voiceop.sandbox.apiserver.store import ApiError, Store
from voiceop.sandbox.apiserver.tables import metadata_only, table, wants_metadata_only, wants_table

VERSION_INFO = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0-voiceop-loopback",
    "platform": "linux/amd64",
}
WATCH_KEEPALIVE_SECONDS = 30
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Target:
    """What a resource URL points at."""

    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _error(error: ApiError) -> web.Response:
    return _json(error.status(), error.code)


def list_limit(value: str | None) -> int | None:
    """`limit` of a list: a positive number of items per chunk (0 or none: everything)."""
    if not value:
        return None
    try:
        limit = int(value)
    except ValueError:
        raise ApiError(400, "BadRequest", f"limit: not a number: {value!r}") from None
    return limit if limit > 0 else None


def continue_token(revision: int, after: tuple[str, str]) -> str:
    """Opaque to clients, as kube-apiserver's: where the next chunk starts, and the revision
    the first chunk was served at (every chunk reports it). Unlike kube-apiserver, later chunks
    are read from the current state, not a snapshot at that revision: a watch from it then
    replays the changes made meanwhile, which a client sees as updates of what it listed."""
    raw = json.dumps({"rv": revision, "start": list(after)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def read_continue(token: str | None) -> tuple[int | None, tuple[str, str] | None]:
    if not token:
        return None, None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = decoded["start"]
        return int(decoded["rv"]), (str(namespace), str(name))
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "BadRequest", "continue: not a token this server issued") from None


def _resource_list(group_version: str, types: list[ResourceType]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [entry for rtype in types for entry in rtype.discovery()],
    }


class ApiHandlers:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- discovery ------------------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return _json(VERSION_INFO)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def core_versions(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})

    async def core_resources(self, request: web.Request) -> web.Response:
        types = [t for t in self.store.resource_types() if t.group == ""]
        return _json(_resource_list("v1", types))

    async def groups(self, request: web.Request) -> web.Response:
        versions: dict[str, list[str]] = {}
        for rtype in self.store.resource_types():
            if rtype.group and rtype.version not in versions.setdefault(rtype.group, []):
                versions[rtype.group].append(rtype.version)
        groups = [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{group}/{vs[0]}", "version": vs[0]},
            }
            for group, vs in sorted(versions.items())
        ]
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def group_resources(self, request: web.Request) -> web.Response:
        group, version = request.match_info["group"], request.match_info["version"]
        types = [t for t in self.store.resource_types() if t.group == group and t.version == version]
        if not types:
            return _error(ApiError(404, "NotFound", f"no resources in {group}/{version}"))
        return _json(_resource_list(f"{group}/{version}", types))

    # --- resources ------------------------------------------------------------------------

    def _target(self, group: str, version: str, path: str) -> Target:
        parts = [p for p in path.split("/") if p]
        namespace = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            try:
                self.store.resource_type(group, version, parts[2])
                namespace, parts = parts[1], parts[2:]
            except ApiError:
                pass  # /namespaces/<name>/<subresource> of a Namespace itself
        if not parts or len(parts) > 3:
            raise ApiError(404, "NotFound", f"no such path: {path}")
        rtype = self.store.resource_type(group, version, parts[0])
        name = parts[1] if len(parts) > 1 else None
        subresource = parts[2] if len(parts) > 2 else None
        if subresource is not None and subresource not in rtype.subresources:
            raise ApiError(404, "NotFound", f"{rtype.plural} has no subresource {subresource}")
        return Target(rtype, namespace, name, subresource)

    async def core(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "", "v1", request.match_info["path"])

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self._dispatch(request, info["group"], info["version"], info["path"])

    async def _dispatch(
        self, request: web.Request, group: str, version: str, path: str
    ) -> web.StreamResponse:
        try:
            target = self._target(group, version, path)
            verb = self._verb(request, target)
            self.store.count_request(verb, request.path)
            injected = self.store.random_fault(verb)
            if injected == self.store.DROPPED:
                assert request.transport is not None
                request.transport.close()  # no answer at all: the client sees the connection go
                return web.Response(status=500)
            if injected is not None:
                reason = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError"}.get(
                    injected, "Error"
                )
                response = _error(
                    ApiError(injected, reason, f"injected {injected} for {verb} {request.path}")
                )
                if injected == 429:
                    response.headers["Retry-After"] = "1"
                return response
            if verb not in ("get", "list", "watch"):
                fault = self.store.take_fault(request.method, target.rtype.plural)
                if fault is not None:
                    raise fault
            if verb == "watch":
                return await self._watch(request, target)
            return await self._handle(request, verb, target)
        except ApiError as error:
            return _error(error)

    @staticmethod
    def _verb(request: web.Request, target: Target) -> str:
        method = request.method
        if method == "GET":
            if target.name is not None:
                return "get"
            return "watch" if request.query.get("watch") in ("true", "1") else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, "unknown"
        )

    async def _body(self, request: web.Request) -> Any:
        text = await request.text()
        if not text:
            return {}
        try:
            return json.loads(text)  # JSON is also what most clients send as apply-patch+yaml
        except ValueError as error:
            if request.content_type.startswith("application/apply-patch+yaml"):
                try:
                    return yaml.load(text, Loader=_YAML_LOADER)
                except yaml.YAMLError as yaml_error:
                    raise ApiError(400, "BadRequest", f"cannot decode body: {yaml_error}") from None
            raise ApiError(400, "BadRequest", f"cannot decode body: {error}") from None

    async def _handle(self, request: web.Request, verb: str, t: Target) -> web.Response:
        store, query = self.store, request.query
        if verb == "list":
            limit, (first_revision, after) = (
                list_limit(query.get("limit")),
                read_continue(query.get("continue")),
            )
            items, revision = store.list(
                t.rtype,
                t.namespace,
                query.get("labelSelector"),
                query.get("fieldSelector"),
                after=after,
                limit=None if limit is None else limit + 1,
            )
            revision = first_revision or revision
            list_meta: dict[str, Any] = {"resourceVersion": str(revision)}
            if limit is not None and len(items) > limit:
                items = items[:limit]
                last = items[-1]["metadata"]
                list_meta["continue"] = continue_token(revision, (last.get("namespace") or "", last["name"]))
            if wants_table(request.headers.get("Accept", "")):
                # kubectl pages its tables too: the continue token goes with them.
                return _json({**table(t.rtype, items, str(revision)), "metadata": list_meta})
            if wants_metadata_only(request.headers.get("Accept", "")):
                return _json(
                    {
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": list_meta,
                        # As kube-apiserver: null, not [], when there is nothing (its Go
                        # type has no omitempty and a nil slice); a client must take both.
                        "items": [metadata_only(i) for i in items] or None,
                    }
                )
            if t.rtype.schema is None:
                # As kube-apiserver: a built-in kind's list items carry no apiVersion or kind.
                items = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
            return _json(
                {
                    "kind": f"{t.rtype.kind}List",
                    "apiVersion": t.rtype.api_version,
                    "metadata": list_meta,
                    "items": items,
                }
            )
        if verb == "create":
            if t.name is not None:
                raise ApiError(405, "MethodNotAllowed", "POST goes to the collection")
            return _json(store.create(t.rtype, t.namespace, await self._body(request)), 201)
        assert t.name is not None
        if verb == "get":
            if t.subresource == "scale":
                return _json(store.scale(t.rtype, t.namespace, t.name))
            obj = store.get(t.rtype, t.namespace, t.name)
            if t.subresource is None and wants_table(request.headers.get("Accept", "")):
                return _json(table(t.rtype, [obj], obj["metadata"]["resourceVersion"]))
            return _json(obj)
        if verb == "update":
            return _json(
                store.replace(t.rtype, t.namespace, t.name, await self._body(request), t.subresource)
            )
        if verb == "patch":
            existed = self._exists(t)
            result = store.patch(
                t.rtype,
                t.namespace,
                t.name,
                request.content_type,
                await self._body(request),
                subresource=t.subresource,
                field_manager=query.get("fieldManager"),
                force=query.get("force") == "true",
            )
            return _json(result, 200 if existed else 201)
        if verb == "delete":
            return _json(store.delete(t.rtype, t.namespace, t.name))
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported")

    def _exists(self, t: Target) -> bool:
        try:
            self.store.get(t.rtype, t.namespace, t.name or "")
            return True
        except ApiError:
            return False

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        query = request.query
        loop = asyncio.get_running_loop()
        try:
            watch = self.store.open_watch(
                t.rtype,
                t.namespace,
                query.get("labelSelector"),
                query.get("fieldSelector"),
                query.get("resourceVersion"),
                loop,
                send_initial_events=query.get("sendInitialEvents") == "true",
            )
        except ApiError as error:
            if error.code != 410:
                raise
            # As kube-apiserver does: an expired resourceVersion is an ERROR event on a 200 stream.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            event = {"type": "ERROR", "object": error.status()}
            await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
            return response
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = loop.time() + timeout if timeout else None
        try:
            while True:
                remaining = deadline - loop.time() if deadline else WATCH_KEEPALIVE_SECONDS
                if remaining <= 0:
                    break
                try:
                    message = await asyncio.wait_for(watch.queue.get(), timeout=remaining)
                except TimeoutError:
                    if deadline:
                        break
                    continue
                if message is None:  # dropped by the server
                    break
                await response.write(json.dumps(message).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.close_watch(watch)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response


def build_app(store: Store) -> web.Application:
    handlers = ApiHandlers(store)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/version", handlers.version)
    for probe in ("/healthz", "/readyz", "/livez"):
        app.router.add_get(probe, handlers.healthz)
    app.router.add_get("/api", handlers.core_versions)
    app.router.add_get("/api/v1", handlers.core_resources)
    app.router.add_get("/apis", handlers.groups)
    app.router.add_get("/apis/{group}/{version}", handlers.group_resources)
    app.router.add_route("*", "/api/v1/{path:.+}", handlers.core)
    app.router.add_route("*", "/apis/{group}/{version}/{path:.+}", handlers.grouped)
    return app
