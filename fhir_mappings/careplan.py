"""RehabProtocol + confirmed finding -> a draft R4 CarePlan (brief 10.4), validated before use."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from cds_service.clinical.identity import IDENTIFIER_SYSTEM
from fhir_mappings import r4
from fhir_mappings.coding import CodingSpec
from fhir_mappings.primitives import is_literal_reference, is_resource_reference


class PhaseSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    start_day: int
    end_day: int
    code: CodingSpec
    goals: str
    allowed: str
    avoid: str
    criteria: str
    # Wording by Patient.gender ("female", "male"); ``allowed`` for anyone else (14.4).
    allowed_by_sex: dict[str, str] = {}

    def allowed_for(self, sex: str | None) -> str:
        return self.allowed_by_sex.get(sex or "", self.allowed)


class DoNotPerformSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The restriction: its own activity, from ``start_day`` until the clinician clears it (no
    end date: 14.4)."""

    text: str
    start_day: int
    description: str


class RehabProtocol(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    uri: str
    title: str
    duration_days: int
    status: str
    intent: str
    note: str
    description: str
    grade_suffix: str
    fracture_note: str
    reaction_note: str
    activity_description: str
    stop_and_reassess: str
    category: tuple[CodingSpec, ...]
    phase: tuple[PhaseSpec, ...]
    do_not_perform: DoNotPerformSpec

    def window(self, day0: date, start_day: int, end_day: int) -> tuple[date, date]:
        return day0 + timedelta(days=start_day), day0 + timedelta(days=end_day)


@dataclass(frozen=True)
class PlanFor:
    """Who and what the plan is for."""

    patient_id: str
    identifier: str  # urn:uuid: business identifier (cds_service.clinical.identity)
    day0: date
    description: str
    condition: str | None  # "Condition/1": the confirmed diagnosis (or the one proposed with it)
    report: str | None  # "DiagnosticReport/2": the confirming MRI, when found
    created: datetime
    encounter_id: str | None = None
    sex: str | None = None  # Patient.gender: the bone-health wording


def to_careplan(protocol: RehabProtocol, plan: PlanFor) -> dict[str, Any]:
    start, end = plan.day0, plan.day0 + timedelta(days=protocol.duration_days)
    activities: list[dict[str, Any]] = []
    for phase in protocol.phase:
        first, last = protocol.window(plan.day0, phase.start_day, phase.end_day)
        activities.append(
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "code": {"coding": [phase.code.to_fhir()], "text": phase.name},
                    "status": "not-started",
                    "scheduledPeriod": {"start": first.isoformat(), "end": last.isoformat()},
                    "description": protocol.activity_description.format(
                        goals=phase.goals,
                        allowed=phase.allowed_for(plan.sex),
                        avoid=phase.avoid,
                        criteria=phase.criteria,
                    ),
                }
            }
        )
    dnp = protocol.do_not_perform
    activities.append(
        {
            "detail": {
                "code": {"text": dnp.text},
                "doNotPerform": True,
                "status": "not-started",
                "scheduledPeriod": {
                    "start": (plan.day0 + timedelta(days=dnp.start_day)).isoformat()
                },
                "description": dnp.description,
            }
        }
    )
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "text": {"status": "generated", "div": _narrative(protocol, plan)},
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": plan.identifier}],
        "instantiatesUri": [protocol.uri],
        "status": protocol.status,
        "intent": protocol.intent,
        "category": [{"coding": [c.to_fhir()]} for c in protocol.category],
        "title": protocol.title,
        "description": plan.description,
        "subject": {"reference": f"Patient/{plan.patient_id}"},
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "created": plan.created.isoformat(timespec="seconds"),
    }
    if plan.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{plan.encounter_id}"}
    if plan.condition and is_resource_reference(plan.condition):
        resource["addresses"] = [{"reference": plan.condition}]
    if plan.report and is_literal_reference(plan.report):
        resource["supportingInfo"] = [{"reference": plan.report}]
    resource["activity"] = activities
    resource["note"] = [{"text": protocol.note}]
    return r4.validate(resource)


def _narrative(protocol: RehabProtocol, plan: PlanFor) -> str:
    items = "".join(
        "<li>{}: {} to {}</li>".format(
            html.escape(phase.name),
            *(d.isoformat() for d in protocol.window(plan.day0, phase.start_day, phase.end_day)),
        )
        for phase in protocol.phase
    )
    dnp = protocol.do_not_perform
    return (
        '<div xmlns="http://www.w3.org/1999/xhtml">'
        f"<p><b>{html.escape(protocol.title)}</b></p>"
        f"<p>{html.escape(plan.description)}</p>"
        f"<ul>{items}</ul>"
        f"<p>{html.escape(dnp.description)}</p>"
        f"<p>{html.escape(protocol.note)}</p>"
        "</div>"
    )
