"""The one module that talks to the Kubernetes API: get, list, apply, patch, delete, Events.

A small async client over aiohttp (kopf's own transport), built from the credentials kopf
logs in with, so kubeconfig and in-cluster credentials work the same. Every request is counted
by verb and code in the operator's metrics. Transient answers (429, 5xx, a dropped connection)
are retried here, in one place: a few times, with jittered backoff, after Retry-After when the
server gives one. A 409 Conflict is not transient: the same body conflicts again, so it goes
back to the caller, which re-reads the object and recomputes.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import datetime
import json
import logging
import os
import random
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from voiceop import metrics
from voiceop.api.kinds import KINDS, Kind

logger = logging.getLogger("voiceop")

FIELD_MANAGER = "voiceop"
# Co-owns a Deployment's replicas when voiceop's own manager stops setting them (see agents.py).
HANDOVER_MANAGER = "voiceop-handover"
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})
RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)
LIST_CHUNK = 500  # items per list request, as client-go's pager asks by default
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
RETRY_AFTER_CAP_SECONDS = 10.0


def retry_delay(base: float, retry_after: str | None, jitter: float) -> float:
    """Seconds to wait before a retry: Retry-After if the server said (capped), else `base`
    spread by `jitter` in [0, 1) to 0.5x-1.5x, so that many clients do not retry in step."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), RETRY_AFTER_CAP_SECONDS)
        except ValueError:
            pass  # an HTTP date: not worth parsing for a few seconds' wait
    return base * (0.5 + jitter)


@dataclass(frozen=True)
class Connection:
    """Where the API is and who we are: from kubeconfig, in-cluster files, or given (tests)."""

    server: str
    token: str | None = None
    insecure: bool = False
    ca_path: str | None = None
    ca_data: str | bytes | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None
    certificate_data: str | bytes | None = None
    private_key_data: str | bytes | None = None


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class LoginError(RuntimeError):
    """No usable credentials: the message says where voiceop looked."""


def connection_from_environment() -> Connection:
    """Credentials as kubectl finds them: $KUBECONFIG (or ~/.kube/config), else in-cluster.

    For programs that do not run under kopf (the edge's sync sidecar); the operator logs in
    through kopf. Supports tokens, client certificates and CAs, inline or as files.
    """
    configured = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    path = Path(configured.split(os.pathsep)[0])
    if path.is_file():
        return connection_from_kubeconfig(path)
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT_DIR / "token"
    if host and port and token.is_file():
        server_host = f"[{host}]" if ":" in host else host
        return Connection(
            server=f"https://{server_host}:{port}",
            token=token.read_text().strip(),
            ca_path=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        )
    raise LoginError(f"no kubeconfig at {path} and not in a cluster (KUBERNETES_SERVICE_HOST unset)")


def connection_from_kubeconfig(path: Path) -> Connection:
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def named(section: str, name: str | None) -> dict[str, Any]:
        for entry in config.get(section) or []:
            if entry.get("name") == name:
                return dict(entry.get(section[:-1]) or {})
        raise LoginError(f"{path}: {section}: no entry named {name!r}")

    context = named("contexts", config.get("current-context"))
    cluster = named("clusters", context.get("cluster"))
    user = named("users", context.get("user")) if context.get("user") else {}

    def relative(value: str | None) -> str | None:
        return str((path.parent / value).resolve()) if value else None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(relative(user["tokenFile"]) or "").read_text().strip()
    return Connection(
        server=str(cluster.get("server")),
        token=token,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        ca_path=relative(cluster.get("certificate-authority")),
        ca_data=cluster.get("certificate-authority-data"),
        certificate_path=relative(user.get("client-certificate")),
        private_key_path=relative(user.get("client-key")),
        certificate_data=user.get("client-certificate-data"),
        private_key_data=user.get("client-key-data"),
    )


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _ssl_context(info: Connection) -> ssl.SSLContext | bool:
    """CA, client certificate, or no verification if asked."""
    if not str(info.server).startswith("https"):
        return False
    context = ssl.create_default_context()
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if info.ca_path:
        context.load_verify_locations(cafile=info.ca_path)
    elif info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        if "BEGIN CERTIFICATE" not in data:
            data = base64.b64decode(data).decode()
        context.load_verify_locations(cadata=data)
    certificate, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl wants files: write them where only this process can read them.
        directory = tempfile.mkdtemp(prefix="voiceop-")
        certificate, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, value in ((certificate, info.certificate_data), (key, info.private_key_data)):
            raw = value if isinstance(value, bytes) else value.encode()
            if b"-----BEGIN" not in raw:
                raw = base64.b64decode(raw)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as stream:
                stream.write(raw)
    if certificate and key:
        context.load_cert_chain(certificate, key)
    return context


