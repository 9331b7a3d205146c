"""The sacral-bsi CDS service and the registry discovery is generated from.

``call`` is one straight line: check the request, resolve prefetch (fetch what is missing, 412 if
it cannot), map resources to facts, run the rule, render cards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service import cds_hooks as wire
from cds_service.cds_hooks import valid_base_url
from cds_service.content import Content
from cds_service.errors import BadRequestError, UnknownServiceError
from cds_service.hooks.delivery import Delivery, Writer, deliver
from cds_service.hooks.fhir_client import ByteBudget
from cds_service.hooks.prefetch import PrefetchKey, ResolveStats, resolve
from cds_service.http_client import SharedHttp
from cds_service.render import RenderContext, render
from cds_service.rules.sacral_bsi import (
    Assessment,
    Confirmation,
    NoCard,
    Suspicion,
    assess,
    evidence_keys,
    finding_kind,
    suppressed_by_override,
)
from cds_service.store import CardLedger, IssuedCardRecord, patient_key
from fhir_mappings.patient_facts import to_patient_facts
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


@dataclass(frozen=True)
class CallOutcome:
    response: wire.CdsResponse
    outcome: str  # "suspect", "confirmed", "confirm_first", or the reason there is no card
    stats: ResolveStats
    delivery: str | None = None  # what happened to a proposed CarePlan


@dataclass(frozen=True)
class CallEnvironment:
    http: SharedHttp
    clock: Callable[[], datetime]
    fhir_timeout_seconds: float
    fhir_max_pages: int
    fhir_max_response_bytes: int
    fhir_max_total_bytes: int
    delivery: Delivery = "suggestion"
    writer: Writer | None = None
    ledger: CardLedger | None = None
    issuer: str | None = None  # the verified caller, for the pseudonymous patient key
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4())


class SacralBsiService:
    def __init__(self, content: Content) -> None:
        self.content = content
        self.keys = prefetch_keys(content.terminology)
        text = content.cards.service
        self.id = text.id
        self.hook = text.hook
        self.definition = wire.ServiceDefinition(
            hook=text.hook,
            id=text.id,
            title=text.title,
            description=text.description,
            prefetch={key.name: key.template for key in self.keys},
        )

    async def call(self, request: wire.HookRequest, env: CallEnvironment) -> CallOutcome:
        if request.hook != self.hook:
            raise BadRequestError(
                f"Service '{self.id}' answers the '{self.hook}' hook, not '{request.hook}'.",
                field="hook",
            )
        if request.fhirServer is not None:
            if not valid_base_url(request.fhirServer):
                raise BadRequestError(
                    "fhirServer must be an absolute http(s) URL with a host (no credentials, "
                    "query, fragment or white space), and a valid port.",
                    field="fhirServer",
                )
        elif request.fhirAuthorization is not None:
            raise BadRequestError(
                "fhirAuthorization was sent without fhirServer.", field="fhirServer"
            )
        # One time budget for all of this call's FHIR work: fetching, then any write.
        deadline = asyncio.get_running_loop().time() + env.fhir_timeout_seconds
        record, stats = await resolve(
            request,
            self.keys,
            env.http.client,
            deadline=deadline,
            max_pages=env.fhir_max_pages,
            budget=ByteBudget(env.fhir_max_response_bytes, env.fhir_max_total_bytes),
        )
        facts = to_patient_facts(record, self.content.terminology)
        now = env.clock()
        params = self.content.parameters
        assessment: Assessment = assess(facts, params, now.date())
        patient = patient_key(env.issuer, request.context.patientId)
        evidence = evidence_keys(assessment)
        if isinstance(assessment, Suspicion) and env.ledger is not None:
            since = now - timedelta(days=params.suppression.snooze_after_override_days)
            overridden = await asyncio.to_thread(
                env.ledger.overridden_evidence, patient, "suspect", since
            )
            if suppressed_by_override(evidence, overridden):
                assessment = NoCard("suppressed_after_override")
        ctx = RenderContext(
            patient_id=request.context.patientId,
            encounter_id=request.context.encounterId,
            today=now.date(),
            now=now,
            new_uuid=env.new_uuid,
            fhir_server=request.fhirServer,
        )
        rendered = render(assessment, self.content, ctx)
        response, note = wire.CdsResponse(cards=rendered.cards), None
        if isinstance(assessment, Confirmation) and env.writer is not None:
            delivered = await deliver(
                env.delivery, assessment, rendered, request, self.content, ctx, env.writer, deadline
            )
            response, note = delivered.response, delivered.note
        if response.cards and env.ledger is not None:
            issued = [
                IssuedCardRecord(
                    card.uuid,
                    self.id,
                    patient,
                    finding_kind(assessment),
                    evidence,
                    self.content.version,
                )
                for card in response.cards
            ]
            await asyncio.to_thread(env.ledger.record, issued, now)
        return CallOutcome(response, finding_kind(assessment), stats, note)


class ServiceRegistry:
    def __init__(self, *services: SacralBsiService) -> None:
        self._services = {s.id: s for s in services}

    def __contains__(self, service_id: object) -> bool:
        return service_id in self._services

    def get(self, service_id: str) -> SacralBsiService:
        service = self._services.get(service_id)
        if service is None:
            raise UnknownServiceError(f"No CDS service with id '{service_id}'.")
        return service

    def discovery(self) -> wire.Discovery:
        return wire.Discovery(services=tuple(s.definition for s in self._services.values()))
