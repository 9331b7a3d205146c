"""The ASGI application: ``create_app(settings)``; ``cds_service.main:app`` for uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from uvicorn.config import STARTUP_FAILURE

from cds_service import logs, metrics
from cds_service.api import errors, routes, smart
from cds_service.api.cors import JsonCorsMiddleware
from cds_service.api.deps import Collaborators
from cds_service.auth.issuers import IssuerConfigError, load_issuers
from cds_service.auth.jwt_verifier import JwksCache, JwtVerifier
from cds_service.lifecycle import DrainingMiddleware, Lifecycle
from cds_service.platform import wire
from cds_service.platform.content import ContentError
from cds_service.platform.http_client import SharedHttp
from cds_service.platform.registry import ServiceRegistry
from cds_service.platform.service import Writer
from cds_service.services.registry import load_services
from cds_service.settings import Settings, unknown_environment_settings
from cds_service.store import CardLedger, ClaimStore, ReplayStore, close_engine, open_engine


class StartupError(RuntimeError):
    """The service cannot start as configured. The message is one line that says what to fix
    (``cds-service serve`` prints it alone and exits with 2; so does plain uvicorn)."""


class SettingsRefusedError(StartupError):
    """The settings would start an unsafe service (unauthenticated beyond loopback, or JWT on
    with no public base URL to check token audiences against); the message says what to set."""


def load_settings() -> Settings:
    """The settings from the environment, or a StartupError naming each bad variable (never
    its value: a database URL may hold a password)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CDS_{str(error['loc'][0]).upper()}: {error['msg']}" if error["loc"] else error["msg"]
            for error in exc.errors()
        )
        raise StartupError(f"invalid setting: {problems}") from None


