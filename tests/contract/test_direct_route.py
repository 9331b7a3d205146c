"""``DirectRoute``: the hook call's route, called without FastAPI's dependency solving (issue 12).
It must hand the endpoint what FastAPI would, and refuse an endpoint it would short-change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator
from starlette.applications import Starlette
from starlette.routing import Host, Mount, Route

from cds_service.api import routes
from cds_service.api.deps import DirectRoute
from cds_service.main import create_app
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, at, settings_for_tests

pytestmark = pytest.mark.anyio


def test_the_hook_route_is_direct_on_the_app_s_own_router_and_the_others_are_not() -> None:
    """Discovery and the hook call are on the app's own router, after FastAPI's /openapi.json
    (a call is not matched through an included router), and listed first in the OpenAPI
    document as before; only the hook call's route is direct."""
    app = create_app(settings_for_tests())
    assert isinstance(app.router.routes[0], Route)
    assert app.router.routes[0].path == "/openapi.json"
    own = [(r.path, r.methods, type(r)) for r in app.router.routes[1:3] if isinstance(r, APIRoute)]
    assert own == [
        ("/cds-services", {"GET"}, APIRoute),
        ("/cds-services/{service_id}", {"POST"}, DirectRoute),
    ]
    included = [r for r in routes.router.routes if isinstance(r, APIRoute)]
    assert included
    assert not [r for r in included if isinstance(r, DirectRoute)]
    spec = app.openapi()
    assert list(spec["paths"])[:3] == [
        "/cds-services",
        "/cds-services/{service_id}",
        "/cds-services/{service_id}/feedback",
    ]
    schema = spec["paths"]["/cds-services/{service_id}"]["post"]
    assert [p["name"] for p in schema["parameters"]] == ["service_id"]
    assert schema["requestBody"]["required"] is True


@pytest.mark.parametrize("mount", ["path", "host"])
async def test_the_app_under_a_mount_with_its_own_parameter_still_answers(mount: str) -> None:
    """An enclosing mount's or host's parameters are not the hook route's: a hospital that
    mounts the service under /t/{tenant} (or serves it per sub-domain) gets its cards."""
    app = create_app(settings_for_tests(), clock=at(cases.MAYA_SUSPECT_DAY))
    outer = Starlette(
        routes=[Mount("/t/{tenant}", app=app)]
        if mount == "path"
        else [Host("{sub}.example.org", app=app)]
    )
    base = "http://h.example.org" if mount == "host" else "http://t"
    path = "/t/acme" + SERVICE_URL if mount == "path" else SERVICE_URL
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url=base) as client:
        response = await client.post(path, json=hook_request(cases.maya_before_mri(), pid="maya"))
    assert response.status_code == 200
    assert len(response.json()["cards"]) == 1


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


def _not_a_coroutine(n: str, request: Request) -> Response:
    return Response()


async def _other_name(m: str, request: Request) -> Response:  # the path says {n}
    return Response()


async def _a_rule(n: Annotated[str, Path(min_length=5)], request: Request) -> Response:
    return Response()


async def _a_validator(n: Annotated[str, AfterValidator(str.upper)], request: Request) -> Response:
    return Response()


async def _a_dict(n: str, request: Request) -> dict[str, str]:
    return {"n": n}


async def _text(n: str, request: Request) -> Response:
    return Response()


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        *(
            ("/x/{n}", endpoint)
            for endpoint in (
                _query,
                _number,
                _header,
                _dependency,
                _no_request,
                _not_a_coroutine,
                _other_name,
                _a_rule,
                _a_validator,
                _a_dict,
            )
        ),
        ("/x/{n:int}", _text),  # the converter would hand over a number
    ],
)
def test_a_direct_route_refuses_what_it_would_not_pass(
    path: str, endpoint: Callable[..., Any]
) -> None:
    """What FastAPI would check or convert and a direct call would not: refused when the route
    is built, not found on the first request."""
    router = APIRouter()
    with pytest.raises(TypeError, match="a DirectRoute endpoint is a coroutine function"):
        router.add_api_route(path, endpoint, methods=["POST"], route_class_override=DirectRoute)


def test_a_direct_route_takes_a_whole_path_parameter() -> None:
    router = APIRouter()
    router.add_api_route("/x/{n:path}", _text, methods=["POST"], route_class_override=DirectRoute)
    assert isinstance(router.routes[0], DirectRoute)
