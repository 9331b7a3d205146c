"""How the proposed CarePlan reaches the record (``CDS_CAREPLAN_DELIVERY``).

- ``suggestion`` (default): the card's suggestion carries the ``create``; the EHR applies it when
  the clinician accepts.
- ``system-action``: the response's ``systemActions`` carries the ``create``.
- ``direct-write``: the service writes the draft plan to ``fhirServer`` itself, then answers an
  info card that links to it. Never twice, even with several workers or instances:
    1. a claim on the plan's business identifier in the service's database (shared by the
       workers and instances that share the database) stops concurrent writers. A claim that
       says "written" is checked against the server (a search by the identifier) before it is
       believed: a plan deleted since is written again, not announced as added;
    2. the write is a transaction Bundle whose entry carries
       ``request.ifNoneExist: identifier=<system>|<value>``: the server creates the plan only if
       no plan with that identifier exists, atomically, which also covers instances that do not
       share a database and a claim left behind by a crashed writer.
  Any failure (no fhirServer, a token without CarePlan write scope, 401/403, 5xx, timeout, a
  refused entry) falls back to the suggestion card, releases the claim and says why in the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.identity import IDENTIFIER_SYSTEM
from cds_service.clinical.sacral_bsi import Confirmation
from cds_service.errors import FhirServerError
from cds_service.platform import wire
from cds_service.platform.fhir_client import ByteBudget, FetchStats, FhirClient
from cds_service.platform.service import Delivery, Writer
from cds_service.services.sacral_bsi.content import Content
from cds_service.services.sacral_bsi.render import (
    RenderContext,
    Rendered,
    system_action_card,
    written_card,
)
from cds_service.store import Claim, ClaimState, ClaimStore
from fhir_mappings.lean import CarePlan

# SMART v1 (user/CarePlan.write, user/*.*) and v2 (user/CarePlan.cud, system/*.c) scopes that
# allow creating a CarePlan.
_SCOPE = re.compile(r"^(patient|user|system)/(CarePlan|\*)\.(\*|write|[cruds]+)$")
_PENDING_WAIT_SECONDS = 1.0


def scope_allows_careplan_create(scope: str | None) -> bool:
    """True when the token's scope lets it create a CarePlan (an absent scope is not checked)."""
    if scope is None:
        return True
    for token in scope.split():
        m = _SCOPE.match(token)
        if m and (m.group(3) in ("*", "write") or "c" in m.group(3)):
            return True
    return False


@dataclass(frozen=True)
class Delivered:
    response: wire.CdsResponse
    note: str  # for the log: what happened to the plan


async def deliver(
    mode: Delivery,
    conf: Confirmation,
    rendered: Rendered,
    request: wire.HookRequest,
    content: Content,
    ctx: RenderContext,
    writer: Writer,
    deadline: float,
) -> Delivered:
    """``deadline``: the event-loop time by which the hook call's FHIR work must be done (the
    call's one time budget, shared with fetching)."""
    careplan = rendered.careplan
    assert careplan is not None
    if mode == "suggestion":
        return Delivered(wire.CdsResponse(cards=rendered.cards), "suggestion")
    if mode == "system-action":
        card, action = system_action_card(conf, content, ctx, careplan)
        return Delivered(wire.CdsResponse(cards=(card,), systemActions=(action,)), "system-action")
    fallback = wire.CdsResponse(cards=rendered.cards)
    if not request.fhirServer:
        return Delivered(fallback, "suggestion: no fhirServer to write to")
    auth = request.fhirAuthorization
    if auth is not None and not scope_allows_careplan_create(auth.scope):
        return Delivered(fallback, "suggestion: token scope has no CarePlan write")
    if asyncio.get_running_loop().time() >= deadline:
        return Delivered(fallback, "suggestion: no time left in the budget to write")
    client = FhirClient(
        writer.http.client,
        request.fhirServer,
        auth.access_token if auth else None,
        1,
        FetchStats(),
        ByteBudget(writer.max_response_bytes, writer.max_total_bytes),
    )
    identifier = conf.plan_identifier
    # One claim per FHIR server and plan: two EHRs may share patient and Condition ids.
    claim_key = hashlib.sha256(f"{client.base}|{identifier}".encode()).hexdigest()
    claim = await asyncio.to_thread(writer.claims.claim, claim_key)
    search = f"CarePlan?identifier={IDENTIFIER_SYSTEM}%7C{identifier}"
    search_url = client.url(search)

    def written(location: str | None, note: str) -> Delivered:
        card = written_card(conf, content, ctx, location or search_url)
        return Delivered(wire.CdsResponse(cards=(card,)), note)

    if claim.state is ClaimState.PENDING:
        claim = await _wait_for_writer(writer.claims, claim_key, deadline)
    if claim.state is ClaimState.WRITTEN:
        found = await _plan_on_server(client, search, deadline)
        if found is None:  # the server cannot tell now: the claim is all there is
            return written(claim.location, "direct-write: already written (not re-checked)")
        if found:
            return written(client.url(found[0]), "direct-write: already written")
        # Gone from the server since it was written (deleted): write it again, one call only.
        claim = await asyncio.to_thread(writer.claims.reclaim, claim_key, claim)
    if claim.state is ClaimState.WRITTEN:
        return written(claim.location, "direct-write: already written")
    if claim.state is ClaimState.PENDING:
        return written(None, "direct-write: being written elsewhere")
    try:
        async with asyncio.timeout_at(deadline):
            (location,) = await client.transaction(
                _conditional_create(careplan, identifier), what="writing the CarePlan"
            )
    except (FhirServerError, TimeoutError) as exc:
        await asyncio.to_thread(writer.claims.release, claim_key)
        kind = exc.kind if isinstance(exc, FhirServerError) else "fhir_timeout"
        return Delivered(fallback, f"suggestion: write failed ({kind})")
    location = location or search_url
    await asyncio.to_thread(writer.claims.written, claim_key, location)
    return written(location, "direct-write: written")


async def _plan_on_server(client: FhirClient, search: str, deadline: float) -> list[str] | None:
    """The plans on the server under the identifier (``CarePlan/<id>``), or None when the
    search fails or runs out of time."""
    try:
        async with asyncio.timeout_at(deadline):
            found = await client.search(search, what="the CarePlan written before")
    except (FhirServerError, TimeoutError, ValueError):
        return None
    return [f"CarePlan/{plan.id}" for plan in found if isinstance(plan, CarePlan) and plan.id]


async def _wait_for_writer(claims: ClaimStore, key: str, budget_end: float) -> Claim:
    """Another call holds the claim: give it a moment (within the budget) to finish writing."""
    deadline = min(budget_end, asyncio.get_running_loop().time() + _PENDING_WAIT_SECONDS)
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        claim = await asyncio.to_thread(claims.get, key)
        if claim is None:  # the writer failed and released it: this call may write
            return await asyncio.to_thread(claims.claim, key)
        if claim.state is ClaimState.WRITTEN:
            return claim
    return await asyncio.to_thread(claims.claim, key)


def _conditional_create(careplan: dict[str, Any], identifier: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": careplan,
                "request": {
                    "method": "POST",
                    "url": "CarePlan",
                    "ifNoneExist": f"identifier={IDENTIFIER_SYSTEM}|{identifier}",
                },
            }
        ],
    }
