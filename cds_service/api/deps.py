"""The routes' collaborators, built once by ``create_app`` and handed to each route through a
typed dependency (``Annotated[Collaborators, Depends(...)]``), not read from untyped state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from cds_service.auth.jwt_verifier import JwtVerifier
from cds_service.lifecycle import Lifecycle
from cds_service.platform.http_client import SharedHttp
from cds_service.platform.registry import ServiceRegistry
from cds_service.platform.service import CallEnvironment, Writer
from cds_service.settings import Settings
from cds_service.store import CardLedger


@dataclass
class Collaborators:
    settings: Settings
    registry: ServiceRegistry
    discovery_body: bytes
    http: SharedHttp
    engine: Engine
    writer: Writer
    ledger: CardLedger
    verifier: JwtVerifier
    clock: Callable[[], datetime]
    lifecycle: Lifecycle

    def call_environment(
        self, issuer: str | None = None, app_launch_url: str | None = None
    ) -> CallEnvironment:
        """What one call may use: the shared HTTP client, the clock, the FHIR budgets, the
        delivery mode and writer, the ledger; ``issuer``: the verified caller."""
        settings = self.settings
        return CallEnvironment(
            http=self.http,
            clock=self.clock,
            fhir_timeout_seconds=settings.fhir_timeout_seconds,
            fhir_max_pages=settings.fhir_max_pages,
            fhir_max_response_bytes=settings.fhir_max_response_bytes,
            fhir_max_total_bytes=settings.fhir_max_total_bytes,
            delivery=settings.careplan_delivery,
            writer=self.writer,
            ledger=self.ledger,
            issuer=issuer,
            app_launch_url=app_launch_url,
        )


def collaborators(request: Request) -> Collaborators:
    """The collaborators of the app serving ``request``. The hook call's route reads them this
    way rather than through ``Deps``, sparing the hot path FastAPI's dependency solving (its
    cost was not measured alone: it came with other route changes in one A/B)."""
    found = request.app.state.collaborators
    assert isinstance(found, Collaborators)
    return found


async def collaborators_of(request: Request) -> Collaborators:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per call.
    return collaborators(request)


Deps = Annotated[Collaborators, Depends(collaborators_of)]