def _open_database(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        raise StartupError(
            "CDS_DATABASE_URL is not a database URL (e.g. sqlite:///./var/cds.db or "
            "postgresql+psycopg://user:password@host/db)"
        ) from None
    netloc = url.partition("://")[2].partition("/")[0]
    if netloc.count("@") > 1:
        raise StartupError(
            "CDS_DATABASE_URL has an '@' in its user name or password: percent-encode it (%40)"
        )
    # Where, without a password or query (a password may ride in ?password=...).
    where = parsed.set(query={}).render_as_string(hide_password=True)
    secrets = [parsed.password, *(str(v) for k, v in parsed.query.items() if "pass" in k.lower())]
    try:
        return open_engine(url)
    except Exception as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["no reason"])[0]
        if any(secret and str(secret) in reason for secret in secrets):
            # Masking it inside the message would show it by what is left around the mask.
            reason = "the driver's message is left out: the password appears in it"
        raise StartupError(
            f"cannot open the database {where} (CDS_DATABASE_URL): {type(exc).__name__}: {reason}"
        ) from None


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now
) -> FastAPI:
    settings = settings or load_settings()
    logs.configure(settings.log_level)
    if settings.start_refusal:
        raise SettingsRefusedError(settings.start_refusal)
    try:
        issuers = (
            load_issuers(settings.trusted_issuers_file) if settings.trusted_issuers_file else {}
        )
    except IssuerConfigError as exc:
        raise StartupError(f"CDS_TRUSTED_ISSUERS_FILE: {exc}") from None
    try:
        services = load_services(settings.content_dir)
    except ContentError as exc:
        raise StartupError(f"CDS_CONTENT_DIR: {exc}") from None
    snooze = max(service.snooze_days for service in services)
    if settings.retention_days <= snooze:
        raise StartupError(
            f"CDS_RETENTION_DAYS ({settings.retention_days}) must be longer than the override "
            f"snooze ({snooze} days), or an overridden card would come back early"
        )
    registry = ServiceRegistry(*services)
    content_versions = {s.definition.id: s.content_version for s in services}
    engine = _open_database(settings.database_url)
    ledger, replay = CardLedger(engine), ReplayStore(engine)
    stopping = threading.Event()  # set at shutdown: a purge in its thread stops between batches
    lifecycle = Lifecycle(settings.shutdown_drain_seconds)

    def housekeeping(*, at_start: bool = False) -> None:
        """Forget what is past its retention: expired token ids, old cards and feedback. One
        log line at start, then only when something was deleted."""
        now = clock()
        try:
            token_ids = replay.purge(now, stop=stopping)
            cards, feedback = ledger.purge(
                now - timedelta(days=settings.retention_days), stop=stopping
            )
        except Exception:
            logs.log_event("housekeeping failed", level=logging.WARNING, exc_info=True)
            return
        if at_start or cards or feedback or token_ids:
            logs.log_event(
                "housekeeping",
                cardsPurged=cards,
                feedbackPurged=feedback,
                tokenIdsPurged=token_ids,
            )

    async def housekeeping_loop() -> None:
        # The first purge runs at once, beside the first calls (a large backlog must not keep
        # the port closed), then one every interval.
        await asyncio.to_thread(housekeeping, at_start=True)
        while True:
            await asyncio.sleep(settings.housekeeping_interval_seconds)
            await asyncio.to_thread(housekeeping)

    http = SharedHttp(
        lambda: httpx.AsyncClient(
            timeout=httpx.Timeout(settings.fhir_timeout_seconds),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # No host or port here: under plain uvicorn they are uvicorn's to tell (its own line,
        # in the same JSON format), and CDS_HOST / CDS_PORT may not be what it listens on.
        logs.log_event(
            "service_started",
            contentVersions=content_versions,
            requireJwt=settings.require_jwt,
            trustedIssuers=len(issuers),
            retentionDays=settings.retention_days,
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
        housekeeper = asyncio.create_task(housekeeping_loop())
        uninstall = lifecycle.install(asyncio.get_running_loop())
        gc.collect()
        gc.freeze()
        yield
        uninstall()
        metrics.worker_exited(os.getpid())
        stopping.set()
        housekeeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await housekeeper
        await http.aclose()
        close_engine(engine)

    app = FastAPI(
        title="Sacral BSI CDS Hooks services",
        version=version("sacral-bsi-cds"),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # A trailing slash is a 404 naming the path without it, never a redirect: a redirected
        # POST loses its body, and the Location would be built from the caller's Host header.
        redirect_slashes=False,
    )
    writer = Writer(
        http,
        ClaimStore(engine),
        settings.fhir_max_response_bytes,
        settings.fhir_max_total_bytes,
    )

    async def remember(issuer: str, jti: str, expires: datetime, now: datetime) -> bool:
        return await asyncio.to_thread(replay.remember, issuer, jti, expires, now)

    verifier = JwtVerifier(
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
    app.state.collaborators = Collaborators(
        settings=settings,
        registry=registry,
        discovery_body=wire.encode(registry.discovery()),
        http=http,
        engine=engine,
        writer=writer,
        ledger=ledger,
        verifier=verifier,
        clock=clock,
        lifecycle=lifecycle,
    )
    app.add_middleware(
        JsonCorsMiddleware,
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(errors.CatchAllMiddleware)
    app.add_middleware(DrainingMiddleware, lifecycle=lifecycle)  # outermost: added last
    errors.install(app)
    routes.add_service_routes(app.router)
    app.include_router(routes.router)
    app.include_router(smart.router)
    app.mount("/smart/static", smart.static_files(), name="smart-static")
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        # The request schemas' components (generated from the wire models) go with the rest.
        if app.openapi_schema is None:
            schema = generated()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(routes.SCHEMA_COMPONENTS)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app: FastAPI


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module (tests, tools) has no side effects.
    if name == "app":
        try:
            built = create_app()
        except StartupError as exc:  # one line, not a traceback through uvicorn's importer
            print(f"Error: {exc}", file=sys.stderr)
            # A worker of ``serve --workers N`` exits with uvicorn's start-up failure code, so
            # that its supervisor stops instead of starting it again and again.
            worker = multiprocessing.parent_process() is not None
            raise SystemExit(STARTUP_FAILURE if worker else 2) from None
        globals()["app"] = built
        return built
    raise AttributeError(name)
