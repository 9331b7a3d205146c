"""HTTP routes: discovery, the service call, health. Thin: parse, call the service, encode."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cds_service import metrics
from cds_service.api.auth import authenticate
from cds_service.api.deps import Deps, DirectRoute, collaborators
from cds_service.api.errors import JSON
from cds_service.errors import (
    BadRequestError,
    CdsError,
    ClientDisconnectedError,
    InternalError,
    PayloadTooLargeError,
    RequestTimeoutError,
)
from cds_service.logs import log_event
from cds_service.platform import wire
from cds_service.platform.call import call
from cds_service.settings import Settings
from cds_service.store import FeedbackRecord, is_ready

router = APIRouter()
_T = TypeVar("_T")

# The request body schemas, generated from the wire models (one source): components named by
# the models, referenced from the two routes below.
REQUEST_SCHEMAS, SCHEMA_COMPONENTS = msgspec.json.schema_components(
    (wire.WireRequest, wire.FeedbackRequest), ref_template="#/components/schemas/{name}"
)


async def discovery(deps: Deps) -> Response:
    return Response(deps.discovery_body, media_type=JSON)


async def call_service(service_id: str, request: Request) -> Response:
    started = time.perf_counter()
    deps = collaborators(request)
    hook_instance: str | None = None
    known = service_id in deps.registry
    service_label = service_id if known else "unknown"
    hook_label = deps.registry.get(service_id).definition.hook if known else "unknown"

    def log_call(level: int, status: int, outcome: str, **fields: Any) -> None:
        elapsed = time.perf_counter() - started
        metrics.series(metrics.HOOK_REQUESTS, service_label, hook_label, str(status)).inc()
        metrics.series(metrics.HOOK_LATENCY, service_label, hook_label).observe(elapsed)
        log_event(
            "hook_call",
            level=level,
            exc_info=status == 500,
            hookInstance=hook_instance,
            service=service_id if known else None,
            status=status,
            outcome=outcome,
            **fields,
            latencyMs=round(elapsed * 1000, 2),
        )

    metrics.HOOK_IN_FLIGHT.inc()
    try:
        service = deps.registry.get(service_id)
        caller = await authenticate(request, deps)
        hook_request = await _decoded_body(
            request, deps, partial(wire.decode_request, service=service.definition)
        )
        hook_instance = hook_request.hookInstance
        env = deps.call_environment(
            issuer=caller.iss if caller else None,
            app_launch_url=deps.settings.smart_launch_url,
        )
        outcome = await call(service, hook_request, env)
    except CdsError as exc:
        log_call(logging.WARNING, exc.status, exc.kind)
        raise
    except asyncio.CancelledError:  # the server's shutdown grace ran out: the caller gets a 500
        log_call(logging.WARNING, 500, "cancelled_at_shutdown")
        raise
    except Exception:
        log_call(logging.ERROR, 500, InternalError.kind)
        raise InternalError from None
    finally:
        metrics.HOOK_IN_FLIGHT.dec()
    metrics.series(metrics.HOOK_OUTCOMES, service_label, metrics.label(outcome.outcome)).inc()
    for kind in outcome.card_kinds:
        metrics.series(metrics.CARDS, service_label, metrics.label(kind)).inc()
    log_call(
        logging.INFO,
        200,
        outcome.outcome,
        cards=len(outcome.response.cards),
        **({"careplan": outcome.delivery} if outcome.delivery else {}),
        contentVersion=service.content_version,
        **outcome.stats.as_log(),
    )
    return Response(wire.encode(outcome.response), media_type=JSON)


def add_service_routes(app_router: APIRouter) -> None:
    """Discovery and the hook call (the hot path) on the app's own router (``create_app``), so
    that a call is matched without going through an included router, and listed first in the
    OpenAPI document, as before; the call is a ``DirectRoute``, called without FastAPI's
    dependency solving."""
    app_router.add_api_route(
        "/cds-services", discovery, methods=["GET"], summary="CDS Hooks discovery"
    )
    app_router.add_api_route(
        "/cds-services/{service_id}",
        call_service,
        methods=["POST"],
        summary="Call a CDS service",
        openapi_extra={
            "requestBody": {"required": True, "content": {JSON: {"schema": REQUEST_SCHEMAS[0]}}}
        },
        route_class_override=DirectRoute,
    )


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="Feedback on the cards of a CDS service",
    openapi_extra={
        "requestBody": {"required": True, "content": {JSON: {"schema": REQUEST_SCHEMAS[1]}}}
    },
)
async def feedback(service_id: str, request: Request, deps: Deps) -> Response:
    service_label = service_id if service_id in deps.registry else "unknown"
    try:
        service = deps.registry.get(service_id)
        await authenticate(request, deps)
        received = await _decoded_body(request, deps, wire.decode_feedback)
        _refuse_future_outcomes(received, deps.clock(), deps.settings.jwt_leeway_seconds)
        records = [
            FeedbackRecord(
                service_id=service_id,
                card_uuid=item.card,
                outcome=item.outcome,
                accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions),
                override_system=_reason(item, "system"),
                override_code=_reason(item, "code"),
                override_display=_reason(item, "display"),
                user_comment=item.overrideReason.userComment if item.overrideReason else None,
                outcome_timestamp=item.outcomeTimestamp,
            )
            for item in received.feedback
        ]
        kinds = await asyncio.to_thread(deps.ledger.store_feedback, records, deps.clock())
    except CdsError as exc:
        metrics.FEEDBACK_REQUESTS.labels(service_label, str(exc.status)).inc()
        log_event("feedback", level=logging.WARNING, status=exc.status, outcome=exc.kind)
        raise
    except Exception:
        metrics.FEEDBACK_REQUESTS.labels(service_label, "500").inc()
        log_event(
            "feedback", level=logging.ERROR, exc_info=True, status=500, outcome=InternalError.kind
        )
        raise InternalError from None
    metrics.FEEDBACK_REQUESTS.labels(service_label, "200").inc()
    log_event(
        "feedback",
        service=service_id,
        status=200,
        items=len(records),
        accepted=sum(1 for r in records if r.outcome == "accepted"),
        overridden=sum(1 for r in records if r.outcome == "overridden"),
        unknownCards=kinds.count(None),
    )
    for record, kind in zip(records, kinds, strict=True):
        card_kind = metrics.label(kind) if kind is not None else "unknown"
        metrics.FEEDBACK.labels(service_id, card_kind, record.outcome).inc()
        if record.outcome == "overridden":
            reason = metrics.label(record.override_code, service.override_codes)
            metrics.OVERRIDE_REASONS.labels(service_id, card_kind, reason).inc()
    return Response(status_code=200)


def _refuse_future_outcomes(received: wire.FeedbackRequest, now: datetime, leeway: int) -> None:
    """An outcome cannot come from the future: beyond the clock leeway is a 400 naming it."""
    latest = now + timedelta(seconds=leeway)
    for n, item in enumerate(received.feedback):
        moment = item.outcomeTimestamp
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # no offset given: read as UTC
        if moment > latest:
            raise BadRequestError(
                f"outcomeTimestamp {item.outcomeTimestamp.isoformat()} is in the future (the "
                f"service's clock is {now.isoformat(timespec='seconds')}).",
                field=f"feedback[{n}].outcomeTimestamp",
            )


def _reason(item: wire.FeedbackItem, part: str) -> str | None:
    coding = item.overrideReason.reason if item.overrideReason else None
    value = getattr(coding, part) if coding else None
    return value if isinstance(value, str) else None


async def _decoded_body(request: Request, deps: Deps, decode: Callable[[bytes], _T]) -> _T:
    """The request body, size-checked, decoded by ``decode``; a body that is not what the spec
    asks for is a 400 naming the field."""
    body = await read_body(request, deps.settings)
    try:
        return decode(body)
    except wire.RequestError as exc:
        raise BadRequestError(str(exc), field=exc.field) from None


async def read_body(request: Request, settings: Settings) -> bytes:
    """The request body, within CDS_MAX_BODY_BYTES (413) and CDS_REQUEST_READ_TIMEOUT_SECONDS
    (408)."""
    seconds, limit = settings.request_read_timeout_seconds, settings.max_body_bytes
    try:
        async with asyncio.timeout(seconds):
            return await _read_body_within(request, limit)
    except TimeoutError:
        raise RequestTimeoutError(
            f"The request body did not arrive within {seconds:g} s "
            "(CDS_REQUEST_READ_TIMEOUT_SECONDS)."
        ) from None


async def _read_body_within(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    # ASCII digits only (str.isdigit() also says yes to "²", which int() refuses); a number
    # with more digits than the limit is over it, and is not read (int() refuses over 4,300).
    if declared is not None and declared.isascii() and declared.isdigit():
        digits = declared.lstrip("0") or "0"
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise PayloadTooLargeError(f"Request body larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    # The ASGI messages read directly (Starlette's ``request.stream()`` is an async generator
    # around the same loop, a few µs a call more), as it reads them: the body comes in
    # ``http.request`` messages until one says there is no more; ``http.disconnect`` means the
    # caller went away; any other message is passed over.
    receive = request.receive
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnectedError
        if kind != "http.request":
            continue
        chunk = message.get("body") or b""
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"Request body larger than {limit} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@router.get("/metrics", summary="Metrics (Prometheus text format)")
async def metrics_page() -> Response:
    # Built in a thread: in multiprocess mode it reads every worker's files.
    body = await asyncio.to_thread(metrics.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE)


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


READY_CHECK_SECONDS = 2.0


@router.get("/readyz", summary="Readiness: not shutting down, and the database answers")
async def readyz(deps: Deps) -> Response:
    if deps.lifecycle.draining:
        return Response(b'{"status":"shutting down"}', status_code=503, media_type=JSON)
    # In a thread, within 2 s, and one at a time: a database that hangs (a failover) must not
    # freeze the worker, nor pile up a thread per probe.
    lifecycle = deps.lifecycle
    if lifecycle.ready_check is None or lifecycle.ready_check.done():
        lifecycle.ready_check = asyncio.ensure_future(asyncio.to_thread(is_ready, deps.engine))
    try:
        ready = await asyncio.wait_for(asyncio.shield(lifecycle.ready_check), READY_CHECK_SECONDS)
    except TimeoutError:
        return Response(b'{"status":"database not answering"}', status_code=503, media_type=JSON)
    if ready:
        return Response(b'{"status":"ready"}', media_type=JSON)
    return Response(b'{"status":"database unavailable"}', status_code=503, media_type=JSON)
