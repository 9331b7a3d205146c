"""Service settings: one pydantic-settings class, environment variables prefixed ``CDS_``.

Every setting is documented in the README with its default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cds_service.platform.wire import valid_base_url

CARDS_DIR = Path(__file__).resolve().parents[1] / "cards"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    database_url: str = "sqlite:///./var/cds.db"
    content_dir: Path = CARDS_DIR  # one folder per service inside
    # Verify the calling EHR's signed JWT (CDS Hooks "Trusting CDS Clients").
    require_jwt: bool = True
    # Let a service bound to a non-loopback address run with JWT verification off (never in
    # production).
    allow_insecure: bool = False
    # TOML or JSON file of trusted issuers and where their keys come from.
    trusted_issuers_file: Path | None = None
    # Clock skew tolerated on exp / iat / nbf (seconds).
    jwt_leeway_seconds: int = Field(default=60, ge=0, le=600)
    # Longest token lifetime accepted (exp - iat), plus the leeway; the spec asks EHRs for at
    # most 5 minutes.
    jwt_max_lifetime_seconds: int = Field(default=300, ge=60, le=86400)
    # How long a fetched JWKS is trusted before it is fetched again (seconds).
    jwks_cache_seconds: int = Field(default=3600, ge=0)
    # A token naming a key id the cached JWKS lacks fetches the JWKS again (key rotation), at
    # most once per this many seconds per issuer.
    jwks_refetch_seconds: int = Field(default=10, ge=0)
    # The service's public base URL (scheme, host, port, path prefix) as EHRs call it, e.g.
    # https://cds.example.org; the JWT audience must equal it plus the service path. Required
    # when JWT verification is on: the audience is never taken from the request's headers.
    public_base_url: str | None = None
    # Comma-separated origins allowed by CORS ("*" = any), for browser clients such as the sandbox.
    cors_allow_origins: Annotated[tuple[str, ...], NoDecode] = ("*",)
    # The SMART app (docs/design/smart-app.md): the FHIR servers it may be launched against
    # (comma-separated base URLs; none: every launch is refused), its client id, and whether
    # the cards carry "smart" links to it.
    smart_allowed_iss: Annotated[tuple[str, ...], NoDecode] = ()
    smart_client_id: str = Field(default="sacral-bsi-smart-app", min_length=1, max_length=200)
    smart_links: bool = False
    # Total time budget for FHIR server calls in one hook call (seconds).
    fhir_timeout_seconds: float = Field(default=1.5, gt=0, le=30)
    # Searchset pages followed per search before giving up with a clear error.
    fhir_max_pages: int = Field(default=20, ge=1, le=1000)
    # Largest FHIR server answer read (bytes, after decompression); reading stops there: 412.
    fhir_max_response_bytes: int = Field(default=16_000_000, ge=10_000)
    # Most bytes one hook call reads from the FHIR server, all answers together: 412 beyond.
    fhir_max_total_bytes: int = Field(default=48_000_000, ge=10_000)
    # Largest request body accepted (bytes); larger answers 413.
    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    # Largest request line plus headers accepted by ``cds-service serve`` (bytes); past it the
    # connection answers 400 and closes (uvicorn's h11 parser limit).
    max_header_bytes: int = Field(default=65_536, ge=8_192, le=1_048_576)
    # Seconds a client has to send a request's line and headers (under ``cds-service serve``),
    # and, separately, its body: slower ones are closed (head) or answered 408 (body).
    request_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Most connections and tasks at once under ``cds-service serve``; beyond it new ones get 503
    # (bounds the memory slow or idle clients can hold; their timeouts belong to the proxy).
    max_connections: int = Field(default=1000, ge=10, le=100_000)
    # Seconds ``cds-service serve`` keeps an idle connection open for a next request. A load
    # balancer must drop its idle connections to the service sooner (or set this above its own
    # idle timeout), or it may send a request on a connection the service is closing.
    keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    # Worker processes of ``cds-service serve`` (``--workers`` overrides it); every one shares
    # the database: JWT replay, the card ledger, feedback and suppression, direct-write claims.
    workers: int = Field(default=1, ge=1, le=64)
    # On SIGTERM: /readyz answers 503 at once and the service goes on serving for this many
    # seconds (so a load balancer sees it and stops sending), then stops accepting and gives the
    # calls in flight up to CDS_SHUTDOWN_GRACE_SECONDS to finish. 0: stop accepting at once.
    shutdown_drain_seconds: float = Field(default=0.0, ge=0, le=300)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=600)
    # Days the card ledger and the clinicians' feedback are kept; older rows are deleted (a card
    # with feedback still kept stays). Must be longer than the override snooze.
    retention_days: int = Field(default=90, ge=1, le=3650)
    # Seconds between purges (expired JWT ids, cards and feedback past retention).
    housekeeping_interval_seconds: int = Field(default=3600, ge=1)
    log_level: str = "INFO"  # DEBUG | INFO | WARNING | ERROR | CRITICAL (any case; WARN too)
    # How a proposed CarePlan reaches the record: suggestion | system-action | direct-write.
    careplan_delivery: Literal["suggestion", "system-action", "direct-write"] = "suggestion"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(value.upper(), value.upper())
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("cors_allow_origins", "smart_allowed_iss", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("smart_allowed_iss")
    @classmethod
    def _check_iss(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for iss in value:
            if not valid_base_url(iss):
                raise ValueError(f"{iss!r} is not an http(s) base URL")
        return tuple(iss.rstrip("/") for iss in value)

    @property
    def smart_launch_url(self) -> str | None:
        """Where the cards' "smart" links point, when they are on."""
        if not (self.smart_links and self.public_base_url):
            return None
        return self.public_base_url.rstrip("/") + "/smart/launch"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @field_validator("public_base_url")
    @classmethod
    def _absolute_base(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not valid_base_url(value):
            raise ValueError(
                "must be the absolute http(s) URL EHRs call the service at, with no query, "
                "fragment or credentials, e.g. https://cds.example.org"
            )
        return value.rstrip("/")

    @property
    def start_refusal(self) -> str | None:
        """Why the service must not start with these settings, in one line, or None: JWT
        verification off beyond loopback without CDS_ALLOW_INSECURE, or on without the public
        base URL the token audience is checked against."""
        if self.require_jwt and not self.public_base_url:
            return (
                "CDS_PUBLIC_BASE_URL is required when JWT verification is on: set it to the URL "
                "EHRs call this service at (e.g. https://cds.example.org); token audiences are "
                "checked against it, never against the request's Host header."
            )
        if self.smart_links and not self.public_base_url:
            return (
                "CDS_SMART_LINKS=true needs CDS_PUBLIC_BASE_URL: the cards' links point at the "
                "app's launch page under it."
            )
        if self.require_jwt or self.loopback or self.allow_insecure:
            return None
        return (
            f"Refusing to start on {self.host} with JWT verification off. Set "
            "CDS_REQUIRE_JWT=true, CDS_PUBLIC_BASE_URL and CDS_TRUSTED_ISSUERS_FILE, or (never "
            "in production) CDS_ALLOW_INSECURE=true."
        )


def unknown_environment_settings(environ: Mapping[str, str]) -> list[str]:
    """``CDS_*`` variables that name no setting (a typo such as CDS_PUBLIC_BASE_URI would
    otherwise be ignored without a word)."""
    known = {f"CDS_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    return sorted(k for k in environ if k.upper().startswith("CDS_") and k.upper() not in known)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# CDS_* variables read by the project's own tools, not by the service.
NOT_SETTINGS = frozenset(
    {"CDS_TEST_REQUIRE_FHIR_SERVER", "CDS_TEST_REQUIRE_BROWSER", "CDS_TEST_REQUIRE_CHECKOV"}
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
