"""The routes' collaborators, built once by ``create_app`` and handed to each route through a
typed dependency (``Annotated[Collaborators, Depends(...)]``), not read from untyped state; the
hook call's route (a ``DirectRoute``, below) reads them with ``collaborators(request)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, get_type_hints

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from starlette.convertors import PathConvertor, StringConvertor

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
    way rather than through ``Deps``: it is a ``DirectRoute``, which solves no dependencies."""
    found = request.app.state.collaborators
    assert isinstance(found, Collaborators)
    return found


async def collaborators_of(request: Request) -> Collaborators:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per call.
    return collaborators(request)


Deps = Annotated[Collaborators, Depends(collaborators_of)]


class DirectRoute(APIRoute):
    """A route whose endpoint takes only its path parameters (as text) and the ``Request``, and
    is called with them directly: FastAPI's dependency solving and parameter validation (which
    would only hand the same strings over) are skipped. The OpenAPI document is still built from
    the endpoint's signature. Measured with ``bench.hotpath``: the hook call's route, about 9%
    of a call.

    Any other parameter (a query, a header, a body, a dependency) would be silently left out,
    so the route refuses to be built with one, as it refuses an endpoint that is not a
    coroutine function or does not take exactly its path's parameters. Parameters of an
    enclosing mount or host (``Mount("/t/{tenant}", app)``) are not the endpoint's: only its
    own are passed."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        others = (
            dependant.query_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.body_params,
            dependant.dependencies,
        )
        special = (
            dependant.websocket_param_name,
            dependant.http_connection_param_name,
            dependant.response_param_name,
            dependant.background_tasks_param_name,
            dependant.security_scopes_param_name,
        )
        own = dependant.path_params
        # Plain text in, as the path gives it: no rule FastAPI would check (a length, a
        # pattern, a validator), no converter that makes it a number.
        texts = all(
            p.field_info.annotation is str and p.alias == p.name and not p.field_info.metadata
            for p in own
        ) and all(
            isinstance(c, StringConvertor | PathConvertor) for c in self.param_convertors.values()
        )
        answer = get_type_hints(endpoint).get("return")
        if (
            any(others)
            or any(special)
            or not texts
            or {p.name for p in own} != set(self.param_convertors)
            or dependant.request_param_name != "request"
            or not inspect.iscoroutinefunction(endpoint)
            or not (isinstance(answer, type) and issubclass(answer, Response))
        ):
            raise TypeError(
                f"{path}: a DirectRoute endpoint is a coroutine function that takes exactly its "
                "path's parameters, as plain text, and `request`, and returns a Response"
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        names = tuple(p.name for p in self.dependant.path_params)

        async def handler(request: Request) -> Response:
            found = request.path_params
            response = await endpoint(request=request, **{name: found[name] for name in names})
            assert isinstance(response, Response)
            return response

        return handler
