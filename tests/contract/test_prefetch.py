"""Prefetch semantics (CDS Hooks 2.0.1) and fetching from the EHR's FHIR server, with respx.

Absent key -> fetched; null -> no data; OperationOutcome entries skipped; a prefetched page's
``next`` link followed; nothing obtainable -> 412. FHIR server faults a real server won't produce
on demand (timeouts, 5xx, malformed bodies) and real HAPI captures are replayed with respx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
import respx

from cds_service.main import create_app
from tests import cases
from tests.builders import (
    ICD10CM,
    coding,
    condition,
    hook_request,
    patient,
    prefetch_for,
    searchset,
)
from tests.conftest import SERVICE_URL, ClientFactory, at, settings_for_tests, shared

pytestmark = pytest.mark.anyio

FHIR = "http://fhir.test/r4"
TOKEN = "opaque-access-token"


class FakeServer:
    """Answers every prefetch query of the service from one patient's resources, as a FHIR
    server would, and records which key each request was for."""

    def __init__(self, resources: list[dict[str, Any]], pid: str) -> None:
        self.full = prefetch_for(resources, pid)
        self.pid = pid
        self.requests: dict[str, list[httpx.Request]] = {}

    def key_of(self, request: httpx.Request) -> str:
        kind = request.url.path.rstrip("/").split("/")[-1]
        if request.url.path.endswith(f"/Patient/{self.pid}"):
            return "patient"
        if kind == "Observation":
            return "observations" if "code" in request.url.params else "activityNotes"
        return {
            "Condition": "conditions",
            "DiagnosticReport": "diagnosticReports",
            "CarePlan": "carePlans",
            "ServiceRequest": "serviceRequests",
        }[kind]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = self.key_of(request)
        if key != "patient":
            assert request.url.params["patient"] == self.pid
        self.requests.setdefault(key, []).append(request)
        return httpx.Response(200, json=self.full[key])

    def count(self) -> int:
        return sum(len(r) for r in self.requests.values())


def mock_server(mock: respx.Router, resources: list[dict[str, Any]], pid: str) -> FakeServer:
    server = FakeServer(resources, pid)
    mock.get(url__startswith=FHIR).mock(side_effect=server)
    return server


def summaries(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [card["summary"] for card in response.json()["cards"]]


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


async def test_prefetch_absent_keys_are_fetched_with_the_bearer_token(
    client_at: ClientFactory,
) -> None:
    record = cases.maya_before_mri()
    full = await client_at(cases.MAYA_SUSPECT_DAY).post(
        SERVICE_URL, json=hook_request(record, pid="maya")
    )
    with respx.mock() as mock:
        server = mock_server(mock, record, "maya")
        body = hook_request(pid="maya", fhir_server=FHIR, token=TOKEN)
        fetched = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert summaries(fetched) == summaries(full)
    assert len(summaries(fetched)) == 1
    assert sorted(server.requests) == sorted(server.full)
    for (request,) in server.requests.values():
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/fhir+json"
    observations_url = str(server.requests["observations"][0].url)
    assert "|" not in observations_url
    assert "%7C73985-4" in observations_url


async def test_prefetch_partly_absent_fetches_only_the_missing_key(
    client_at: ClientFactory,
) -> None:
    record = cases.maya_before_mri()
    body = hook_request(record, pid="maya", fhir_server=FHIR)
    del body["prefetch"]["conditions"]
    with respx.mock() as mock:
        server = mock_server(mock, record, "maya")
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1
    assert list(server.requests) == ["conditions"]
    assert server.count() == 1
    assert "authorization" not in server.requests["conditions"][0].headers


async def test_prefetch_null_means_no_data_and_is_not_fetched(client_at: ClientFactory) -> None:
    record = cases.maya_before_mri()
    body = hook_request(record, pid="maya", fhir_server=FHIR)
    body["prefetch"]["conditions"] = None
    with respx.mock(assert_all_called=False) as mock:
        server = mock_server(mock, record, "maya")
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert summaries(response) == []  # no conditions -> no pain -> no card
    assert server.count() == 0


async def test_prefetch_absent_without_fhir_server_is_412(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    del body["prefetch"]["carePlans"]
    del body["prefetch"]["conditions"]
    response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412
    text = issue(response)["details"]["text"]
    assert "conditions" in text
    assert "carePlans" in text


async def test_prefetch_no_prefetch_no_fhir_server_is_412(client_at: ClientFactory) -> None:
    response = await client_at().post(SERVICE_URL, json=hook_request(pid="maya"))
    assert response.status_code == 412
    assert issue(response)["code"] == "processing"


async def test_prefetch_operation_outcome_entries_are_skipped_and_counted(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "incomplete", "diagnostics": "partial"}],
    }
    body["prefetch"]["conditions"]["entry"].append(
        {"resource": outcome, "search": {"mode": "outcome"}}
    )
    body["prefetch"]["observations"]["entry"].insert(0, {"resource": outcome})
    with caplog.at_level(logging.INFO, logger="cds_service"):
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1
    line = next(r for r in caplog.records if r.getMessage() == "hook_call")
    assert line.fields["outcomeEntriesSkipped"] == 2  # type: ignore[attr-defined]


async def test_prefetch_operation_outcome_in_place_of_data_is_fetched(
    client_at: ClientFactory,
) -> None:
    record = cases.maya_before_mri()
    body = hook_request(record, pid="maya", fhir_server=FHIR)
    body["prefetch"]["conditions"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    with respx.mock() as mock:
        server = mock_server(mock, record, "maya")
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1
    assert list(server.requests) == ["conditions"]


async def test_prefetch_operation_outcome_in_place_of_data_without_server_is_412(
    client_at: ClientFactory,
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    body["prefetch"]["conditions"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412


async def test_prefetch_next_link_of_a_prefetched_page_is_followed(
    client_at: ClientFactory,
) -> None:
    """The sandbox sends only the first page: the confirmed diagnosis is on page 2."""
    record = cases.maya_after_mri()
    body = hook_request(record, pid="maya", fhir_server=FHIR)
    conditions = [r for r in record if r["resourceType"] == "Condition"]
    page2_url = f"{FHIR}/Condition?patient=maya&_count=2&_offset=2"
    body["prefetch"]["conditions"] = searchset(conditions[:2], next_url=page2_url)
    with respx.mock() as mock:
        page2 = mock.get(page2_url).mock(
            return_value=httpx.Response(200, json=searchset(conditions[2:]))
        )
        response = await client_at(cases.MAYA_CONFIRMED_DAY).post(SERVICE_URL, json=body)
    assert page2.call_count == 1
    assert summaries(response)[0].startswith("MRI-confirmed sacral bone stress injury")


async def test_prefetch_next_link_without_fhir_server_uses_the_first_page(
    client_at: ClientFactory,
) -> None:
    record = cases.maya_before_mri()
    body = hook_request(record, pid="maya")
    body["prefetch"]["observations"]["link"].append(
        {"relation": "next", "url": f"{FHIR}/Observation?page=2"}
    )
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1


async def test_prefetch_next_link_to_another_host_is_not_followed(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The token never goes to another host: the link is left alone and the page used as is."""
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR, token=TOKEN)
    body["prefetch"]["conditions"]["link"].append(
        {"relation": "next", "url": "https://attacker.example/steal"}
    )
    with (
        respx.mock(assert_all_called=False) as mock,
        caplog.at_level(logging.INFO, logger="cds_service"),
    ):
        stolen = mock.route(host="attacker.example").mock(
            return_value=httpx.Response(200, json=searchset([]))
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert stolen.call_count == 0
    assert len(summaries(response)) == 1
    line = next(r for r in caplog.records if r.getMessage() == "hook_call")
    assert line.fields["prefetchIncomplete"] == 1  # type: ignore[attr-defined]


async def test_prefetch_next_link_with_fhir_server_unreachable_uses_the_first_page(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    body["prefetch"]["observations"]["link"].append(
        {"relation": "next", "url": f"{FHIR}/Observation?page=2"}
    )
    with respx.mock() as mock, caplog.at_level(logging.INFO, logger="cds_service"):
        mock.get(url__startswith=FHIR).mock(side_effect=httpx.ConnectError("refused"))
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1
    line = next(r for r in caplog.records if r.getMessage() == "hook_call")
    assert line.fields["prefetchIncomplete"] == 1  # type: ignore[attr-defined]


async def test_prefetch_slow_next_page_does_not_hold_the_call(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    body["prefetch"]["observations"]["link"].append(
        {"relation": "next", "url": f"{FHIR}/Observation?page=2"}
    )

    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=searchset([]))

    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=slow)
        response = await client_at(cases.MAYA_SUSPECT_DAY, fhir_timeout_seconds=0.2).post(
            SERVICE_URL, json=body
        )
    assert len(summaries(response)) == 1


async def test_prefetch_next_link_rebased_from_a_proxy_host(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    body["prefetch"]["conditions"]["link"].append(
        {"relation": "next", "url": "http://internal:8080/r4/Condition?page=2"}
    )
    with respx.mock() as mock:
        rebased = mock.get(f"{FHIR}/Condition?page=2").mock(
            return_value=httpx.Response(200, json=searchset([]))
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert rebased.call_count == 1
    assert len(summaries(response)) == 1


async def test_prefetch_paging_past_the_cap_is_412_with_a_clear_message(
    client_at: ClientFactory,
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    del body["prefetch"]["carePlans"]

    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        return httpx.Response(
            200, json=searchset([], next_url=f"{FHIR}/CarePlan?patient=maya&page={page + 1}")
        )

    with respx.mock() as mock:
        route = mock.get(url__startswith=f"{FHIR}/CarePlan").mock(side_effect=endless)
        response = await client_at(fhir_max_pages=3).post(SERVICE_URL, json=body)
    assert response.status_code == 412
    assert "more than 3 pages" in issue(response)["details"]["text"]
    assert route.call_count == 3


async def test_prefetch_hapi_paging_capture_is_followed(client_at: ClientFactory) -> None:
    folder = shared("hapi-responses", "fhir-kit-client-2018")
    page1 = json.loads((folder / "search-results-page-1.json").read_text())
    page2 = json.loads((folder / "search-results-page-2.json").read_text())
    base = "https://example.com"
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=base)
    del body["prefetch"]["carePlans"]
    with respx.mock() as mock:
        first = mock.get(f"{base}/CarePlan", params={"patient": "maya"}).mock(
            return_value=httpx.Response(200, json=page1)
        )
        second = mock.get(base + "/", params={"_getpagesoffset": "3"}).mock(
            return_value=httpx.Response(200, json=page2)
        )
        last = mock.get(base + "/", params={"_getpagesoffset": "6"}).mock(
            return_value=httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert (first.call_count, second.call_count, last.call_count) == (1, 1, 1)
    assert len(summaries(response)) == 1


async def test_prefetch_hapi_patient_not_found_is_412(client_at: ClientFactory) -> None:
    capture = json.loads(
        (shared("hapi-responses", "fhir-kit-client-2018") / "patient-not-found.json").read_text()
    )
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    del body["prefetch"]["patient"]
    with respx.mock() as mock:
        mock.get(f"{FHIR}/Patient/maya").mock(return_value=httpx.Response(404, json=capture))
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412
    assert issue(response)["code"] == "not-found"
    assert "maya" not in response.text  # no patient id in error bodies


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (httpx.Response(401, json={"resourceType": "OperationOutcome"}), "security"),
        (httpx.Response(403), "security"),
        (httpx.Response(500, text="boom"), "processing"),
        (httpx.Response(503), "processing"),
        (httpx.Response(200, text="<html>not json</html>"), "processing"),
        (
            httpx.Response(
                200, json={"resourceType": "Bundle", "entry": [{"resource": {"no": "type"}}]}
            ),
            "processing",
        ),
        (httpx.Response(200, json={"resourceType": "Patient", "id": "x"}), "processing"),
        (
            httpx.Response(
                200,
                json={
                    "resourceType": "Bundle",
                    "entry": [{"resource": {"resourceType": "Condition", "code": "bad"}}],
                },
            ),
            "processing",
        ),
        (httpx.Response(302, headers={"location": "https://elsewhere.example/"}), "processing"),
    ],
)
async def test_prefetch_fhir_server_faults_are_412_with_a_json_body(
    client_at: ClientFactory, answer: httpx.Response, code: str
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR, token=TOKEN)
    del body["prefetch"]["conditions"]
    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Condition").mock(return_value=answer)
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412
    assert issue(response)["code"] == code
    assert TOKEN not in response.text


async def test_prefetch_unreachable_server_is_412(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    del body["prefetch"]["conditions"]
    with respx.mock() as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=httpx.ConnectError("refused"))
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412
    assert issue(response)["diagnostics"] == "fhir_unreachable"


async def test_prefetch_slow_server_hits_the_time_budget_and_is_412(
    client_at: ClientFactory,
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    del body["prefetch"]["conditions"]

    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=searchset([]))

    with respx.mock(assert_all_called=False) as mock:  # the call is cancelled mid-flight
        mock.get(url__startswith=FHIR).mock(side_effect=slow)
        response = await client_at(fhir_timeout_seconds=0.2).post(SERVICE_URL, json=body)
    assert response.status_code == 412
    assert issue(response)["code"] == "timeout"


async def test_prefetch_http_timeout_is_412(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    del body["prefetch"]["conditions"]
    with respx.mock() as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=httpx.ReadTimeout("slow"))
        response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 412
    assert issue(response)["code"] == "timeout"


async def test_prefetch_independent_searches_run_concurrently(client_at: ClientFactory) -> None:
    server = FakeServer(cases.maya_before_mri(), "maya")
    in_flight = 0
    most = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return server(request)

    with respx.mock() as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=answer)
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(
            SERVICE_URL, json=hook_request(pid="maya", fhir_server=FHIR)
        )
    assert len(summaries(response)) == 1
    assert most == 7  # all seven keys in flight at once


async def test_prefetch_for_a_different_patient_in_bundle_is_not_mixed_in(
    client_at: ClientFactory,
) -> None:
    """An include-mode entry or a stray resource of another type does not break the call."""
    body = hook_request(cases.maya_before_mri(), pid="maya")
    body["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Encounter",
                "id": "e1",
                "period": {"start": "2025-09-02"},
            },
            "search": {"mode": "include"},
        }
    )
    body["prefetch"]["conditions"]["entry"].append(
        {"resource": {"resourceType": "Practitioner", "id": "pr1"}, "search": {"mode": "include"}}
    )
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1