class KubeClient:
    def __init__(
        self, server: str, *, token: str | None = None, ssl_context: ssl.SSLContext | bool = False
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self.sent: dict[str, int] = {}  # requests this client sent, by verb (the metrics are per process)

    @classmethod
    def connect(cls, info: Connection) -> KubeClient:
        return cls(info.server, token=info.token, ssl_context=_ssl_context(info))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=32)
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=connector, timeout=aiohttp.ClientTimeout(total=30)
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        retry: bool = True,
        accept: str | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept is not None:
            headers["Accept"] = accept
        delays = list(RETRY_DELAYS) if retry else []
        while True:
            started = time.perf_counter()
            self.sent[verb] = self.sent.get(verb, 0) + 1
            try:
                async with self._client().request(
                    method, self.server + path, params=params, data=data, headers=headers
                ) as response:
                    text = await response.text()
                    code = response.status
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as error:
                metrics.API_REQUESTS.labels(verb=verb, code="error").inc()
                if not delays:
                    raise ApiError(0, f"{method} {path}: {error}") from error
                await asyncio.sleep(retry_delay(delays.pop(0), None, random.random()))
                continue
            metrics.API_REQUESTS.labels(verb=verb, code=str(code)).inc()
            metrics.API_LATENCY.labels(verb=verb).observe(time.perf_counter() - started)
            if code < 400:
                return json.loads(text) if text else None
            if code in TRANSIENT_CODES and delays:
                await asyncio.sleep(retry_delay(delays.pop(0), retry_after, random.random()))
                continue
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise ApiError(code, message)

    # --- verbs ----------------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", kind.path(namespace, name), verb="get")
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    async def list(
        self, kind: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for chunk in self.list_chunks(kind, namespace, label_selector):
            items += chunk
        return items

    async def list_chunks(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        chunk_size: int = LIST_CHUNK,
        metadata_only: bool = False,
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """A list in chunks of `chunk_size` (limit and continue), as client-go's pager reads
        it: a caller that needs only part of each item holds one chunk at a time, not all.
        `metadata_only`: items with their metadata alone (PartialObjectMetadata, what
        client-go's metadata informers list), for a caller that needs only names."""
        params = {"limit": str(chunk_size), **({"labelSelector": label_selector} if label_selector else {})}
        accept = METADATA_ONLY if metadata_only else None
        while True:
            try:
                result = await self.request(
                    "GET", kind.path(namespace), verb="list", params=params, accept=accept
                )
            except ApiError as error:
                if error.code != 410 or "continue" not in params:
                    raise
                # The token outlived etcd's compaction: everything again in one list, as
                # client-go's pager falls back (the items before it come a second time).
                params = {k: v for k, v in params.items() if k not in ("limit", "continue")}
                continue
            # `or`: a PartialObjectMetadataList with nothing in it has `"items": null`.
            yield list(result.get("items") or [])
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return
            params = {**params, "continue": token}

    async def list_versioned(
        self, kind: Kind, namespace: str | None = None, params: Mapping[str, str] | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """Items and the list's resourceVersion, to watch from."""
        result = await self.request("GET", kind.path(namespace), verb="list", params=params)
        return list(result.get("items") or []), str(result["metadata"].get("resourceVersion", ""))

    async def watch(
        self,
        kind: Kind,
        namespace: str | None,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        timeout_seconds: int = 240,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events from `resource_version` until the server ends the stream.

        An ERROR event (410 Gone among them) ends it with ApiError: the caller lists again.
        """
        query = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        async with self._client().get(
            self.server + kind.path(namespace), params=query, timeout=timeout
        ) as response:
            metrics.API_REQUESTS.labels(verb="watch", code=str(response.status)).inc()
            if response.status >= 400:
                raise ApiError(response.status, await response.text())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(int(status.get("code", 500)), str(status.get("message", "watch error")))
                yield event

    async def apply(
        self, obj: dict[str, Any], manager: str = FIELD_MANAGER, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply, by default with voiceop's field manager taking over what others
        changed; without force, a field another manager owns with another value is a 409."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        return await self.request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            verb="apply",
            params={"fieldManager": manager, "force": "true" if force else "false"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def patch_status(self, kind: Kind, namespace: str | None, name: str, status: dict[str, Any]) -> Any:
        return await self.request(
            "PATCH",
            kind.path(namespace, name, "status"),
            verb="patch_status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def patch(
        self, kind: Kind, namespace: str | None, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> Any:
        return await self.request(
            "PATCH",
            kind.path(namespace, name, sub),
            verb="patch",
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        try:
            await self.request(
                "DELETE",
                kind.path(namespace, name),
                verb="delete",
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as error:
            if error.code != 404:
                raise

    async def post_event(self, raw: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event about `raw`: what `kubectl describe` shows. Never fails a reconcile."""
        meta = raw["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": raw.get("apiVersion"),
                "kind": raw["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "voiceop"},
            "reportingComponent": "voiceop.dev/operator",
            "reportingInstance": "voiceop",
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        try:
            await self.request(
                "POST", KINDS["Event"].path(namespace), verb="create_event", body=event, retry=False
            )
        except ApiError as error:
            logger.info("could not post event %s for %s: %s", reason, meta["name"], error)
