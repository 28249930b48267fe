"""OAuth machine-to-machine (a service principal's client id and secret), as databricks-sdk's
`oauth-m2m` credentials provider uses it.

The sdk first reads `GET {host}/oidc/.well-known/oauth-authorization-server` (no credentials),
then posts `grant_type=client_credentials&scope=all-apis` to the `token_endpoint` it names, with
the client id and secret as HTTP Basic credentials (or as form fields). The emulator answers
with an opaque bearer token that expires after `oauth_token_seconds` and is then accepted like
the personal access token; every token issued is recorded in `tokens_issued`. A wrong client or
secret is a 401 with OAuth's error JSON (`{"error": "invalid_client", ...}`).

Not emulated: JWT access tokens (Databricks issues JWTs; these are opaque), scopes other than
accepted-and-recorded, user-to-machine flows (authorization code, PKCE), token federation,
account-level endpoints.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .errors import ApiError

if TYPE_CHECKING:
    from .workspace import WorkspaceEmulator

WELL_KNOWN = "/oidc/.well-known/oauth-authorization-server"
TOKEN_PATH = "/oidc/v1/token"
AUTHORIZE_PATH = "/oidc/v1/authorize"


@dataclass(frozen=True)
class IssuedToken:
    client_id: str
    access_token: str
    scope: str
    issued_at: float  # time.time()
    expires_at: float

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


def oauth_error(status: HTTPStatus, error: str, description: str) -> ApiError:
    return ApiError(status, error, description, body={"error": error, "error_description": description})


class OAuthApi:
    service_principals: dict[str, str]
    tokens_issued: list[IssuedToken]
    oauth_token_seconds: float
    _oauth_tokens: dict[str, IssuedToken]

    def add_service_principal(self, client_id: str, client_secret: str) -> None:
        self.service_principals[client_id] = client_secret

    def oidc_configuration(self: WorkspaceEmulator, p: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "issuer": f"{self.host}/oidc",
            "authorization_endpoint": f"{self.host}{AUTHORIZE_PATH}",
            "token_endpoint": f"{self.host}{TOKEN_PATH}",
            "jwks_uri": f"{self.host}/oidc/v1/keys",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["code"],
            "scopes_supported": ["all-apis", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def oauth_token(self: WorkspaceEmulator, p: Mapping[str, Any]) -> dict[str, Any]:
        client_id, client_secret = p.get("client_id"), p.get("client_secret")
        authorization = self.request.header("Authorization") or ""
        if authorization.startswith("Basic "):
            try:
                decoded = base64.b64decode(authorization[len("Basic ") :], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise oauth_error(HTTPStatus.BAD_REQUEST, "invalid_request", "Malformed Basic credentials") from None
            user, _, password = decoded.partition(":")
            client_id, client_secret = user, password  # requests sends them as they are, not form-encoded
        if p.get("grant_type") != "client_credentials":
            raise oauth_error(
                HTTPStatus.BAD_REQUEST, "unsupported_grant_type", f"grant_type {p.get('grant_type')!r} is not supported"
            )
        expected = self.service_principals.get(client_id or "")
        if expected is None or not hmac.compare_digest(expected.encode(), (client_secret or "").encode()):
            raise oauth_error(HTTPStatus.UNAUTHORIZED, "invalid_client", "Client authentication failed")
        now = time.time()
        issued = IssuedToken(
            client_id,
            f"emu-oauth-{secrets.token_urlsafe(32)}",
            p.get("scope") or "all-apis",
            now,
            now + self.oauth_token_seconds,
        )
        with self._lock:
            self._oauth_tokens[issued.access_token] = issued
            self.tokens_issued.append(issued)
        return {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": int(self.oauth_token_seconds),
            "scope": issued.scope,
        }

    def principal_of(self, authorization: str | None) -> str:
        """Who a request's bearer token belongs to: "token" (the personal access token) or
        "sp:<client id>"; 401 for anything else, an expired OAuth token included."""
        if authorization and authorization.startswith("Bearer "):
            value = authorization[len("Bearer ") :]
            if self.token and hmac.compare_digest(value.encode(), self.token.encode()):
                return "token"
            issued = self._oauth_tokens.get(value)
            if issued is not None:
                if issued.expired:
                    raise ApiError(
                        HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", "Invalid access token: the OAuth token has expired."
                    )
                return f"sp:{issued.client_id}"
        raise ApiError(HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", "Invalid access token.")


ROUTES = {
    ("GET", WELL_KNOWN): OAuthApi.oidc_configuration,
    ("POST", TOKEN_PATH): OAuthApi.oauth_token,
}
PUBLIC_PATHS = frozenset({WELL_KNOWN, TOKEN_PATH})