async def test_prefetch_absolute_references_are_understood(client_at: ClientFactory) -> None:
    record = cases.maya_after_mri()
    for r in record:
        if r["resourceType"] == "Condition" and "evidence" in r:
            r["evidence"][0]["detail"][0]["reference"] = f"{FHIR}/DiagnosticReport/mri-2025-10-03"
    plan = {
        "resourceType": "CarePlan",
        "id": "cp",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"{FHIR}/Patient/maya"},
        "addresses": [{"reference": f"{FHIR}/Condition/sacral-bsi-1/_history/3"}],
    }
    response = await client_at(cases.MAYA_CONFIRMED_DAY).post(
        SERVICE_URL, json=hook_request([*record, plan], pid="maya")
    )
    assert summaries(response) == []  # the plan in the chart addresses the confirmed Condition


async def test_prefetch_fetched_patient_missing_entirely_still_answers(
    client_at: ClientFactory,
) -> None:
    body = hook_request(
        [
            patient("p9", "male", "1990-01-01"),
            condition("c", coding(ICD10CM, "M54.42"), onset="2025-09-01", patient_id="p9"),
        ],
        pid="p9",
    )
    body["prefetch"]["patient"] = None
    response = await client_at().post(SERVICE_URL, json=body)
    assert summaries(response) == []


