"""Verification of the JWT a CDS client sends with each call (CDS Hooks 2.0.1, "Trusting CDS
Clients"): signature with the issuer's public key, issuer, audience, time claims, replay.

Every failure raises ``AuthFailure`` whose ``reason`` goes to the log only; the caller answers a
generic 401, with no detail that would help an attacker.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from jwt.exceptions import InvalidJTIError

from cds_service.auth.issuers import TrustedIssuer
from cds_service.platform.http_client import SharedHttp

SUPPORTED_ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "RS256"})
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")

# (issuer, jti, expiry, now) -> False when this jti was already seen and has not expired
ReplayCheck = Callable[[str, str, datetime, datetime], Awaitable[bool]]


class AuthFailure(Exception):  # noqa: N818 - a failure of the caller, not of the service
    """The token is not acceptable; ``reason`` and ``details`` (what was expected and what was
    presented: issuers, audiences, claim types; never the token) are for the log, never for
    the response."""

    def __init__(self, reason: str, **details: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details: dict[str, Any] = {key: _shown(value) for key, value in details.items()}


def _shown(value: object) -> object:
    """A claim value fit for a log line: strings cut to 200 characters, at most 5 list items,
    anything else by its JSON type."""
    if isinstance(value, str):
        # Printable characters only: no control characters, bidi overrides or lone surrogates.
        return "".join(
            ch for ch in value[:200] if ch.isprintable() and not "\ud800" <= ch <= "\udfff"
        )
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_shown(v) for v in value[:5]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return f"<{type(value).__name__}>"


def unsigned_text(value: object, limit: int = 64) -> str:
    """A value from a token nobody has verified yet, fit for a log line: letters, digits and
    ``._:/-`` only, at most ``limit`` of them (anyone can write anything there)."""
    text = value if isinstance(value, str) else f"<{_json_type(value)}>"
    kept = "".join(
        ch for ch in text[: limit * 4] if ch.isascii() and (ch.isalnum() or ch in "._:/-")
    )
    return kept[:limit] + ("…" if len(kept) > limit or kept != text else "")


def unsigned_origin(iss: str) -> str:
    """An unverified ``iss`` as its scheme and host only (which EHR it claims to be), or what
    kind of thing it is; never the rest, where anyone can write anything."""
    try:
        url = httpx.URL(iss)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "<not a URL>"
    if url.scheme not in ("http", "https") or not url.host:
        return "<not an http(s) URL>"
    port = f":{url.port}" if url.port else ""
    return unsigned_text(f"{url.scheme}://{url.host}{port}", 260) + (
        " (path left out)" if url.raw_path not in (b"", b"/") else ""
    )


def _json_type(value: object) -> str:
    return {str: "string", bool: "boolean", int: "number", float: "number", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)  # fmt: skip


@dataclass(frozen=True)
class VerifiedToken:
    iss: str
    jti: str
    sub: str | None
    development_only: bool


@dataclass
class _Keys:
    fetched_at: float
    keys: dict[str | None, jwt.PyJWK]


@dataclass
class JwksCache:
    """Public keys by JWKS URL or file, cached for ``ttl_seconds``.

    Fetches are rationed per issuer so that tokens cannot make the service hammer the issuer or
    any host: a source already cached is fetched again (stale, or a ``kid`` it lacks: key
    rotation) at most once per ``min_refetch_seconds``; a source never seen counts against
    ``new_sources_per_window`` per issuer in that window; a failed fetch is not retried within
    it; and an issuer keeps at most ``sources_per_issuer`` sources. Concurrent calls that need
    the same source share one fetch (a burst of calls on a cold cache fetches, and counts, once).
    """

    http: SharedHttp
    ttl_seconds: float = 3600.0
    min_refetch_seconds: float = 10.0
    timeout_seconds: float = 3.0
    new_sources_per_window: int = 2
    sources_per_issuer: int = 8
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, _Keys] = field(default_factory=dict)
    _failed: dict[str, float] = field(default_factory=dict)
    _new_fetches: dict[str, list[float]] = field(default_factory=dict)
    _sources: dict[str, list[str]] = field(default_factory=dict)
    _in_flight: dict[str, asyncio.Future[_Keys]] = field(default_factory=dict)

    async def key(self, issuer: str, source: str, kid: str | None) -> jwt.PyJWK:
        entry = self._cache.get(source)
        now = self.clock()
        if entry is None:
            entry = await self._fetch_shared(issuer, source, new=True)
        else:
            stale = now - entry.fetched_at > self.ttl_seconds
            missing = _pick(entry.keys, kid) is None
            if (stale or missing) and now - entry.fetched_at > self.min_refetch_seconds:
                entry = await self._fetch_shared(issuer, source, new=False)
        found = _pick(entry.keys, kid)
        if found is None:
            raise AuthFailure("no key with this kid in the issuer's JWKS", kid=unsigned_text(kid))
        return found

    def _admit_new_source(self, issuer: str, source: str, now: float) -> None:
        failed_at = self._failed.get(source)
        if failed_at is not None and now - failed_at <= self.min_refetch_seconds:
            raise AuthFailure("JWKS fetch failed recently: not retried yet")
        recent = [
            t for t in self._new_fetches.get(issuer, []) if now - t <= self.min_refetch_seconds
        ]
        if len(recent) >= self.new_sources_per_window:
            raise AuthFailure("too many new JWKS sources for this issuer: not fetched")
        self._new_fetches[issuer] = [*recent, now]

    async def _fetch_shared(self, issuer: str, source: str, *, new: bool) -> _Keys:
        """The fetch of ``source`` already under way, else a new one (admitted first when the
        source is new). A caller that gives up does not cancel it for the others."""
        fetch = self._in_flight.get(source)
        if fetch is None:
            if new:
                self._admit_new_source(issuer, source, self.clock())
            fetch = asyncio.ensure_future(self._refresh(issuer, source))
            self._in_flight[source] = fetch
            fetch.add_done_callback(lambda done: self._fetched(source, done))
        return await asyncio.shield(fetch)

    def _fetched(self, source: str, done: asyncio.Future[_Keys]) -> None:
        self._in_flight.pop(source, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so a fetch nobody awaits any more logs nothing

    async def _refresh(self, issuer: str, source: str) -> _Keys:
        try:
            jwks = await self._load(source)
            key_set = jwt.PyJWKSet.from_dict(jwks)
        except jwt.PyJWKSetError as exc:
            self._failed[source] = self.clock()
            raise AuthFailure(f"unusable JWKS: {exc}") from None
        except AuthFailure:
            self._failed[source] = self.clock()
            raise
        entry = _Keys(self.clock(), {k.key_id: k for k in key_set.keys})
        self._cache[source] = entry
        self._failed.pop(source, None)
        sources = [s for s in self._sources.get(issuer, []) if s != source] + [source]
        for dropped in sources[: -self.sources_per_issuer]:
            self._cache.pop(dropped, None)
        self._sources[issuer] = sources[-self.sources_per_issuer :]
        return entry

    async def _load(self, source: str) -> dict[str, Any]:
        if not source.startswith(("https://", "http://")):
            try:
                text = await asyncio.to_thread(Path(source).read_text, encoding="utf-8")
                loaded: Any = json.loads(text)
            except (OSError, ValueError) as exc:
                raise AuthFailure(f"cannot read pinned JWKS file: {exc}") from None
        else:
            try:
                response = await self.http.client.get(source, timeout=self.timeout_seconds)
            except (httpx.HTTPError, ValueError) as exc:
                raise AuthFailure(f"cannot fetch JWKS ({type(exc).__name__})") from None
            if response.status_code != 200:
                raise AuthFailure(f"JWKS answered HTTP {response.status_code}")
            try:
                loaded = response.json()
            except ValueError:
                raise AuthFailure("JWKS is not JSON") from None
        if not isinstance(loaded, dict):
            raise AuthFailure("JWKS is not a JSON object")
        return loaded


def _plain_url(url: str) -> bool:
    """An https URL with no dot segments, encoded dots or backslashes, which could walk a
    prefix allowlist entry out of its folder once the URL is normalised."""
    lowered = url.lower()
    if not lowered.startswith("https://") or "\\" in url or "%2e" in lowered or "%2f" in lowered:
        return False
    path = lowered.split("://", 1)[1].split("?", 1)[0]
    return not any(part in (".", "..") for part in path.split("/"))


def _pick(keys: Mapping[str | None, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


@dataclass
class JwtVerifier:
    issuers: Mapping[str, TrustedIssuer]
    jwks: JwksCache
    replay: ReplayCheck
    leeway_seconds: int = 60
    max_lifetime_seconds: int = 3600

    async def verify(self, token: str, audience: str, now: datetime) -> VerifiedToken:
        try:
            return await self._verify(token, audience, now)
        except (TypeError, ValueError, OverflowError, KeyError) as exc:
            # A token shaped like no JWT should be (claims of odd types, huge numbers).
            raise AuthFailure(f"malformed token: {type(exc).__name__}") from None

    async def _verify(self, token: str, audience: str, now: datetime) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthFailure(f"malformed token: {type(exc).__name__}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
            raise AuthFailure("algorithm not accepted")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthFailure(
                "issuer not trusted",
                presentedIss=unsigned_origin(iss)
                if isinstance(iss, str)
                else f"<{_json_type(iss)}>",
                trustedIss=sorted(self.issuers)[:5],
            )
        if alg not in issuer.algorithms:
            raise AuthFailure(
                f"algorithm {alg} not configured for this issuer",
                presentedIss=issuer.iss,
                configuredAlgorithms=list(issuer.algorithms),
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthFailure("kid is not a string")
        key = await self.jwks.key(issuer.iss, self._key_source(issuer, header), kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_aud": False,  # checked below, against the URL that was called
                    "verify_exp": False,  # time claims are checked below with the injected clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure(f"missing claim {exc.claim}", presentedIss=issuer.iss) from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("signature not valid", presentedIss=issuer.iss) from None
        except InvalidJTIError:
            jti_type = _json_type(unverified.get("jti"))
            raise AuthFailure(
                "jti is not a non-empty string", presentedIss=issuer.iss, jtiType=jti_type
            ) from None
        except jwt.PyJWTError as exc:
            # After the signature: a registered claim of the wrong type or value ("jti must
            # be a string", "sub must be a string"). Named as such, not as a bad signature.
            raise AuthFailure(
                f"claim not acceptable: {exc}", presentedIss=issuer.iss, error=type(exc).__name__
            ) from None
        self._check_audience(claims.get("aud"), audience)
        expires = self._check_times(claims, now)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthFailure(
                "jti is not a non-empty string", presentedIss=issuer.iss, jtiType=_json_type(jti)
            )
        if not await self.replay(issuer.iss, jti, expires, now):
            raise AuthFailure("jti replayed")
        sub = claims.get("sub")
        return VerifiedToken(
            issuer.iss, jti, sub if isinstance(sub, str) else None, issuer.development_only
        )

    @staticmethod
    def _key_source(issuer: TrustedIssuer, header: Mapping[str, Any]) -> str:
        if issuer.jku_allowlist:
            jku = header.get("jku")
            if not isinstance(jku, str):
                raise AuthFailure("token has no jku and the issuer publishes keys by jku")
            if not _plain_url(jku) or not issuer.allows_jku(jku):
                raise AuthFailure("jku not on the issuer's allowlist")
            return jku
        source = issuer.jwks_url or issuer.jwks_file
        assert source is not None
        return source

    @staticmethod
    def _check_audience(aud: Any, expected: str) -> None:
        wanted = expected.rstrip("/")
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(v, str) and v.rstrip("/") == wanted for v in values):
            raise AuthFailure(
                "audience is not this service's URL",
                expectedAud=wanted,
                presentedAud=values if values else f"<{_json_type(aud)}>",
            )

    def _check_times(self, claims: Mapping[str, Any], now: datetime) -> datetime:
        moment = now.timestamp()
        values = [claims["exp"], claims["iat"], *([claims["nbf"]] if "nbf" in claims else [])]
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        ):
            raise AuthFailure("time claims are not finite numbers")
        exp, iat = float(claims["exp"]), float(claims["iat"])
        nbf = float(claims["nbf"]) if "nbf" in claims else None
        allowed = self.max_lifetime_seconds + self.leeway_seconds
        if exp - iat > allowed or exp > moment + allowed:
            raise AuthFailure(
                "token lifetime too long", lifetimeSeconds=exp - iat, allowedSeconds=allowed
            )
        if exp < moment - self.leeway_seconds:
            raise AuthFailure("token expired")
        if iat > moment + self.leeway_seconds:
            raise AuthFailure("token issued in the future")
        if nbf is not None and nbf > moment + self.leeway_seconds:
            raise AuthFailure("token not yet valid")
        return datetime.fromtimestamp(exp + self.leeway_seconds, UTC)
