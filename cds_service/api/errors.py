"""Errors -> HTTP: every error answers a JSON OperationOutcome; never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.errors import CdsError, InternalError
from cds_service.logs import log_event
from cds_service.platform import wire

JSON = "application/json"


def operation_outcome(
    message: str, *, code: str, kind: str, field: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error",
        "code": code,
        "details": {"text": message},
        "diagnostics": kind,
    }
    if field:
        issue["expression"] = [field]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_response(error: CdsError) -> Response:
    body = operation_outcome(
        error.message, code=error.issue_code, kind=error.kind, field=error.field
    )
    headers = None
    if error.status == 401:
        # RFC 6750 3.1: invalid_token when a token came; no error code when none did.
        presented = getattr(error, "presented", False)
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"' if presented else "Bearer"}
    return Response(wire.encode(body), status_code=error.status, media_type=JSON, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(CdsError)
    async def _cds_error(_: Request, exc: CdsError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kinds = {404: ("not-found", "not_found"), 405: ("not-supported", "method_not_allowed")}
        code, kind = kinds.get(exc.status_code, ("processing", "http_error"))
        message = str(exc.detail)
        path = request.url.path
        if exc.status_code == 404 and len(path) > 1 and path.endswith("/"):
            message = (
                f"Not Found: no path ends with '/' here; the service's paths are written without "
                f"it (e.g. {path.rstrip('/') or '/'})."
            )
        body = operation_outcome(message, code=code, kind=kind)
        headers = dict(exc.headers) if exc.headers else None
        return Response(
            wire.encode(body), status_code=exc.status_code, media_type=JSON, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        body = operation_outcome(
            "Invalid request.", code="invalid", kind="bad_request", field=field
        )
        return Response(wire.encode(body), status_code=400, media_type=JSON)


INTERNAL_ERROR = operation_outcome(
    InternalError.MESSAGE, code=InternalError.issue_code, kind=InternalError.kind
)


class CatchAllMiddleware:
    """The last line: any exception becomes a JSON 500 and one log line (type and place, never
    the message, which may hold data), and goes no further, so the server prints no traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        send_failed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, send_failed
            if message["type"] == "http.response.start":
                started = True
            try:
                await send(message)
            except Exception:
                send_failed = True
                raise

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if send_failed:
                # The server could not take the answer: the client broke the protocol or went
                # away (the server has answered it, or closed). Its doing, not a bug.
                log_event("response_not_delivered", level=logging.WARNING, exc_info=True)
                return
            log_event("unhandled_error", level=logging.ERROR, exc_info=True)
            if started:
                return
            body = wire.encode(INTERNAL_ERROR)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
