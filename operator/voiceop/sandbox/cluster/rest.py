"""A small synchronous client of a real API server for the sandbox's own components (the
kubelet, the launcher): TLS with the sandbox CA, a client certificate or a bearer token."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Rest:
    def __init__(
        self,
        server: str,
        ca: Path,
        *,
        certificate: tuple[Path, Path] | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.context = ssl.create_default_context(cafile=str(ca))
        if certificate is not None:
            self.context.load_cert_chain(str(certificate[0]), str(certificate[1]))
        self.token = token
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        url = self.server + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", accept)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise RestError(error.code, message) from None
        except OSError as error:
            raise RestError(0, str(error)) from None
        return json.loads(text) if text and text[0] in "{[" else text

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> Any:
        try:
            return self.get(path)
        except RestError as error:
            if error.code == 404:
                return None
            raise

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def apply(self, path: str, body: Any, manager: str = "voiceop-sandbox", force: bool = True) -> Any:
        return self.request(
            "PATCH",
            path,
            body,
            params={"fieldManager": manager, "force": "true" if force else "false"},
            content_type="application/apply-patch+yaml",
        )

    def patch(self, path: str, body: Any, kind: str = "merge") -> Any:
        types = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }
        return self.request("PATCH", path, body, content_type=types[kind])

    def delete(self, path: str, body: Any = None) -> Any:
        try:
            return self.request("DELETE", path, body)
        except RestError as error:
            if error.code != 404:
                raise
            return None


class Discovery:
    """Plural and scope of any kind the server serves, looked up once per group version."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    def forget(self) -> None:
        self._resources.clear()  # after CRDs were applied

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        known = self._resources.get(api_version)
        if known is None or kind not in known:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            listing = self.rest.get(path)
            known = {
                r["kind"]: (r["name"], r["namespaced"]) for r in listing["resources"] if "/" not in r["name"]
            }
            self._resources[api_version] = known
        if kind not in known:
            raise RestError(404, f"{api_version} {kind} is not served")
        return known[kind]

    def path(self, obj: Mapping[str, Any], *, named: bool = True, namespace: str | None = None) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = self.resource(api_version, kind)
        meta = obj.get("metadata") or {}
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespaced:
            base += f"/namespaces/{meta.get('namespace') or namespace or 'default'}"
        base += f"/{plural}"
        return base + f"/{meta['name']}" if named else base


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"})


def request_counts(admin: Rest) -> dict[tuple[str, str, str], float]:
    """kube-apiserver's own apiserver_request_total, by (verb, resource, subresource)."""
    counts: dict[tuple[str, str, str], float] = {}
    for line in admin.get("/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.rindex("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts
