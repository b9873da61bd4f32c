"""Errors of the loopback API server, answered as Kubernetes Status objects."""

from __future__ import annotations

from typing import Any

from voiceop.sandbox.apiserver.resources import ResourceType

Obj = dict[str, Any]


class ApiError(Exception):
    """An error answer: HTTP code, Kubernetes reason, message, optional field causes."""

    def __init__(
        self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes:
            body["details"] = {"causes": self.causes}
        return body


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.plural}.{rtype.group or "core"} "{name}" not found')
