"""Bytes that are not UTF-8 (issue 9, item 4): a request body is a 400 that says so; a FHIR
server's answer is read in the charset it declares, or is a 412 that says why. Never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from tests import cases
from tests.builders import hook_request, prefetch_for
from tests.conftest import SERVICE_URL, ClientFactory

pytestmark = pytest.mark.anyio
FHIR = "http://fhir.test/r4"


def body_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def maya() -> dict[str, Any]:
    return hook_request(cases.maya_before_mri(), pid="maya")


async def test_invalid_utf8_in_a_hook_body_is_400_naming_the_byte(
    client_at: ClientFactory,
) -> None:
    raw = body_bytes(maya()).replace(b'"patient-view"', b'"patient-\xffview"')
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, content=raw)
    assert response.status_code == 400, response.text
    text = response.json()["issue"][0]["details"]["text"]
    assert "not valid UTF-8" in text
    assert "0xff" in text


async def test_latin1_byte_inside_a_prefetched_resource_is_400(client_at: ClientFactory) -> None:
    """The prefetch is read after the request is parsed: the byte must be caught at the door."""
    body = maya()
    body["prefetch"]["patient"]["name"] = [{"text": "Maya JOSE_NAME"}]
    raw = body_bytes(body).replace(b"JOSE_NAME", "José".encode("latin-1"))
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, content=raw)
    assert response.status_code == 400, response.text
    assert "not valid UTF-8" in response.json()["issue"][0]["details"]["text"]


async def test_invalid_utf8_in_a_feedback_body_is_400(client_at: ClientFactory) -> None:
    raw = (
        b'{"feedback":[{"card":"\xff\xfe","outcome":"accepted",'
        b'"outcomeTimestamp":"2025-09-30T12:00:00Z"}]}'
    )
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL + "/feedback", content=raw)
    assert response.status_code == 400, response.text
    assert "not valid UTF-8" in response.json()["issue"][0]["details"]["text"]


def fhir_server_in(charset: str | None, encoding: str) -> Any:
    """A FHIR server with Maya's record whose answers are encoded in ``encoding`` and declare
    ``charset`` (none: no charset parameter)."""
    full = prefetch_for(cases.maya_before_mri(), "maya")
    for entry in full["conditions"]["entry"]:
        entry["resource"]["note"] = [{"text": "Läuferin, seit März"}]  # non-ASCII in the record
    kinds = {
        "Condition": "conditions",
        "DiagnosticReport": "diagnosticReports",
        "CarePlan": "carePlans",
        "ServiceRequest": "serviceRequests",
    }

    def answer(request: httpx.Request) -> httpx.Response:
        kind = request.url.path.rstrip("/").split("/")[-1]
        if request.url.path.endswith("/Patient/maya"):
            key = "patient"
        elif kind == "Observation":
            key = "observations" if "code" in request.url.params else "activityNotes"
        else:
            key = kinds[kind]
        content_type = "application/fhir+json" + (f"; charset={charset}" if charset else "")
        return httpx.Response(
            200,
            content=json.dumps(full[key], ensure_ascii=False).encode(encoding),
            headers={"Content-Type": content_type},
        )

    return answer


async def fetched(client_at: ClientFactory, answer: Any) -> httpx.Response:
    with respx.mock() as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=answer)
        response: httpx.Response = await client_at(cases.MAYA_SUSPECT_DAY).post(
            SERVICE_URL, json=hook_request(pid="maya", fhir_server=FHIR)
        )
    return response


@pytest.mark.parametrize("charset", ["iso-8859-1", "ISO-8859-1", "latin1", "windows-1252"])
async def test_fhir_server_answering_in_latin1_is_read_by_its_charset(
    client_at: ClientFactory, charset: str
) -> None:
    utf8 = await fetched(client_at, fhir_server_in("utf-8", "utf-8"))
    latin = await fetched(client_at, fhir_server_in(charset, "latin-1"))
    assert latin.status_code == utf8.status_code == 200, latin.text
    assert len(latin.json()["cards"]) == 1
    assert latin.json()["cards"][0]["summary"] == utf8.json()["cards"][0]["summary"]


async def test_fhir_server_sending_latin1_bytes_without_a_charset_is_412_saying_so(
    client_at: ClientFactory,
) -> None:
    response = await fetched(client_at, fhir_server_in(None, "latin-1"))
    assert response.status_code == 412, response.text
    assert "not valid UTF-8" in response.json()["issue"][0]["details"]["text"]


async def test_fhir_server_declaring_an_unknown_charset_is_412(client_at: ClientFactory) -> None:
    response = await fetched(client_at, fhir_server_in("x-no-such-charset", "utf-8"))
    assert response.status_code == 412, response.text
    assert "charset" in response.json()["issue"][0]["details"]["text"]
