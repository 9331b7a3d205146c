"""The benchmark's request built as an EHR fills the discovery templates (issue 12): the FHIR
search each template names, applied to a patient's resources."""

from __future__ import annotations

import json

import pytest

from bench.request import Patient, _search, discovery_prefetch, discovery_templates
from cds_service.services.sacral_bsi.content import load_content
from cds_service.services.sacral_bsi.service import prefetch_keys

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _observation(number: int, code: str, category: str, patient: str = "p1") -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": f"o{number}",
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
    }


def _patient() -> Patient:
    subject = {"reference": "Patient/p1"}
    resources: dict[str, list[dict[str, object]]] = {
        "Patient": [{"resourceType": "Patient", "id": "p1"}],
        "Condition": [
            {
                "resourceType": "Condition",
                "id": f"c{n}",
                "subject": subject,
                "encounter": {"reference": f"Encounter/e{n % 2}"},
            }
            for n in range(3)
        ],
        "Encounter": [
            {"resourceType": "Encounter", "id": f"e{n}", "subject": subject} for n in range(3)
        ],
        "Observation": [
            _observation(1, "39156-5", "vital-signs"),  # BMI: asked for by code
            _observation(2, "8867-4", "vital-signs"),  # heart rate: not asked for
            _observation(3, "72166-2", "social-history"),  # smoking status: by category
            _observation(4, "39156-5", "vital-signs", patient="someone-else"),
        ],
        "ServiceRequest": [
            {"resourceType": "ServiceRequest", "id": "s1", "status": "active", "subject": subject},
            {
                "resourceType": "ServiceRequest",
                "id": "s2",
                "status": "completed",
                "subject": subject,
            },
        ],
    }
    return Patient("test.json", resources["Patient"][0], resources)


def _ids(bundle: dict[str, object]) -> list[tuple[str, str]]:
    entries = bundle["entry"]
    assert isinstance(entries, list)
    return [(e["resource"]["id"], e["search"]["mode"]) for e in entries]


def test_token_searches_apply_system_code_and_patient() -> None:
    patient = _patient()
    by_code = _search(patient, f"Observation?patient=p1&code={LOINC}|39156-5,{LOINC}|1989-3")
    assert _ids(by_code) == [("o1", "match")]
    assert _ids(_search(patient, "Observation?patient=p1&code=http://other|39156-5")) == []
    by_category = _search(patient, "Observation?patient=p1&category=social-history,exam")
    assert _ids(by_category) == [("o3", "match")]
    open_orders = _search(patient, "ServiceRequest?patient=p1&status=draft,active,on-hold")
    assert _ids(open_orders) == [("s1", "match")]


def test_include_adds_each_referenced_resource_once() -> None:
    found = _search(patient := _patient(), "Condition?patient=p1&_include=Condition:encounter")
    assert _ids(found) == [
        ("c0", "match"),
        ("c1", "match"),
        ("c2", "match"),
        ("e0", "include"),
        ("e1", "include"),
    ]
    assert found["total"] == 3
    assert _search(patient, "Patient/p1") == {"resourceType": "Patient", "id": "p1"}


def test_an_unknown_search_parameter_stops_the_benchmark() -> None:
    with pytest.raises(SystemExit, match="date"):
        _search(_patient(), "Observation?patient=p1&date=ge2020")


def test_every_template_of_discovery_is_filled() -> None:
    templates = discovery_templates()
    keys = {key.name for key in prefetch_keys(load_content().terminology)}
    assert set(templates) == keys
    patient = _patient()
    patient.by_type["CarePlan"] = []
    patient.by_type["DiagnosticReport"] = []
    prefetch = discovery_prefetch(patient)
    assert set(prefetch) == keys
    assert _ids(prefetch["observations"]) == [("o1", "match")]
    json.dumps(prefetch)  # JSON as sent
