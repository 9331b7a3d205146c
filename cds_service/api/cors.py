"""CORS for browser clients (the public CDS Hooks Sandbox): Starlette's middleware, whose refusals
answer a JSON OperationOutcome like every other error instead of plain text."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from cds_service.api.errors import JSON, operation_outcome
from cds_service.platform import wire


class JsonCorsMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode(errors="replace") or "CORS preflight refused"
        body = wire.encode(operation_outcome(f"{reason}.", code="security", kind="cors_refused"))
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return Response(body, status_code=response.status_code, media_type=JSON, headers=headers)
