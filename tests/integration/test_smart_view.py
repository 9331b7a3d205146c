"""The SMART app's view API against the real local FHIR server (issue 11): the record read
with the user's token from an allowlisted server, the plan the card offers, and a save made the
way the app makes it (conditional create on the plan's identifier) found as saved, once."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from cds_service.main import create_app
from cds_service.sandbox import rename
from tests import cases
from tests.conftest import at, settings_for_tests
from tests.integration.conftest import careplans_with_identifier, load, put_transaction

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
PATIENT = "smart-maya"


async def view(fhir_server: str, day: date) -> dict[str, Any]:
    app = create_app(settings_for_tests(smart_allowed_iss=(fhir_server,)), clock=at(day))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post(
            "/smart/api/view",
            json={"iss": fhir_server, "patient": PATIENT, "access_token": "user-token"},
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_smart_view_reads_the_record_and_finds_the_saved_plan_once(
    fhir_server: str,
) -> None:
    load(fhir_server, put_transaction(rename(cases.maya_after_mri(), PATIENT)))
    first = await view(fhir_server, cases.MAYA_CONFIRMED_DAY)
    assert first["kind"] == "confirmed"
    assert first["savedPlan"] is None
    plan, identifier = first["plan"], first["planIdentifier"]
    assert plan["subject"] == {"reference": f"Patient/{PATIENT}"}
    condition = f"identifier={identifier['system']}|{identifier['value']}"
    # The app's save, twice (fhirclient's create with If-None-Exist).
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            saved = await http.post(
                f"{fhir_server}/CarePlan",
                json=plan,
                headers={"If-None-Exist": condition, "Content-Type": "application/fhir+json"},
            )
            assert saved.status_code in (200, 201), saved.text
    assert len(careplans_with_identifier(fhir_server, identifier["value"])) == 1
    again = await view(fhir_server, cases.MAYA_CONFIRMED_DAY)
    assert again["savedPlan"] is not None
    assert again["savedPlan"].startswith("CarePlan/")


async def test_smart_view_reopens_a_plan_the_service_wrote_itself(fhir_server: str) -> None:
    """Direct-write mode and the app share one identifier: the plan the service wrote is the
    plan the app opens as saved (and would update), never a second one."""
    from tests.builders import hook_request

    patient = "smart-direct"
    load(fhir_server, put_transaction(rename(cases.maya_after_mri(), patient)))
    app = create_app(
        settings_for_tests(smart_allowed_iss=(fhir_server,), careplan_delivery="direct-write"),
        clock=at(cases.MAYA_CONFIRMED_DAY),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        body = hook_request(pid=patient, fhir_server=fhir_server)
        written = await client.post("/cds-services/sacral-bsi", json=body)
        assert written.status_code == 200, written.text
        viewed = await client.post(
            "/smart/api/view",
            json={"iss": fhir_server, "patient": patient, "access_token": "user-token"},
        )
    view = viewed.json()
    identifier = view["planIdentifier"]["value"]
    (plan,) = careplans_with_identifier(fhir_server, identifier)
    assert view["savedPlan"] == f"CarePlan/{plan['id']}"
