"""What a handler of the emulator returns or raises, besides a JSON dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


class ApiError(Exception):
    """A REST error, sent as Databricks sends it: `{"error_code": code, "message": message}`.

    `body` replaces that JSON where an endpoint answers in another shape (the OAuth token
    endpoint's `{"error": ..., "error_description": ...}`).
    """

    def __init__(
        self, status: HTTPStatus | int, code: str, message: str, *, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = HTTPStatus(status), code, message
        self.body = body

    def payload(self) -> dict[str, Any]:
        return self.body if self.body is not None else {"error_code": self.code, "message": self.message}


@dataclass
class RawResponse:
    """A response that is not a JSON object: a file download, a HEAD's headers, a 204."""

    status: HTTPStatus = HTTPStatus.OK
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Request:
    """The request being handled, for handlers that need more than its parameters
    (raw body, headers). `WorkspaceEmulator.request` returns it on the handling thread."""

    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    principal: str | None  # who the bearer token belongs to; None on unauthenticated routes

    def header(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), default)
