"""The ASGI application: ``create_app(settings)``; ``cds_service.main:app`` for uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from cds_service import cds_hooks as wire
from cds_service import logs
from cds_service.api import errors, routes
from cds_service.api.cors import JsonCorsMiddleware
from cds_service.auth.issuers import load_issuers
from cds_service.auth.jwt_verifier import JwksCache, JwtVerifier
from cds_service.content import load_content
from cds_service.hooks.delivery import Writer
from cds_service.hooks.service import SacralBsiService, ServiceRegistry
from cds_service.http_client import SharedHttp
from cds_service.settings import Settings, unknown_environment_settings
from cds_service.store import CardLedger, ClaimStore, ReplayStore, close_engine, open_engine


class SettingsRefusedError(RuntimeError):
    """The settings would start an unsafe service (unauthenticated beyond loopback, or JWT on
    with no public base URL to check token audiences against); the message says what to set."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now
) -> FastAPI:
    settings = settings or Settings()
    logs.configure(settings.log_level)
    if settings.start_refusal:
        raise SettingsRefusedError(settings.start_refusal)
    issuers = load_issuers(settings.trusted_issuers_file) if settings.trusted_issuers_file else {}
    content = load_content(settings.content_dir)
    registry = ServiceRegistry(SacralBsiService(content))
    engine = open_engine(settings.database_url)
    http = SharedHttp(
        lambda: httpx.AsyncClient(
            timeout=httpx.Timeout(settings.fhir_timeout_seconds),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logs.log_event(
            "service_started",
            contentVersion=content.version,
            configuredHost=settings.host,
            configuredPort=settings.port,
            requireJwt=settings.require_jwt,
            trustedIssuers=len(issuers),
        )
        unknown = unknown_environment_settings(os.environ)
        if unknown:
            logs.log_event(
                "environment variables that are not settings, ignored (a typo?)",
                level=logging.WARNING,
                variables=unknown,
            )
        if not settings.require_jwt:
            logs.log_event(
                "JWT VERIFICATION IS OFF: any caller that reaches this port can call the "
                "service. For local development only (CDS_REQUIRE_JWT=false).",
                level=logging.WARNING,
            )
        elif not issuers:
            logs.log_event(
                "No trusted issuers configured (CDS_TRUSTED_ISSUERS_FILE): every call will be "
                "refused with 401.",
                level=logging.WARNING,
            )
        for issuer in issuers.values():
            if issuer.development_only:
                logs.log_event(
                    "development-only issuer trusted", level=logging.WARNING, issuer=issuer.iss
                )
        # Start-up objects live for the whole process: keep them out of the cyclic GC's way
        # (measured: fewer p99 spikes, see bench/).
        gc.collect()
        gc.freeze()
        yield
        await http.aclose()
        close_engine(engine)

    app = FastAPI(
        title="Sacral BSI CDS Hooks service",
        version=content.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.discovery_body = wire.encode(registry.discovery())
    app.state.content_version = content.version
    app.state.http = http
    app.state.engine = engine
    app.state.writer = Writer(http, ClaimStore(engine))
    app.state.ledger = CardLedger(engine)
    replay = ReplayStore(engine)

    async def remember(issuer: str, jti: str, expires: datetime, now: datetime) -> bool:
        return await asyncio.to_thread(replay.remember, issuer, jti, expires, now)

    app.state.verifier = JwtVerifier(
        issuers,
        JwksCache(
            http,
            ttl_seconds=settings.jwks_cache_seconds,
            min_refetch_seconds=settings.jwks_refetch_seconds,
        ),
        remember,
        leeway_seconds=settings.jwt_leeway_seconds,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )
    app.state.clock = clock
    app.add_middleware(
        JsonCorsMiddleware,
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(errors.CatchAllMiddleware)  # outermost: added last
    errors.install(app)
    app.include_router(routes.router)
    return app


app: FastAPI


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module (tests, tools) has no side effects.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
