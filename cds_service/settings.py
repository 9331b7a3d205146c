"""Service settings: one pydantic-settings class, environment variables prefixed ``CDS_``.

Every setting is documented in the README with its default.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cds_service.content import DEFAULT_CONTENT_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    database_url: str = "sqlite:///./var/cds.db"
    content_dir: Path = DEFAULT_CONTENT_DIR
    # Verify the calling EHR's signed JWT (CDS Hooks "Trusting CDS Clients").
    require_jwt: bool = True
    # Let a service bound to a non-loopback address run with JWT verification off (never in
    # production).
    allow_insecure: bool = False
    # TOML or JSON file of trusted issuers and where their keys come from.
    trusted_issuers_file: Path | None = None
    # Clock skew tolerated on exp / iat / nbf (seconds).
    jwt_leeway_seconds: int = Field(default=60, ge=0, le=600)
    # Longest token lifetime accepted (exp - iat); the spec asks for at most 5 minutes.
    jwt_max_lifetime_seconds: int = Field(default=3600, ge=60, le=86400)
    # How long a fetched JWKS is trusted before it is fetched again (seconds).
    jwks_cache_seconds: int = Field(default=3600, ge=0)
    # A token naming a key id the cached JWKS lacks fetches the JWKS again (key rotation), at
    # most once per this many seconds per issuer.
    jwks_refetch_seconds: int = Field(default=10, ge=0)
    # The service's public base URL (scheme, host, port, path prefix) as EHRs call it, e.g.
    # https://cds.example.org; the JWT audience must equal it plus the service path. Default:
    # the URL of the request as the server sees it.
    public_base_url: str | None = None
    # Comma-separated origins allowed by CORS ("*" = any), for browser clients such as the sandbox.
    cors_allow_origins: Annotated[tuple[str, ...], NoDecode] = ("*",)
    # Total time budget for FHIR server calls in one hook call (seconds).
    fhir_timeout_seconds: float = Field(default=1.5, gt=0, le=30)
    # Searchset pages followed per search before giving up with a clear error.
    fhir_max_pages: int = Field(default=20, ge=1, le=1000)
    # Largest request body accepted (bytes); larger answers 413.
    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    log_level: str = "INFO"
    # How a proposed CarePlan reaches the record: suggestion | system-action | direct-write.
    careplan_delivery: Literal["suggestion", "system-action", "direct-write"] = "suggestion"

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def insecure_start_refusal(self) -> str | None:
        """Why the service must not start with these settings (JWT verification off beyond
        loopback without CDS_ALLOW_INSECURE), or None."""
        if self.require_jwt or self.loopback or self.allow_insecure:
            return None
        return (
            f"Refusing to start on {self.host} with JWT verification off. Set "
            "CDS_REQUIRE_JWT=true and CDS_TRUSTED_ISSUERS_FILE, or (never in production) "
            "CDS_ALLOW_INSECURE=true."
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
