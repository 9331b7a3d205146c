"""The contract a CDS service implements, and what the platform hands it.

A service is one package under ``cds_service/services/``: its definition (id, hook, title,
prefetch templates) and ``decide``, which turns the resolved resources into a ``Decision``. The
platform does the rest for every service alike (``call.py``): validate the request, resolve
prefetch, call ``decide``, record the cards issued, answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from cds_service.platform import wire
from cds_service.platform.http_client import SharedHttp
from cds_service.platform.prefetch import PrefetchKey, Resolved
from cds_service.store import CardLedger, ClaimStore, patient_key

Delivery = Literal["suggestion", "system-action", "direct-write"]


@dataclass(frozen=True)
class Writer:
    """What a service needs to write to the EHR's FHIR server itself, never twice."""

    http: SharedHttp
    claims: ClaimStore
    # CDS_FHIR_MAX_RESPONSE_BYTES / CDS_FHIR_MAX_TOTAL_BYTES, for the write's answer.
    max_response_bytes: int
    max_total_bytes: int


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
    app_launch_url: str | None = None  # a SMART app's launch URL, for the cards' links


@dataclass(frozen=True)
class DecideEnv:
    """What ``decide`` may use beyond the record: the clock, the call's time budget, the ledger
    (for suppression after an override), and the writer."""

    call: CallEnvironment
    now: datetime
    deadline: float  # event-loop time by which all FHIR work of the call must be done
    patient: str  # pseudonymous patient key (issuer + patient id, hashed)

    async def overridden(self, finding: str, within_days: int) -> list[frozenset[str]]:
        """The evidence of each card of kind ``finding`` a clinician overrode for this patient
        within the last ``within_days`` days (empty without a ledger)."""
        ledger = self.call.ledger
        if ledger is None:
            return []
        since = self.now - timedelta(days=within_days)
        return await asyncio.to_thread(ledger.overridden_evidence, self.patient, finding, since)


@dataclass(frozen=True)
class Decision:
    """What a service decided: the response as it is sent, and what the ledger and the log
    keep. ``finding`` names the kind of card (or the reason there is none); ``evidence`` is what
    the card stood on, for suppression after an override."""

    response: wire.CdsResponse
    finding: str
    evidence: frozenset[str] = field(default_factory=frozenset)
    note: str | None = None  # for the log: e.g. what happened to a proposed CarePlan
    # Cards of different kinds in one response: each card's own kind and evidence, by uuid.
    per_card: Mapping[str, tuple[str, frozenset[str]]] = field(default_factory=dict)

    def ledger_entry(self, card_uuid: str) -> tuple[str, frozenset[str]]:
        return self.per_card.get(card_uuid, (self.finding, self.evidence))


class Service(Protocol):
    @property
    def definition(self) -> wire.ServiceDefinition: ...

    @property
    def prefetch_keys(self) -> tuple[PrefetchKey, ...]: ...

    @property
    def content_version(self) -> str: ...

    @property
    def override_codes(self) -> frozenset[str]:
        """The override reason codes its cards offer (the only ones metrics name)."""
        ...

    @property
    def snooze_days(self) -> int:
        """How long an overridden card stays quiet (the retention must be longer)."""
        ...

    def triage(self, request: wire.HookRequest) -> str | None:
        """The reason there can be no card, from the request alone, before any prefetch is
        resolved (and any FHIR server called): e.g. an order-select call on an order the service
        has nothing to say about. None: the record is needed. (Only "no card" can be decided
        this way: cards go through ``decide`` and the ledger.)"""
        ...

    async def decide(
        self, request: wire.HookRequest, resolved: Resolved, env: DecideEnv
    ) -> Decision: ...


def decide_env(request: wire.HookRequest, env: CallEnvironment, deadline: float) -> DecideEnv:
    return DecideEnv(
        call=env,
        now=env.clock(),
        deadline=deadline,
        patient=patient_key(env.issuer, request.context.patientId),
    )
