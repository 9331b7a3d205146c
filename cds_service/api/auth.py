"""Authentication of service and feedback calls: the EHR's bearer JWT, verified."""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from fastapi import Request

from cds_service import metrics
from cds_service.api.deps import Collaborators
from cds_service.auth.jwt_verifier import AuthFailure, VerifiedToken
from cds_service.errors import CdsError
from cds_service.logs import log_event


class UnauthorizedError(CdsError):
    """401 saying only whether a token came and where the reason is; the reason itself (which
    check failed) is logged, never answered."""

    status = 401
    issue_code = "security"
    kind = "unauthorized"

    def __init__(self, presented: bool = True) -> None:
        super().__init__(
            "Unauthorized: the bearer token was not accepted (the service's log names the "
            "reason, event auth_failed)."
            if presented
            else "Unauthorized: no bearer token. Every call carries a JWT signed by a trusted "
            "issuer (CDS Hooks, Trusting CDS Clients)."
        )
        self.presented = presented


class InsecureBindingError(CdsError):
    status = 503
    issue_code = "security"
    kind = "insecure_binding"


def expected_audience(request: Request, public_base_url: str) -> str:
    """The audience a token for this call must name: the service's configured public base URL
    plus the path called. Never built from the request's Host or X-Forwarded-* headers, which
    the caller controls (a token minted for another service would otherwise get in)."""
    path = request.url.path
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        # Behind a proxy that strips a prefix (uvicorn --root-path): the public base URL holds
        # the prefix already.
        path = path[len(root) :]
    return public_base_url.rstrip("/") + path


async def authenticate(request: Request, deps: Collaborators) -> VerifiedToken | None:
    """Verify the caller's JWT when the service requires one; None when it does not."""
    settings = deps.settings
    if not settings.require_jwt:
        _refuse_insecure_non_loopback(request, settings.allow_insecure)
        return None
    verifier = deps.verifier
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refused(AuthFailure("no bearer token"), presented=False)
    public_base_url = settings.public_base_url
    if not public_base_url:  # refused at start; a backstop for apps built another way
        raise _refused(AuthFailure("CDS_PUBLIC_BASE_URL not set"))
    try:
        verified = await verifier.verify(
            token.strip(), expected_audience(request, public_base_url), deps.clock()
        )
    except AuthFailure as failure:
        raise _refused(failure) from None
    if verified.development_only:
        log_event("auth_development_issuer", level=logging.WARNING, issuer=verified.iss)
    return verified


def _refused(failure: AuthFailure, *, presented: bool = True) -> UnauthorizedError:
    """The 401 for ``failure``, logged with its reason and counted by it."""
    log_event("auth_failed", level=logging.WARNING, reason=failure.reason, **failure.details)
    metrics.JWT_REFUSALS.labels(metrics.jwt_reason(failure.reason)).inc()
    return UnauthorizedError(presented=presented)


def _refuse_insecure_non_loopback(request: Request, allow_insecure: bool) -> None:
    """Backstop for ``uvicorn --host 0.0.0.0`` without JWT: refuse calls that arrive on a
    non-loopback address unless CDS_ALLOW_INSECURE says so."""
    server = request.scope.get("server")
    if allow_insecure or not server:
        return
    host = server[0]
    if isinstance(host, str) and _loopback_or_not_an_address(host):
        return
    raise InsecureBindingError(
        "JWT verification is off and this address is not loopback: refused. Set "
        "CDS_REQUIRE_JWT=true (and trusted issuers), or CDS_ALLOW_INSECURE=true."
    )


@lru_cache(maxsize=64)
def _loopback_or_not_an_address(host: str) -> bool:
    """Whether the address a call came in on is loopback (or is no IP address, a Unix socket's
    path): read once per address (the server's own, a handful), not once per call."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
