"""What the SMART app shows (issue 11): the evidence card A or B stands on, and the plan card B
proposes, computed by the same rule and the same CarePlan code as the cards, from the record
the service reads with the app user's token."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from cds_service.clinical.identity import IDENTIFIER_SYSTEM
from cds_service.clinical.sacral_bsi import assess_with_confirmation, finding_kind
from cds_service.platform import wire
from cds_service.platform.call import resolve_for
from cds_service.platform.service import CallEnvironment
from cds_service.services.sacral_bsi.render import RenderContext, build_careplan
from cds_service.services.sacral_bsi.service import SacralBsiService, facts_of
from fhir_mappings import lean


async def app_view(
    service: SacralBsiService, iss: str, patient: str, token: str, env: CallEnvironment
) -> dict[str, Any]:
    """The view: ``kind`` (card A's "suspect", card B's "confirmed", "confirm_first", or why
    there is no card), the rule's ``assessment`` as data (each item names the resource it came
    from), the proposed ``plan`` (a CarePlan, when MRI confirms the injury) with the identifier
    a save must carry, and ``savedPlan`` when a plan with that identifier is in the record."""
    request = wire.HookRequest(
        hook="patient-view",
        hookInstance=str(uuid.uuid4()),
        context=wire.PatientViewContext(patientId=patient),
        fhirServer=iss,
        fhirAuthorization=wire.FhirAuthorization(access_token=token),
    )
    _, resolved = await resolve_for(service, request, env)
    content = service.content
    facts = facts_of(request, resolved, content)
    now = env.clock()
    assessment, confirmation = assess_with_confirmation(facts, content.parameters, now.date())
    plan: dict[str, Any] | None = None
    identifier: dict[str, str] | None = None
    saved: str | None = None
    if confirmation is not None:
        ctx = RenderContext(
            patient_id=patient,
            encounter_id=None,
            today=now.date(),
            now=now,
            new_uuid=env.new_uuid,
            fhir_server=iss,
        )
        plan = build_careplan(confirmation, content, ctx)
        identifier = {"system": IDENTIFIER_SYSTEM, "value": confirmation.plan_identifier}
        saved = next(
            (
                f"CarePlan/{r.id}"
                for r in resolved.resources
                if isinstance(r, lean.CarePlan)
                and r.id
                and any(
                    i.system == IDENTIFIER_SYSTEM and i.value == confirmation.plan_identifier
                    for i in r.identifier
                )
            ),
            None,
        )
    return {
        "patientId": patient,
        "kind": finding_kind(assessment),
        "assessment": msgspec.to_builtins(assessment),
        "confirmation": msgspec.to_builtins(confirmation) if confirmation else None,
        "plan": plan,
        "planIdentifier": identifier,
        "savedPlan": saved,
        "riskLabels": dict(content.cards.risk_labels),
        "contentVersion": content.version,
    }
