"""Against a real FHIR server: the service fetches what was not prefetched, and the cards are
the same as with full prefetch, for the project's clinical patients and every Synthea patient."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import date
from typing import Any

import httpx
import pytest

from cds_service.main import create_app
from cds_service.sandbox import rename
from tests import cases
from tests.builders import (
    ICD10CM,
    LOINC,
    SNOMED,
    care_plan,
    coding,
    concept,
    condition,
    hook_request,
    observation,
    patient,
    report,
    running_activity,
    service_request,
)
from tests.conftest import SERVICE_URL, at, record_figure, settings_for_tests, shared
from tests.integration.conftest import load, put_transaction

pytestmark = pytest.mark.integration
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DAY = date(2025, 9, 30)


def normalised(body: dict[str, Any]) -> str:
    """The response with card and suggestion uuids blanked (they are random per call)."""
    return _UUID.sub("<uuid>", json.dumps(body, sort_keys=True))


def clinical_patients() -> dict[str, tuple[list[dict[str, Any]], date, int]]:
    """name -> (resources, day of the hook call, expected number of cards)."""
    right_lbp = condition("lbp", coding(ICD10CM, "M54.41"), onset="2025-09-01")
    encounter = {
        "resourceType": "Encounter",
        "id": "enc",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": {"start": "2025-09-18"},
    }
    return {
        "maya-before-mri": (cases.maya_before_mri(), cases.MAYA_SUSPECT_DAY, 1),
        "maya-after-mri": (cases.maya_after_mri(), cases.MAYA_CONFIRMED_DAY, 1),
        "daniel": (cases.daniel(), DAY, 0),
        "mri-after-pain": (
            [
                *cases.runner_with(right_lbp),
                report(
                    "mri", coding(LOINC, "24867-4"), effective="2025-09-20", conclusion="Normal."
                ),
            ],
            DAY,
            0,
        ),
        "plan-in-chart": (
            [
                *cases.maya_after_mri(),
                care_plan("cp", "active", ["Condition/sacral-bsi-1"], patient_id="maya"),
            ],
            cases.MAYA_CONFIRMED_DAY,
            0,
        ),
        "coded-report": (
            cases.runner_with(
                report(
                    "mri",
                    coding(LOINC, "24867-4"),
                    effective="2025-09-25",
                    conclusion="Left sacral stress fracture.",
                    conclusion_codes=[coding(SNOMED, "240197007")],
                )
            ),
            DAY,
            1,
        ),
        "report-text-only": (
            cases.runner_with(
                report(
                    "mri",
                    coding(LOINC, "24867-4"),
                    effective="2025-09-25",
                    conclusion="Impression: left sacral stress reaction.",
                )
            ),
            DAY,
            1,
        ),
        "encounter-dated-y93": (
            [
                patient("p1", "male", "1992-05-05"),
                condition(
                    "lbp",
                    coding(ICD10CM, "M54.42"),
                    category="encounter-diagnosis",
                    encounter="Encounter/enc",
                    verification=None,
                    clinical=None,
                ),
                condition(
                    "y93",
                    coding(ICD10CM, "Y93.02"),
                    category="encounter-diagnosis",
                    encounter="Encounter/enc",
                    verification=None,
                    clinical=None,
                ),
                encounter,
            ],
            DAY,
            1,
        ),
        # Brief 14: each new kind of data, fetched from the server as well as prefetched.
        "mri-already-ordered": (
            cases.runner_with(
                right_lbp,
                service_request(
                    "sr",
                    coding("http://www.ama-assn.org/go/cpt", "72195"),
                    text="MRI pelvis without contrast",
                    authored="2025-09-25",
                ),
            ),
            DAY,
            1,
        ),
        "mri-edema-not-demonstrated": (
            cases.runner_with(
                report(
                    "mri",
                    coding(LOINC, "24867-4"),
                    effective="2025-09-25",
                    conclusion="Marrow edema within the right sacral ala is not demonstrated.",
                )
            ),
            DAY,
            0,
        ),
        "new-episode-after-a-healed-one": (
            cases.runner_with(
                condition(
                    "old",
                    coding(ICD10CM, "M48.48XA"),
                    clinical="resolved",
                    recorded="2022-05-01",
                    abatement="2022-09-01",
                    body_sites=[concept(coding(SNOMED, "54735007"))],
                ),
                report(
                    "mri",
                    coding(LOINC, "24867-4"),
                    effective="2025-09-25",
                    conclusion="Left sacral stress fracture.",
                    conclusion_codes=[coding(SNOMED, "240197007")],
                ),
            ),
            DAY,
            1,
        ),
        "chronic-pain-by-onset-string": (
            cases.runner_with(
                condition(
                    "lbp",
                    coding(ICD10CM, "M54.42"),
                    onset_string="since 2017",
                    recorded="2025-09-20",
                )
            ),
            DAY,
            0,
        ),
        "pregnant-teen-with-low-bmi-for-age": (
            [
                patient("p1", "female", "2006-06-01"),
                running_activity("run", "2025-08-01"),
                condition("lbp", coding(ICD10CM, "M54.42"), onset="2025-09-10"),
                observation("bmi", "39156-5", value=17.6, unit="kg/m2", effective="2025-09-20"),
                observation("ps", "82810-3", value_code="LA15173-0", effective="2025-09-20"),
            ],
            DAY,
            1,
        ),
        "jogger-with-buttock-pain": (
            [
                patient("p1", "female", "1999-01-01"),
                running_activity("j", "2025-06-01", answer="LA11835-8"),
                condition(
                    "b", coding(SNOMED, "279043006"), text="right buttock pain", onset="2025-09-10"
                ),
            ],
            DAY,
            1,
        ),
    }


def with_ids(name: str, resources: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The case under its own ids (cases reuse ids), with every subject pointing at its patient."""
    renamed = rename([r for r in resources], f"eq-{name}")
    pid = next(r["id"] for r in renamed if r["resourceType"] == "Patient")
    for r in renamed:
        if "subject" in r:
            r["subject"] = {"reference": f"Patient/{pid}"}
    return pid, renamed


