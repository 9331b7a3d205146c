"""``DirectRoute``: the hook call's route, called without FastAPI's dependency solving (issue 12).
It must hand the endpoint what FastAPI would, and refuse an endpoint it would short-change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from cds_service.api import routes
from cds_service.api.deps import DirectRoute
from cds_service.main import create_app
from tests.conftest import settings_for_tests

pytestmark = pytest.mark.anyio


def test_the_hook_route_is_direct_first_on_the_app_and_the_others_are_not() -> None:
    """The hook call's route is a DirectRoute on the app's own router, matched right after
    FastAPI's /openapi.json (not through an included router); no other route is direct."""
    app = create_app(settings_for_tests())
    own = [route for route in app.router.routes if isinstance(route, APIRoute)]
    assert [(r.path, r.methods, type(r)) for r in own] == [
        ("/cds-services/{service_id}", {"POST"}, DirectRoute)
    ]
    assert isinstance(app.router.routes[0], Route)
    assert app.router.routes[0].path == "/openapi.json"
    assert app.router.routes[1] is own[0]
    included = [r for r in routes.router.routes if isinstance(r, APIRoute)]
    assert included
    assert not [r for r in included if isinstance(r, DirectRoute)]
    schema = app.openapi()["paths"]["/cds-services/{service_id}"]["post"]
    assert [p["name"] for p in schema["parameters"]] == ["service_id"]
    assert schema["requestBody"]["required"] is True


async def test_a_direct_route_hands_over_the_path_text_and_the_request() -> None:
    router = APIRouter()
    seen: list[tuple[str, str, str]] = []

    async def endpoint(a: str, b: str, request: Request) -> Response:
        seen.append((a, b, request.method))
        return Response(b"ok")

    router.add_api_route("/x/{a}/{b}", endpoint, methods=["POST"], route_class_override=DirectRoute)
    app = FastAPI()
    app.include_router(router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post("/x/%C3%A9t%C3%A9/42")
    assert response.status_code == 200
    assert seen == [("été", "42", "POST")]


async def _query(request: Request, q: int) -> Response:
    return Response()


async def _number(n: int, request: Request) -> Response:
    return Response()


async def _header(request: Request, x: Annotated[str, Header()]) -> Response:
    return Response()


async def _dependency(request: Request, d: Annotated[str, Depends(lambda: "d")]) -> Response:
    return Response()


async def _no_request(n: str) -> Response:
    return Response()


@pytest.mark.parametrize("endpoint", [_query, _number, _header, _dependency, _no_request])
def test_a_direct_route_refuses_what_it_would_not_pass(endpoint: Callable[..., Any]) -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="DirectRoute endpoint takes only text path parameters"):
        router.add_api_route(
            "/x/{n}",
            endpoint,
            methods=["POST"],
            route_class_override=DirectRoute,
        )