async def test_prefetch_resources_about_another_patient_are_dropped(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An EHR that mixed up patients must not make this patient's card."""
    record = cases.maya_before_mri()
    for resource in record:
        if resource["resourceType"] == "Condition":
            resource["subject"] = {"reference": f"{FHIR}/Patient/someone-else"}
    with caplog.at_level(logging.INFO, logger="cds_service"):
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(
            SERVICE_URL, json=hook_request(record, pid="maya")
        )
    assert summaries(response) == []
    line = next(r for r in caplog.records if r.getMessage() == "hook_call")
    assert line.fields["otherPatientDropped"] == 3  # type: ignore[attr-defined]
    assert line.fields["outcome"] == "no_qualifying_pain"  # type: ignore[attr-defined]


async def test_prefetch_fetching_still_works_after_the_lifespan_ran_twice() -> None:
    """Found by fuzzing: a host that runs the lifespan again must not leave a closed client."""
    app = create_app(settings_for_tests(), clock=at(cases.MAYA_SUSPECT_DAY))
    for _ in range(2):
        async with app.router.lifespan_context(app):
            pass
    record = cases.maya_before_mri()
    body = hook_request(record, pid="maya", fhir_server=FHIR)
    del body["prefetch"]["conditions"]
    with respx.mock() as mock:
        mock_server(mock, record, "maya")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cds.test"
        ) as client:
            response = await client.post(SERVICE_URL, json=body)
    assert len(summaries(response)) == 1
