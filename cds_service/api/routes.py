"""HTTP routes: discovery, the service call, health. Thin: parse, call the service, encode."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from cds_service import cds_hooks as wire
from cds_service.api.auth import authenticate
from cds_service.api.errors import JSON
from cds_service.errors import (
    BadRequestError,
    CdsError,
    ClientDisconnectedError,
    InternalError,
    PayloadTooLargeError,
    RequestTimeoutError,
)
from cds_service.hooks.service import CallEnvironment
from cds_service.logs import log_event
from cds_service.store import FeedbackRecord, is_ready

router = APIRouter()
_T = TypeVar("_T")

_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["hook", "hookInstance", "context"],
    "properties": {
        "hook": {"type": "string", "example": "patient-view"},
        "hookInstance": {"type": "string", "format": "uuid"},
        "fhirServer": {"type": "string", "format": "uri"},
        "fhirAuthorization": {
            "type": "object",
            "required": ["access_token", "token_type"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"type": "string"},
                "expires_in": {"type": "integer"},
                "scope": {"type": "string"},
                "subject": {"type": "string"},
            },
        },
        "context": {
            "type": "object",
            "required": ["patientId"],
            "properties": {
                "userId": {"type": "string"},
                "patientId": {"type": "string"},
                "encounterId": {"type": "string"},
            },
        },
        "prefetch": {"type": "object", "additionalProperties": True},
    },
}


_FEEDBACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["feedback"],
    "properties": {
        "feedback": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["card", "outcome", "outcomeTimestamp"],
                "properties": {
                    "card": {"type": "string"},
                    "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
                    "outcomeTimestamp": {"type": "string", "format": "date-time"},
                    "acceptedSuggestions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": {"type": "string"}},
                        },
                    },
                    "overrideReason": {"type": "object"},
                },
            },
        }
    },
}


@router.get("/cds-services", summary="CDS Hooks discovery")
async def discovery(request: Request) -> Response:
    return Response(request.app.state.discovery_body, media_type=JSON)


@router.post(
    "/cds-services/{service_id}",
    summary="Call a CDS service",
    openapi_extra={
        "requestBody": {"required": True, "content": {JSON: {"schema": _REQUEST_SCHEMA}}}
    },
)
async def call_service(service_id: str, request: Request) -> Response:
    state = request.app.state
    started = time.perf_counter()
    hook_instance: str | None = None

    def log_call(level: int, status: int, outcome: str, **fields: Any) -> None:
        log_event(
            "hook_call",
            level=level,
            exc_info=status == 500,
            hookInstance=hook_instance,
            service=service_id if service_id in state.registry else None,
            status=status,
            outcome=outcome,
            **fields,
            latencyMs=round((time.perf_counter() - started) * 1000, 2),
        )

    try:
        service = state.registry.get(service_id)
        caller = await authenticate(request)
        hook_request = await _decoded_body(request, wire.decode_request)
        hook_instance = hook_request.hookInstance
        env = CallEnvironment(
            http=state.http,
            clock=state.clock,
            fhir_timeout_seconds=state.settings.fhir_timeout_seconds,
            fhir_max_pages=state.settings.fhir_max_pages,
            fhir_max_response_bytes=state.settings.fhir_max_response_bytes,
            fhir_max_total_bytes=state.settings.fhir_max_total_bytes,
            delivery=state.settings.careplan_delivery,
            writer=state.writer,
            ledger=state.ledger,
            issuer=caller.iss if caller else None,
        )
        outcome = await service.call(hook_request, env)
    except CdsError as exc:
        log_call(logging.WARNING, exc.status, exc.kind)
        raise
    except Exception:
        log_call(logging.ERROR, 500, InternalError.kind)
        raise InternalError from None
    log_call(
        logging.INFO,
        200,
        outcome.outcome,
        cards=len(outcome.response.cards),
        **({"careplan": outcome.delivery} if outcome.delivery else {}),
        contentVersion=state.content_version,
        **outcome.stats.as_log(),
    )
    return Response(wire.encode(outcome.response), media_type=JSON)


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="Feedback on the cards of a CDS service",
    openapi_extra={
        "requestBody": {"required": True, "content": {JSON: {"schema": _FEEDBACK_SCHEMA}}}
    },
)
async def feedback(service_id: str, request: Request) -> Response:
    state = request.app.state
    try:
        state.registry.get(service_id)
        await authenticate(request)
        received = await _decoded_body(request, wire.decode_feedback)
        _refuse_future_outcomes(received, state.clock(), state.settings.jwt_leeway_seconds)
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
        known = await asyncio.to_thread(state.ledger.store_feedback, records, state.clock())
    except CdsError as exc:
        log_event("feedback", level=logging.WARNING, status=exc.status, outcome=exc.kind)
        raise
    except Exception:
        log_event(
            "feedback", level=logging.ERROR, exc_info=True, status=500, outcome=InternalError.kind
        )
        raise InternalError from None
    log_event(
        "feedback",
        service=service_id,
        status=200,
        items=len(records),
        accepted=sum(1 for r in records if r.outcome == "accepted"),
        overridden=sum(1 for r in records if r.outcome == "overridden"),
        unknownCards=known.count(False),
    )
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


async def _decoded_body(request: Request, decode: Callable[[bytes], _T]) -> _T:
    """The request body, size-checked, decoded by ``decode``; a body that is not what the spec
    asks for is a 400 naming the field."""
    body = await _read_body(request, request.app.state.settings.max_body_bytes)
    try:
        return decode(body)
    except wire.RequestError as exc:
        raise BadRequestError(str(exc), field=exc.field) from None


async def _read_body(request: Request, limit: int) -> bytes:
    seconds = request.app.state.settings.request_read_timeout_seconds
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
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"Request body larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"Request body larger than {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnectedError from None
    return b"".join(chunks)


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/readyz", summary="Readiness: the database answers")
async def readyz(request: Request) -> Response:
    if is_ready(request.app.state.engine):
        return Response(b'{"status":"ready"}', media_type=JSON)
    return Response(b'{"status":"database unavailable"}', status_code=503, media_type=JSON)
