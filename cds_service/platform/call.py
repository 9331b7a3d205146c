"""The one call path, the same for every service: check the request, resolve prefetch (fetch
what is missing, 412 if it cannot), let the service decide, record the cards issued."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cds_service.errors import BadRequestError
from cds_service.platform import wire
from cds_service.platform.fhir_client import ByteBudget
from cds_service.platform.prefetch import Resolved, ResolveStats, resolve
from cds_service.platform.service import CallEnvironment, Service, decide_env
from cds_service.store import IssuedCardRecord


@dataclass(frozen=True)
class CallOutcome:
    response: wire.CdsResponse
    outcome: str  # the kind of card, or the reason there is none
    stats: ResolveStats
    delivery: str | None = None  # the service's note for the log
    card_kinds: tuple[str, ...] = ()  # each card's kind, in the order of the cards


def check_request(service: Service, request: wire.HookRequest) -> None:
    definition = service.definition
    if request.hook != definition.hook:
        wrong = wire.wrong_hook(definition, request.hook)
        raise BadRequestError(str(wrong), field=wrong.field)
    if request.fhirServer is not None:
        if not wire.valid_base_url(request.fhirServer):
            raise BadRequestError(
                "fhirServer must be an absolute http(s) URL with a host (no credentials, "
                "query, fragment or white space), and a valid port.",
                field="fhirServer",
            )
    elif request.fhirAuthorization is not None:
        raise BadRequestError("fhirAuthorization was sent without fhirServer.", field="fhirServer")


async def resolve_for(
    service: Service, request: wire.HookRequest, env: CallEnvironment
) -> tuple[float, Resolved]:
    """The service's prefetch resolved for ``request`` (fetched from its fhirServer where
    missing), within the call's one time budget; returns that budget's end (event-loop time),
    for any later FHIR work of the call (a write), and what was resolved."""
    deadline = asyncio.get_running_loop().time() + env.fhir_timeout_seconds
    resolved = await resolve(
        request,
        service.prefetch_keys,
        env.http.client,
        deadline=deadline,
        max_pages=env.fhir_max_pages,
        budget=ByteBudget(env.fhir_max_response_bytes, env.fhir_max_total_bytes),
    )
    return deadline, resolved


async def call(service: Service, request: wire.HookRequest, env: CallEnvironment) -> CallOutcome:
    check_request(service, request)
    quiet = service.triage(request)
    if quiet is not None:
        return CallOutcome(wire.CdsResponse(cards=()), quiet, ResolveStats())
    deadline, resolved = await resolve_for(service, request, env)
    denv = decide_env(request, env, deadline)
    decision = await service.decide(request, resolved, denv)
    cards = decision.response.cards
    entries = [decision.ledger_entry(card.uuid) for card in cards]
    if cards and env.ledger is not None:
        issued = [
            IssuedCardRecord(
                card.uuid,
                service.definition.id,
                denv.patient,
                kind,
                evidence,
                service.content_version,
            )
            for card, (kind, evidence) in zip(cards, entries, strict=True)
        ]
        await asyncio.to_thread(env.ledger.record, issued, denv.now)
    return CallOutcome(
        decision.response,
        decision.finding,
        resolved.stats,
        decision.note,
        tuple(kind for kind, _ in entries),
    )
