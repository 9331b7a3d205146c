"""Small builders for FHIR R4 JSON used by the tests: each returns a plain resource dict, as an
EHR would send it. Codes are spelled out at the call site so every test shows what it matches."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10CM_OID = "urn:oid:2.16.840.1.113883.6.90"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

Resource = dict[str, Any]

LEFT, RIGHT, BILATERAL, UNILATERAL = "7771000", "24028007", "51440002", "66459002"
SACRUM, SI_JOINT, LUMBAR = "54735007", "39723000", "52612000"


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(*codings: dict[str, str], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = list(codings)
    if text:
        out["text"] = text
    return out


def patient(
    pid: str = "p1", gender: str | None = "female", birth_date: str | None = "2005-03-01"
) -> Resource:
    out: Resource = {"resourceType": "Patient", "id": pid}
    if gender:
        out["gender"] = gender
    if birth_date:
        out["birthDate"] = birth_date
    return out


def condition(
    cid: str,
    *codings: dict[str, str],
    text: str | None = None,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    onset: str | None = None,
    onset_period_start: str | None = None,
    onset_age: tuple[float, str] | None = None,
    onset_string: str | None = None,
    recorded: str | None = None,
    abatement: str | None = None,
    body_sites: Iterable[dict[str, Any]] = (),
    notes: Iterable[str] = (),
    evidence: Iterable[str] = (),
    encounter: str | None = None,
    category: str | None = "problem-list-item",
    patient_id: str = "p1",
) -> Resource:
    out: Resource = {"resourceType": "Condition", "id": cid}
    if clinical:
        out["clinicalStatus"] = concept(coding(CLINICAL, clinical))
    if verification:
        out["verificationStatus"] = concept(coding(VERIFICATION, verification))
    if category:
        out["category"] = [
            concept(coding("http://terminology.hl7.org/CodeSystem/condition-category", category))
        ]
    out["code"] = concept(*codings, text=text)
    sites = list(body_sites)
    if sites:
        out["bodySite"] = sites
    out["subject"] = {"reference": f"Patient/{patient_id}"}
    if encounter:
        out["encounter"] = {"reference": encounter}
    if onset:
        out["onsetDateTime"] = onset
    if onset_period_start:
        out["onsetPeriod"] = {"start": onset_period_start}
    if onset_age:
        value, unit = onset_age
        out["onsetAge"] = {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        }
    if onset_string:
        out["onsetString"] = onset_string
    if abatement:
        out["abatementDateTime"] = abatement
    if recorded:
        out["recordedDate"] = recorded
    refs = list(evidence)
    if refs:
        out["evidence"] = [{"detail": [{"reference": r} for r in refs]}]
    texts = list(notes)
    if texts:
        out["note"] = [{"text": t} for t in texts]
    return out


def observation(
    oid: str,
    code: str,
    *,
    system: str = LOINC,
    value_code: str | None = None,
    value_display: str | None = None,
    value: float | None = None,
    unit: str | None = None,
    comparator: str | None = None,
    value_string: str | None = None,
    effective: str | None = None,
    issued: str | None = None,
    status: str = "final",
    category: str | None = None,
    notes: Iterable[str] = (),
    patient_id: str = "p1",
) -> Resource:
    out: Resource = {"resourceType": "Observation", "id": oid, "status": status}
    if category:
        out["category"] = [
            concept(coding("http://terminology.hl7.org/CodeSystem/observation-category", category))
        ]
    out["code"] = concept(coding(system, code))
    out["subject"] = {"reference": f"Patient/{patient_id}"}
    if effective:
        out["effectiveDateTime"] = effective
    if issued:
        out["issued"] = issued
    if value_code:
        out["valueCodeableConcept"] = concept(coding(LOINC, value_code, value_display))
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit:
            quantity.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
        if comparator:
            quantity["comparator"] = comparator
        out["valueQuantity"] = quantity
    if value_string is not None:
        out["valueString"] = value_string
    texts = list(notes)
    if texts:
        out["note"] = [{"text": t} for t in texts]
    return out


def running_activity(
    oid: str = "run1",
    effective: str = "2025-08-15",
    answer: str = "LA11836-6",
    patient_id: str = "p1",
) -> Resource:
    """LOINC 73985-4 Exercise activity = Running (LA11836-6) or Jogging (LA11835-8)."""
    display = {"LA11836-6": "Running", "LA11835-8": "Jogging"}.get(answer, answer)
    return observation(
        oid,
        "73985-4",
        value_code=answer,
        value_display=display,
        effective=effective,
        category="social-history",
        patient_id=patient_id,
    )


def report(
    rid: str,
    *codings: dict[str, str],
    text: str | None = None,
    status: str = "final",
    effective: str | None = None,
    issued: str | None = None,
    conclusion: str | None = None,
    conclusion_codes: Iterable[dict[str, str]] = (),
    patient_id: str = "p1",
) -> Resource:
    out: Resource = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "category": [concept(coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD"))],
        "code": concept(*codings, text=text),
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if effective:
        out["effectiveDateTime"] = effective
    if issued:
        out["issued"] = issued
    if conclusion:
        out["conclusion"] = conclusion
    codes = list(conclusion_codes)
    if codes:
        out["conclusionCode"] = [concept(c) for c in codes]
    return out


def service_request(
    sid: str,
    *codings: dict[str, str],
    text: str | None = None,
    status: str = "active",
    intent: str = "order",
    authored: str | None = None,
    patient_id: str = "p1",
) -> Resource:
    out: Resource = {
        "resourceType": "ServiceRequest",
        "id": sid,
        "status": status,
        "intent": intent,
        "code": concept(*codings, text=text),
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if authored:
        out["authoredOn"] = authored
    return out


def care_plan(
    cpid: str,
    status: str = "active",
    addresses: Iterable[str] = (),
    identifier: tuple[str, str] | None = None,
    instantiates_uri: str | None = None,
    patient_id: str = "p1",
) -> Resource:
    out: Resource = {
        "resourceType": "CarePlan",
        "id": cpid,
        "status": status,
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    refs = list(addresses)
    if refs:
        out["addresses"] = [{"reference": r} for r in refs]
    if identifier:
        out["identifier"] = [{"system": identifier[0], "value": identifier[1]}]
    if instantiates_uri:
        out["instantiatesUri"] = [instantiates_uri]
    return out


def searchset(
    resources: Iterable[Resource], *, next_url: str | None = None, base: str = "http://fhir.test/r4"
) -> Resource:
    entries = [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r.get('id', '')}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    out: Resource = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    links = [{"relation": "self", "url": f"{base}/search"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    out["link"] = links
    if entries:
        out["entry"] = entries
    return out


PREFETCH_KEYS = (
    "patient",
    "conditions",
    "observations",
    "activityNotes",
    "diagnosticReports",
    "carePlans",
    "serviceRequests",
)


def prefetch_for(resources: Iterable[Resource], pid: str = "p1") -> dict[str, Any]:
    """Full prefetch for every discovery key, from one patient's resources (the EHR ran the
    searches). Observations go to the coded key; the other observation key is an empty search."""
    items = list(resources)
    by_type: dict[str, list[Resource]] = {}
    for r in items:
        by_type.setdefault(r["resourceType"], []).append(r)
    pat = next((r for r in by_type.get("Patient", []) if r["id"] == pid), None)
    conditions = searchset(by_type.get("Condition", []))
    for encounter in by_type.get("Encounter", []):  # as _include=Condition:encounter brings them
        conditions.setdefault("entry", []).append(
            {"resource": encounter, "search": {"mode": "include"}}
        )
    return {
        "patient": pat,
        "conditions": conditions,
        "observations": searchset(by_type.get("Observation", [])),
        "activityNotes": searchset([]),
        "diagnosticReports": searchset(by_type.get("DiagnosticReport", [])),
        "carePlans": searchset(by_type.get("CarePlan", [])),
        "serviceRequests": searchset(by_type.get("ServiceRequest", [])),
    }


def hook_request(
    resources: Iterable[Resource] | None = None,
    *,
    pid: str = "p1",
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    token: str | None = None,
    encounter_id: str | None = None,
    hook: str = "patient-view",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "context": {"userId": "Practitioner/example", "patientId": pid},
    }
    if encounter_id:
        out["context"]["encounterId"] = encounter_id
    if fhir_server:
        out["fhirServer"] = fhir_server
    if token:
        out["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Condition.read user/Observation.read",
            "subject": "cds-service",
        }
    if prefetch is not None:
        out["prefetch"] = prefetch
    elif resources is not None:
        out["prefetch"] = prefetch_for(resources, pid)
    return out
