"""The SMART app's routes (issue 11; docs/design/smart-app.md): the launch page, which only an
allowlisted FHIR server may launch; the app page and its static files; the view API, which
reads the record with the user's token from an allowlisted server only."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
from pathlib import Path
from typing import Annotated

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from cds_service.api.deps import Deps
from cds_service.api.errors import JSON
from cds_service.api.routes import read_body
from cds_service.errors import BadRequestError, CdsError, ForbiddenError, InternalError
from cds_service.logs import log_event
from cds_service.platform.wire import BearerToken, FhirId
from cds_service.services.sacral_bsi.app_view import app_view
from cds_service.services.sacral_bsi.service import SacralBsiService

router = APIRouter(prefix="/smart")
APP = Path(__file__).resolve().parents[1] / "smart_app"
PAGES, STATIC = APP / "pages", APP / "static"
# What the app asks the EHR for: launch context, the patient's record read-only, and CarePlan
# writes to save the plan (SMART v2 scopes; v1 servers map them).
SCOPE = "launch launch/patient patient/*.rs patient/CarePlan.cu"
# The pages run only the app's own scripts; the config is data (application/json), not code.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; connect-src *; img-src 'self' data:"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_files() -> StaticFiles:
    """The app's scripts, styles and the vendored SMART client library."""
    return StaticFiles(directory=STATIC)


class ViewRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    iss: Annotated[str, msgspec.Meta(max_length=2000)]
    patient: FhirId
    access_token: BearerToken


_VIEW = msgspec.json.Decoder(ViewRequest)


def _page(name: str, status: int = 200, **values: str) -> HTMLResponse:
    text = (PAGES / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _allowed(iss: str, deps: Deps) -> str | None:
    """The allowlisted base URL ``iss`` names (trailing slash aside), or None."""
    wanted = iss.rstrip("/")
    return wanted if wanted in deps.settings.smart_allowed_iss else None


# The launch page takes these, each once. Anything else (fhirclient also reads fhirServiceUrl,
# clientId, patientId ... from the address) or a repeated one is refused: the server checks one
# iss, and the browser must not be able to read another.
_LAUNCH_PARAMETERS = frozenset({"iss", "launch"})


@router.get("/launch", summary="SMART app launch (EHR: launch + iss; standalone: iss)")
async def launch(request: Request, deps: Deps) -> HTMLResponse:
    names = [name for name, _ in request.query_params.multi_items()]
    if len(names) != len(set(names)) or not set(names) <= _LAUNCH_PARAMETERS:
        log_event("smart_launch", level=logging.WARNING, status=400, outcome="bad_parameters")
        return _page(
            "refused.html",
            status=400,
            reason="A launch takes iss and launch, each once, and nothing else.",
        )
    iss = request.query_params.get("iss")
    allowed = deps.settings.smart_allowed_iss
    if iss is None:
        choices = "".join(
            f'<li><a href="launch?iss={html.escape(u, quote=True)}">{html.escape(u)}</a></li>'
            for u in allowed
        )
        return _page("choose.html", choices=choices or "<li>none configured</li>")
    if _allowed(iss, deps) is None:
        log_event("smart_launch", level=logging.WARNING, status=403, outcome="iss_not_allowed")
        return _page(
            "refused.html",
            status=403,
            reason="This FHIR server is not one this deployment allows "
            "(<code>CDS_SMART_ALLOWED_ISS</code>).",
        )
    # Standalone (no launch parameter): no "launch" scope, which a strict server refuses then.
    scope = SCOPE if "launch" in request.query_params else SCOPE.replace("launch ", "", 1)
    config = json.dumps(
        {
            "clientId": deps.settings.smart_client_id,
            "scope": scope,
            "redirectUri": "app",
            "iss": _allowed(iss, deps),
        }
    )
    # Inside <script type="application/json"> nothing is decoded: "<", ">" and "&" become JSON
    # escapes, so no "</script>" can close the element early.
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        config = config.replace(char, escape)
    log_event("smart_launch", status=200, outcome="launching")
    return _page("launch.html", config=config)


@router.get("/app", summary="The SMART app")
async def app_page() -> HTMLResponse:
    return _page("app.html")


@router.post("/api/view", summary="The evidence and the plan for the app")
async def view(request: Request, deps: Deps) -> Response:
    try:
        body = await read_body(request, deps.settings)
        try:
            asked = _VIEW.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"Not a view request: {exc}.") from None
        iss = _allowed(asked.iss, deps)
        if iss is None:
            raise ForbiddenError("This FHIR server is not one the app may read from.")
        service = deps.registry.get("sacral-bsi")
        assert isinstance(service, SacralBsiService)
        # No delivery and no ledger: the view writes nothing and issues no card.
        env = dataclasses.replace(deps.call_environment(), writer=None, ledger=None)
        result = await app_view(service, iss, asked.patient, asked.access_token, env)
    except CdsError as exc:
        log_event("smart_view", level=logging.WARNING, status=exc.status, outcome=exc.kind)
        raise
    except Exception:
        log_event("smart_view", level=logging.ERROR, exc_info=True, status=500)
        raise InternalError from None
    log_event("smart_view", status=200, outcome=result["kind"])
    return Response(
        msgspec.json.encode(result), media_type=JSON, headers={"Cache-Control": "no-store"}
    )
