"""The spec's own example requests (../shared/data/cds-hooks-examples) are accepted.

Their ``fhirServer`` points at hosts we must never call, so it is replaced with a loopback URL
answered by respx (empty searches, a minimal Patient), as the folder's README asks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.builders import PREFETCH_KEYS, searchset
from tests.conftest import SERVICE_URL, ClientFactory, shared
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio

LOOPBACK = "http://127.0.0.1:8090/fhir"


def example(*parts: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(shared("cds-hooks-examples", *parts)).read_text())
    return data


def empty_server(request: httpx.Request) -> httpx.Response:
    parts = request.url.path.rstrip("/").split("/")
    if parts[-2] == "Patient":
        return httpx.Response(200, json={"resourceType": "Patient", "id": parts[-1]})
    return httpx.Response(200, json=searchset([]))


async def post(client_at: ClientFactory, body: dict[str, Any]) -> httpx.Response:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=LOOPBACK).mock(side_effect=empty_server)
        return await client_at().post(SERVICE_URL, json=body)


async def test_spec_example_hook_request_is_accepted(client_at: ClientFactory) -> None:
    body = example("spec-2.0.1", "02-hook-request--example.json")
    assert body["fhirServer"] != LOOPBACK
    body["fhirServer"] = LOOPBACK
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=LOOPBACK).mock(side_effect=empty_server)
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    token = body["fhirAuthorization"]["access_token"]
    assert {c.request.headers["authorization"] for c in route.calls} == {f"Bearer {token}"}
    assert route.call_count == len(
        PREFETCH_KEYS
    )  # its only prefetch key (patientToGreet) is not ours


async def test_spec_example_with_extensions_ignores_them(client_at: ClientFactory) -> None:
    body = example("spec-2.0.1", "28-hook-request--extensions.json")
    body["fhirServer"] = LOOPBACK
    # The spec fragment has no patientId (it shows only the extension): a patient-view call needs one.
    missing = await post(client_at, body)
    assert missing.status_code == 400
    assert missing.json()["issue"][0]["expression"] == ["context.patientId"]
    body["context"]["patientId"] = "1288992"
    accepted = await post(client_at, body)
    assert accepted.status_code == 200
    assert accepted.json() == {"cards": []}


@pytest.mark.parametrize("name", ["01-context--examples.json", "02-context--examples.json"])
async def test_spec_hook_library_contexts_are_accepted(client_at: ClientFactory, name: str) -> None:
    context = example("hook-library-patient-view", name)["context"]
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": context,
        "prefetch": dict.fromkeys(PREFETCH_KEYS),
    }
    response = await post(client_at, body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("01-with-prefetch.request.json", 200),
        ("02-no-prefetch-fetches-from-fhirServer.request.json", 200),
        ("03-no-prefetch-no-fhirServer.request.json", 412),
    ],
)
async def test_sandbox_shaped_requests(client_at: ClientFactory, name: str, status: int) -> None:
    response = await post(client_at, example("sandbox-cds-services", name))
    assert response.status_code == status
    if status == 200:
        assert_spec_response(response.json())
    else:
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_sandbox_unknown_patient_on_fhir_server_is_412(client_at: ClientFactory) -> None:
    body = example("sandbox-cds-services", "04-unknown-patient-on-fhirServer.request.json")
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=LOOPBACK).mock(
            return_value=httpx.Response(404, json={"resourceType": "OperationOutcome"})
        )
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412


async def test_assembled_synthea_request_with_real_prefetch_is_accepted(
    client_at: ClientFactory,
) -> None:
    """Real search results under keys partly matching ours: ``patient`` and ``conditions`` are
    used as sent, the keys it lacks are fetched, its own extra keys are ignored."""
    body = example("assembled-from-synthea", "patient-view-with-prefetch.request.json")
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=LOOPBACK).mock(side_effect=empty_server)
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    fetched = sorted({c.request.url.path.rsplit("/", 1)[-1] for c in route.calls})
    assert fetched == ["CarePlan", "DiagnosticReport", "Observation", "ServiceRequest"]
