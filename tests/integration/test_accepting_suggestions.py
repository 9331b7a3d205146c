"""Accepting a card's suggestion the way CDS Hooks 2.0 asks an EHR to (cds-hooks/docs#419): its
actions applied as one FHIR transaction, references between them resolved as transaction rules
say, with the EHR's FHIR server as the base. Against the real local server."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import httpx
import pytest

from cds_service.main import create_app
from tests import cases
from tests.builders import LOINC, SNOMED, coding, hook_request, report
from tests.conftest import SERVICE_URL, at, settings_for_tests
from tests.integration.conftest import load, put_transaction

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 30)
PID = "accept-2b"


def as_transaction(base: str, suggestion: dict[str, Any]) -> dict[str, Any]:
    """The suggestion's create actions as one transaction Bundle: each entry's fullUrl is the
    server base plus the resource's type and id (CDS Hooks 2.0, Suggestion.actions)."""
    entries = []
    for action in suggestion["actions"]:
        assert action["type"] == "create"
        resource = action["resource"]
        full_url = (
            f"{base}/{resource['resourceType']}/{resource['id']}" if "id" in resource else None
        )
        entry: dict[str, Any] = {
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }
        if full_url:
            entry["fullUrl"] = full_url
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def call(base: str) -> dict[str, Any]:
    app = create_app(settings_for_tests(), clock=at(DAY))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://cds.test") as client,
    ):
        response = await client.post(SERVICE_URL, json=hook_request(pid=PID, fhir_server=base))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_accepting_the_report_path_suggestion_records_the_diagnosis_and_a_plan_for_it(
    fhir_server: str,
) -> None:
    """Path 2b (brief 8.2, 14.4): the suggestion records the Condition and creates the plan
    that addresses it; once applied, the plan addresses the Condition the server created, and
    the service has nothing more to propose."""
    mri = report(
        "mri-2b",
        coding(LOINC, "24867-4"),
        effective="2026-11-27",
        conclusion="Left sacral ala stress fracture with a vertical fracture line.",
        conclusion_codes=[coding(SNOMED, "240197007")],
        patient_id=PID,
    )
    load(fhir_server, put_transaction([*cases.runner_with(pid=PID, runner_date="2026-10-01"), mri]))
    (card,) = asyncio.run(call(fhir_server))["cards"]
    suggestion = card["suggestions"][0]
    assert [a["resource"]["resourceType"] for a in suggestion["actions"]] == [
        "Condition",
        "CarePlan",
    ]
    applied = httpx.post(
        fhir_server,
        json=as_transaction(fhir_server, suggestion),
        headers={"Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert applied.status_code == 200, applied.text[:2000]
    locations = [e["response"]["location"] for e in applied.json()["entry"]]
    condition_id = locations[0].split("Condition/")[1].split("/")[0]
    plan = httpx.get(f"{fhir_server}/{locations[1].split('/_history')[0].split('/fhir/')[-1]}")
    assert plan.status_code == 200, plan.text
    assert plan.json()["addresses"] == [{"reference": f"Condition/{condition_id}"}]
    assert asyncio.run(call(fhir_server)) == {"cards": []}
