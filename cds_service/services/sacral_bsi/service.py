"""The sacral-bsi service (``patient-view``): card A (suspicion), card B (the rehab plan once MRI
confirms it), card B' (confirm the diagnosis first).

``decide`` is one straight line: map the resolved resources to facts, run the rule, apply the
override snooze, render the cards, deliver a proposed CarePlan as configured.
"""

from __future__ import annotations

from cds_service.clinical.facts import PatientFacts
from cds_service.clinical.sacral_bsi import (
    Assessment,
    Confirmation,
    NoCard,
    Suspicion,
    assess,
    evidence_keys,
    finding_kind,
    suppressed_by_override,
)
from cds_service.platform import wire
from cds_service.platform.content import definition
from cds_service.platform.prefetch import PrefetchKey, Resolved
from cds_service.platform.service import DecideEnv, Decision
from cds_service.services.sacral_bsi.content import Content
from cds_service.services.sacral_bsi.delivery import deliver
from cds_service.services.sacral_bsi.render import RenderContext, render
from fhir_mappings.patient_facts import patient_record, to_patient_facts
from fhir_mappings.terminology import Terminology

# LOINC-coded observations the rule reads (value sets of valuesets.toml).
_OBSERVATION_VALUESETS = (
    "exercise_activity",
    "exercise_minutes_per_week",
    "exercise_amount",
    "bmi",
    "bmi_percentile",
    "body_weight",
    "body_height",
    "vitamin_d_mass",
    "vitamin_d_molar",
    "pregnancy_status",
    "breastfeeding_status",
)
PAGE_SIZE = 100


def prefetch_keys(terms: Terminology) -> tuple[PrefetchKey, ...]:
    """The prefetch templates, generated from the value sets so they never drift apart."""
    loinc = terms.system_uris["loinc"]
    codes = sorted({c for vs in _OBSERVATION_VALUESETS for c in terms.codes(vs, "loinc")})
    code_param = ",".join(f"{loinc}|{code}" for code in codes)
    patient = "{{context.patientId}}"
    return (
        PrefetchKey("patient", f"Patient/{patient}", "read", "patient"),
        # The encounters of encounter diagnoses come along: their dates date a diagnosis that has
        # neither onset nor recorded date (brief 5.3), and their reason text may say "runner".
        PrefetchKey(
            "conditions",
            f"Condition?patient={patient}&_include=Condition:encounter&_count={PAGE_SIZE}",
            "search",
            "conditions",
        ),
        PrefetchKey(
            "observations",
            f"Observation?patient={patient}&code={code_param}&_count={PAGE_SIZE}",
            "search",
            "coded observations",
        ),
        PrefetchKey(
            "activityNotes",
            f"Observation?patient={patient}&category=social-history,activity,exam&_count={PAGE_SIZE}",
            "search",
            "social-history and activity observations",
        ),
        PrefetchKey(
            "diagnosticReports",
            # Imaging reports only: RAD (HL7 v2 0074), LP29684-5 (LOINC Radiology, US Core), and
            # the plain words some EHRs use. Codes without a system match in any system.
            f"DiagnosticReport?patient={patient}&category=RAD,LP29684-5,imaging,radiology"
            f"&_count={PAGE_SIZE}",
            "search",
            "imaging reports",
        ),
        PrefetchKey(
            "carePlans", f"CarePlan?patient={patient}&_count={PAGE_SIZE}", "search", "care plans"
        ),
        # Orders not yet done: an MRI already ordered is not proposed again (brief 14.5).
        PrefetchKey(
            "serviceRequests",
            f"ServiceRequest?patient={patient}&status=draft,active,on-hold&_count={PAGE_SIZE}",
            "search",
            "open orders",
        ),
    )


def facts_of(request: wire.HookRequest, resolved: Resolved, content: Content) -> PatientFacts:
    """The patient's record, as the clinical rules read it."""
    record = patient_record(request.context.patientId, resolved.resources)
    return to_patient_facts(record, content.terminology)


async def snoozed(assessment: Assessment, env: DecideEnv, content: Content) -> Assessment:
    """Card A stays quiet while a clinician's override of it stands on the same evidence
    (7.5.4)."""
    if not isinstance(assessment, Suspicion):
        return assessment
    days = content.parameters.suppression.snooze_after_override_days
    overridden = await env.overridden("suspect", days)
    if suppressed_by_override(evidence_keys(assessment), overridden):
        return NoCard("suppressed_after_override")
    return assessment


class SacralBsiService:
    def __init__(self, content: Content) -> None:
        self.content = content
        self.prefetch_keys = prefetch_keys(content.terminology)
        self.content_version = content.version
        self.snooze_days = content.parameters.suppression.snooze_after_override_days
        self.override_codes = content.cards.override_reasons.codes()
        self.definition = definition(content.cards.service, self.prefetch_keys)

    def triage(self, request: wire.HookRequest) -> str | None:
        return None  # every patient-view needs the record

    async def decide(
        self, request: wire.HookRequest, resolved: Resolved, env: DecideEnv
    ) -> Decision:
        facts = facts_of(request, resolved, self.content)
        assessment = assess(facts, self.content.parameters, env.now.date())
        evidence = evidence_keys(assessment)
        assessment = await snoozed(assessment, env, self.content)
        ctx = RenderContext(
            patient_id=request.context.patientId,
            encounter_id=request.context.encounterId,
            today=env.now.date(),
            now=env.now,
            new_uuid=env.call.new_uuid,
            fhir_server=request.fhirServer,
            app_launch_url=env.call.app_launch_url,
        )
        rendered = render(assessment, self.content, ctx)
        response, note = wire.CdsResponse(cards=rendered.cards), None
        writer = env.call.writer
        if isinstance(assessment, Confirmation) and writer is not None:
            delivered = await deliver(
                env.call.delivery,
                assessment,
                rendered,
                request,
                self.content,
                ctx,
                writer,
                env.deadline,
            )
            response, note = delivered.response, delivered.note
        return Decision(response, finding_kind(assessment), evidence, note)
