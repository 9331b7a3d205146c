"""The confirmed sacral BSI Condition a card proposes to record (brief 8.2 paths 2b and 3).

The clinician records it by accepting the suggestion; the service never writes a diagnosis by
itself. It carries a temporary ``id`` so that the CarePlan created in the same suggestion can
``address`` it: CDS Hooks 2.0 has a suggestion's actions applied as one FHIR transaction, whose
references between entries the server rewrites to the ids it assigns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import msgspec

from fhir_mappings import r4
from fhir_mappings.coding import CodingSpec
from fhir_mappings.primitives import is_literal_reference

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


class DiagnosisSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    codes: tuple[CodingSpec, ...]
    text: str
    body_site: CodingSpec
    side: dict[str, CodingSpec]  # "left" / "right" -> SNOMED CT laterality qualifier
    note: str


@dataclass(frozen=True)
class DiagnosisFor:
    patient_id: str
    resource_id: str  # temporary id, referenced by the plan proposed with it
    side: str | None  # "left" | "right" | None
    report: str | None  # "DiagnosticReport/1": the MRI that shows it
    recorded: date
    encounter_id: str | None = None


def to_condition(spec: DiagnosisSpec, d: DiagnosisFor) -> dict[str, Any]:
    """A confirmed, active problem-list Condition for the MRI-confirmed injury, validated as R4."""
    sites = [{"coding": [spec.body_site.to_fhir()]}]
    if d.side in spec.side:
        sites.append({"coding": [spec.side[d.side].to_fhir()]})
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": d.resource_id,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CATEGORY, "code": "problem-list-item"}]}],
        "code": {"coding": [c.to_fhir() for c in spec.codes], "text": spec.text},
        "bodySite": sites,
        "subject": {"reference": f"Patient/{d.patient_id}"},
    }
    if d.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{d.encounter_id}"}
    resource["recordedDate"] = d.recorded.isoformat()
    if d.report and is_literal_reference(d.report):
        resource["evidence"] = [{"detail": [{"reference": d.report}]}]
    resource["note"] = [{"text": spec.note}]
    return r4.validate(resource)