async def both_ways(
    base: str, pid: str, resources: list[dict[str, Any]], day: date
) -> tuple[httpx.Response, httpx.Response]:
    app = create_app(settings_for_tests(), clock=at(day))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://cds.test"
    ) as client:
        fetched = await client.post(SERVICE_URL, json=hook_request(pid=pid, fhir_server=base))
        # The same EHR (fhirServer set) with the record prefetched: a path-2b plan addresses
        # the Condition proposed beside it by a full URL on that server in both calls.
        prefetched = await client.post(
            SERVICE_URL, json=hook_request(resources, pid=pid, fhir_server=base)
        )
    return fetched, prefetched


@pytest.mark.parametrize("name", list(clinical_patients()))
def test_fhir_server_clinical_patient_fetch_equals_prefetch(
    fhir_server: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    resources, day, expected_cards = clinical_patients()[name]
    pid, resources = with_ids(name, resources)
    load(fhir_server, put_transaction(resources))
    with caplog.at_level(logging.INFO, logger="cds_service"):
        fetched, prefetched = asyncio.run(both_ways(fhir_server, pid, resources, day))
    assert fetched.status_code == prefetched.status_code == 200, fetched.text
    assert len(fetched.json()["cards"]) == expected_cards
    assert normalised(fetched.json()) == normalised(prefetched.json())
    # The first call read the server, the second only its prefetch (fhirServer set in both).
    calls = [r.fields for r in caplog.records if r.getMessage() == "hook_call"]  # type: ignore[attr-defined]
    assert [(c["fetched"], c["prefetched"]) for c in calls] == [(7, 0), (0, 7)]


def test_fhir_server_every_synthea_patient_fetch_equals_prefetch(fhir_server: str) -> None:
    folder = shared("synthea")
    checked = 0
    for path in sorted(folder.glob("*.json")):
        if path.name == "manifest.json":
            continue
        bundle = json.loads(path.read_text())
        for entry in bundle["entry"]:  # keep Synthea's ids, as its README shows
            resource = entry["resource"]
            entry["request"] = {
                "method": "PUT",
                "url": f"{resource['resourceType']}/{resource['id']}",
            }
        load(fhir_server, bundle)
        resources = [e["resource"] for e in bundle["entry"]]
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        fetched, prefetched = asyncio.run(both_ways(fhir_server, pid, resources, date.today()))
        assert fetched.status_code == 200, (path.name, fetched.text)
        assert fetched.json() == prefetched.json() == {"cards": []}, path.name
        checked += 1
    assert checked == 81
    record_figure(
        "fhir server: Synthea patients loaded, fetched and compared with prefetch", checked
    )
