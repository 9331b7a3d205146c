"""A SMART App Launch 2.x authorization server in front of the local FHIR server, for the
browser tests (loopback only; everything in memory). Built on authlib's OAuth 2.0 authorization
server (authorization code grant, PKCE S256 required), with SMART's parts added:

    {base}/fhir/.well-known/smart-configuration   SMART discovery
    {base}/fhir/*                                 the FHIR server, a Bearer token required
    {base}/auth/authorize                         auto-approves (no login page); `launch` ->
                                                  patient (EHR launch), or the standalone patient
    {base}/auth/token                             the token, with the launch context (`patient`)

`aud` must be the FHIR base (SMART requires it). Tokens are checked by resource type against
their scopes (coarse: SMART v1 and v2 forms). Not for anything but tests.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl

import httpx
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_SCOPE = re.compile(
    r"^(openid|fhirUser|profile|launch|launch/patient|offline_access|online_access"
    r"|(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?))$"
)
_WRITE = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}
_HOP = {
    "host", "authorization", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
    "content-length", "accept-encoding", "origin", "referer", "cookie",
}  # fmt: skip


@dataclass(frozen=True)
class AuthzConfig:
    base: str  # http://127.0.0.1:<port>: {base}/fhir is the iss
    upstream: str  # the FHIR server behind it
    app_origin: str  # the SMART app's origin (CORS)
    redirect_uri: str  # the app's registered redirect URI (exact match)
    client_id: str = "sacral-bsi-smart-app"
    launches: dict[str, str] = field(default_factory=dict)  # launch value -> patient id
    standalone_patient: str | None = None

    @property
    def fhir_base(self) -> str:
        return self.base + "/fhir"


class _Client(ClientMixin):
    def __init__(self, client_id: str, redirect_uri: str) -> None:
        self.client_id, self.redirect_uri = client_id, redirect_uri

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: Collection[str] | str) -> str:
        asked = scope.split() if isinstance(scope, str) else list(scope)
        return " ".join(s for s in asked if _SCOPE.match(s))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"  # a public client

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    context: dict[str, str]
    code_challenge: str | None
    code_challenge_method: str | None
    issued: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> int:
        return int(self.issued)

    def is_expired(self) -> bool:
        return time.time() > self.issued + 60


@dataclass(frozen=True)
class _Token:
    scope: str
    context: dict[str, str]
    expires_at: float


class _Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._list: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._list[key].append(value)
        self._data = {k: v[0] for k, v in self._list.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._list


class _Request(OAuth2Request):
    def __init__(
        self, method: str, url: str, headers: dict[str, str], query: list[Any], form: list[Any]
    ) -> None:
        super().__init__(method=method, uri=url, headers=headers)
        self._args, self._form = dict(query), dict(form)
        self.payload = _Payload(list(query) + list(form))

    @property
    def args(self) -> dict[str, str | None]:
        return dict(self._args)

    @property
    def form(self) -> dict[str, str]:
        return self._form


def build_app(config: AuthzConfig) -> Starlette:
    """The authorization server and FHIR proxy, as an ASGI app (run it with uvicorn)."""
    client = _Client(config.client_id, config.redirect_uri)
    codes: dict[str, _Code] = {}
    tokens: dict[str, _Token] = {}
    user = object()
    upstream = config.upstream.rstrip("/")
    http = httpx.AsyncClient(timeout=30)

    class Server(AuthorizationServer):
        def query_client(self, client_id: str) -> ClientMixin | None:  # type: ignore[override]
            return client if client_id == client.client_id else None

        def save_token(self, token: dict[str, Any], request: Any) -> None:
            context = request.authorization_code.context
            tokens[token["access_token"]] = _Token(
                token["scope"], context, time.time() + token["expires_in"]
            )
            token.update(context)  # SMART: the launch context rides in the token response
            token["need_patient_banner"] = True

        def create_oauth2_request(self, request: Any) -> Any:
            return request  # built by the route (the form must be awaited)

        def create_json_request(self, request: Any) -> Any:
            raise NotImplementedError

        def handle_response(self, status: int, body: Any, headers: Any) -> Response:
            if isinstance(body, dict):
                return JSONResponse(body, status_code=status, headers=dict(headers))
            return Response(body, status_code=status, headers=dict(headers))

        def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
            return None

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 - as authlib declares it

        def validate_authorization_request(self) -> str:
            redirect_uri: str = super().validate_authorization_request()
            assert self.request.payload is not None
            data = self.request.payload.data
            if (data.get("aud") or "").rstrip("/") != config.fhir_base:
                raise InvalidRequestError(
                    f"'aud' must be {config.fhir_base}", redirect_uri=redirect_uri
                )
            if data.get("code_challenge_method") != "S256":
                raise InvalidRequestError("PKCE S256 is required", redirect_uri=redirect_uri)
            launch = data.get("launch")
            if launch:
                patient = config.launches.get(launch)
                if patient is None:
                    raise InvalidRequestError("Unknown 'launch' value", redirect_uri=redirect_uri)
            else:
                patient = config.standalone_patient
                # Standalone: nothing to grant for "launch".
                self.request.scope = " ".join(
                    s for s in self.request.scope.split() if s != "launch"
                )
            vars(self.request)["smart_context"] = {"patient": patient} if patient else {}
            return redirect_uri

        def save_authorization_code(self, code: str, request: Any) -> None:
            data = request.payload.data
            codes[code] = _Code(
                code,
                request.client.client_id,
                data.get("redirect_uri"),
                request.scope,
                vars(request)["smart_context"],
                data.get("code_challenge"),
                data.get("code_challenge_method"),
            )

        def query_authorization_code(self, code: str, asking: ClientMixin) -> _Code | None:
            found = codes.get(code)
            if found and found.client_id == asking.get_client_id() and not found.is_expired():
                return found
            return None

        def delete_authorization_code(self, authorization_code: _Code) -> None:
            codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: _Code) -> object:
            return user

    server = Server()
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: 3600,
        ),
    )
    server.register_grant(CodeGrant, [CodeChallenge(required=True)])

    async def oauth_request(request: Request) -> _Request:
        form: list[tuple[str, str]] = []
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "application/x-www-form-urlencoded":
                form = parse_qsl((await request.body()).decode("utf-8", "replace"))
        return _Request(
            request.method,
            str(request.url),
            dict(request.headers),
            list(request.query_params.multi_items()),
            form,
        )

    async def authorize(request: Request) -> Response:
        asked = await oauth_request(request)
        try:
            grant = server.get_consent_grant(asked, end_user=user)  # type: ignore[no-untyped-call]
        except OAuth2Error as error:
            if error.redirect_uri:  # a checked redirect URI: the error goes back to the app
                return cast(Response, server.handle_error_response(asked, error))
            return JSONResponse({"error": error.error}, status_code=400)
        return cast(
            Response, server.create_authorization_response(asked, grant_user=user, grant=grant)
        )

    async def token(request: Request) -> Response:
        answer = cast(Response, server.create_token_response(await oauth_request(request)))
        answer.headers["Cache-Control"] = "no-store"
        return answer

    async def smart_configuration(request: Request) -> Response:
        return JSONResponse(
            {
                "authorization_endpoint": config.base + "/auth/authorize",
                "token_endpoint": config.base + "/auth/token",
                "grant_types_supported": ["authorization_code"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient"],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "capabilities": [
                    "launch-ehr",
                    "launch-standalone",
                    "client-public",
                    "context-ehr-patient",
                    "context-standalone-patient",
                    "permission-patient",
                    "permission-v2",
                ],
            }
        )

    def allowed(scope: str, method: str, resource_type: str) -> bool:
        need = _WRITE.get(method, "r")
        for item in scope.split():
            m = re.match(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(.+)$", item)
            if not m or m.group(2) not in ("*", resource_type):
                continue
            perms = m.group(3)
            if (
                perms == "*"
                or (perms == "read" and need == "r")
                or (perms == "write" and need != "r")
            ):
                return True
            if perms not in ("read", "write") and (need in perms or (need == "r" and "s" in perms)):
                return True
        return False

    async def fhir(request: Request) -> Response:
        path = request.path_params["path"]
        if path != "metadata":
            auth = request.headers.get("authorization", "")
            granted = tokens.get(auth[7:] if auth[:7].lower() == "bearer " else "")
            if granted is None or granted.expires_at < time.time():
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401)
            if not allowed(granted.scope, request.method, path.split("/")[0]):
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=403)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = (await request.body()).replace(config.fhir_base.encode(), upstream.encode())
        answer = await http.request(
            request.method,
            f"{upstream}/{path}",
            params=list(request.query_params.multi_items()),
            headers=headers,
            content=body,
        )
        kept = {
            k: v.replace(upstream, config.fhir_base)
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "etag", "location", "content-location")
        }
        return Response(
            answer.content.replace(upstream.encode(), config.fhir_base.encode()),
            status_code=answer.status_code,
            headers=kept,
        )

    return Starlette(
        routes=[
            Route("/fhir/.well-known/smart-configuration", smart_configuration),
            Route("/auth/authorize", authorize, methods=["GET", "POST"]),
            Route("/auth/token", token, methods=["POST"]),
            Route("/fhir/{path:path}", fhir, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[config.app_origin],
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Accept",
                    "If-None-Exist",
                    "If-Match",
                ],
                expose_headers=["Location", "ETag", "Content-Location"],
                max_age=600,
            )
        ],
    )
