"""Service settings: one pydantic-settings class, environment variables prefixed ``CDS_``.

Every setting is documented in the README with its default.
"""

from __future__ import annotations

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
    # Until JWT verification lands (issue 5) only ``false`` is accepted.
    require_jwt: bool = False
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

    def model_post_init(self, __context: object) -> None:
        if self.require_jwt:
            raise ValueError(
                "CDS_REQUIRE_JWT=true is not supported yet: JWT verification of the calling EHR "
                "is not implemented in this version (see issue 5). Set CDS_REQUIRE_JWT=false."
            )
