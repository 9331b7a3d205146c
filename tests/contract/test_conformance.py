"""Every kind of response the service can produce, checked against the CDS Hooks 2.0.1 rules
(tests/response_rules.py): each card kind, system actions, no card, and every error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import httpx
import pytest
import respx

from tests import cases
from tests.builders import ICD10CM, LOINC, SNOMED, coding, condition, hook_request, report
from tests.conftest import SERVICE_URL, ClientFactory, record_figure
from tests.response_rules import RuleCounter, assert_operation_outcome, assert_spec_response

pytestmark = pytest.mark.anyio
FHIR = "http://fhir.test/r4"
DAY = date(2025, 9, 30)
Call = Callable[[ClientFactory], Awaitable[httpx.Response]]


def post(body: dict[str, Any], day: date = DAY, **settings: Any) -> Call:
    async def call(client_at: ClientFactory) -> httpx.Response:
        return await client_at(day, **settings).post(SERVICE_URL, json=body)

    return call


def written(client_at: ClientFactory) -> Awaitable[httpx.Response]:
    async def call() -> httpx.Response:
        reply = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "201 Created", "location": "CarePlan/9"}}],
        }
        with respx.mock() as mock:
            mock.post(FHIR).mock(return_value=httpx.Response(200, json=reply))
            client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
            return await client.post(
                SERVICE_URL, json=hook_request(cases.maya_after_mri(), pid="maya", fhir_server=FHIR)
            )

    return call()


def runner(*resources: dict[str, Any]) -> dict[str, Any]:
    return hook_request(cases.runner_with(*resources))


CARD_RESPONSES: dict[str, Call] = {
    "suspicion, warning, SI label": post(
        hook_request(cases.maya_before_mri(), pid="maya"), cases.MAYA_SUSPECT_DAY
    ),
    "suspicion, info": post(
        runner(
            condition(
                "b", coding(SNOMED, "279043006"), text="right buttock pain", onset="2025-09-10"
            )
        )
    ),
    "plan, condition and report, referral": post(
        hook_request(cases.maya_after_mri(), pid="maya"), cases.MAYA_CONFIRMED_DAY
    ),
    "plan, condition only": post(
        runner(condition("bsi", coding(ICD10CM, "M48.48XA"), recorded="2025-09-25"))
    ),
    "plan, coded report only": post(
        runner(
            report(
                "m",
                coding(LOINC, "24867-4"),
                effective="2025-09-25",
                conclusion="Left sacral stress reaction.",
                conclusion_codes=[coding(SNOMED, "240197007")],
            )
        )
    ),
    "confirm first": post(
        runner(
            report(
                "m",
                coding(LOINC, "24867-4"),
                effective="2025-09-25",
                conclusion="Impression: right sacral stress fracture.",
            )
        )
    ),
    "plan as a system action": post(
        hook_request(cases.maya_after_mri(), pid="maya"),
        cases.MAYA_CONFIRMED_DAY,
        careplan_delivery="system-action",
    ),
    "plan written by the service": written,
    "no card": post(hook_request(cases.daniel(), pid="daniel")),
}


def error(body: Any, status: int, path: str = SERVICE_URL, **settings: Any) -> tuple[Call, int]:
    async def call(client_at: ClientFactory) -> httpx.Response:
        client = client_at(DAY, **settings)
        if isinstance(body, bytes):
            return await client.post(path, content=body)
        return await client.post(path, json=body)

    return call, status


ERROR_RESPONSES: dict[str, tuple[Call, int]] = {
    "malformed JSON": error(b"{nope", 400),
    "wrong hook": error({**hook_request(cases.daniel(), pid="daniel"), "hook": "order-sign"}, 400),
    "missing patientId": error({"hook": "patient-view", "hookInstance": "x", "context": {}}, 400),
    "unknown service": error(hook_request(cases.daniel(), pid="daniel"), 404, "/cds-services/none"),
    "nothing prefetched, no fhirServer": error(hook_request(pid="p1"), 412),
    "body too large": error(b" " * 5000, 413, max_body_bytes=1024),
    "no token when one is required": error(
        hook_request(cases.daniel(), pid="daniel"),
        401,
        require_jwt=True,
        public_base_url="http://cds.test",
    ),
    "invalid feedback": error({"feedback": []}, 400, SERVICE_URL + "/feedback"),
}


@pytest.mark.parametrize("name", list(CARD_RESPONSES))
async def test_conformance_card_responses(client_at: ClientFactory, name: str) -> None:
    before = RuleCounter.checks
    response = await CARD_RESPONSES[name](client_at)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    cards = assert_spec_response(response.json())
    assert (cards == 0) == (name == "no card")
    record_figure("conformance: responses checked")
    record_figure("conformance: rule checks", RuleCounter.checks - before)


@pytest.mark.parametrize("name", list(ERROR_RESPONSES))
async def test_conformance_error_responses(client_at: ClientFactory, name: str) -> None:
    call, status = ERROR_RESPONSES[name]
    before = RuleCounter.checks
    response = await call(client_at)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert_operation_outcome(response.json())
    record_figure("conformance: responses checked")
    record_figure("conformance: rule checks", RuleCounter.checks - before)
