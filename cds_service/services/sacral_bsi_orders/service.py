"""The order services: ``sacral-bsi-order-select`` and ``sacral-bsi-order-sign`` (issue 10).

Card A's rule on the patient's record (same prefetch), the orders of the hook's ``draftOrders``
(order-select: the newly selected ones; order-sign: every order being signed), and
``clinical.orders`` to decide which order deserves a card.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.clinical.facts import PatientFacts
from cds_service.clinical.orders import (
    evidence_keys,
    finding_kind,
    order_findings,
)
from cds_service.clinical.sacral_bsi import (
    NoCard,
    Suspicion,
    assess_with_confirmation,
    suppressed_by_override,
)
from cds_service.clinical.sacral_bsi import evidence_keys as card_a_evidence
from cds_service.errors import BadRequestError
from cds_service.platform import wire
from cds_service.platform.content import ServiceText, definition
from cds_service.platform.prefetch import Resolved
from cds_service.platform.service import DecideEnv, Decision
from cds_service.services.sacral_bsi.service import facts_of, prefetch_keys
from cds_service.services.sacral_bsi_orders.content import OrderContent
from cds_service.services.sacral_bsi_orders.render import OrderRenderContext, render
from fhir_mappings.draft_orders import DraftOrdersError, SessionOrder, read_draft_orders, selected


@dataclass(frozen=True)
class _Issued:
    card: wire.Card
    finding: str
    evidence: frozenset[str]


class SacralBsiOrderService:
    def __init__(self, content: OrderContent, text: ServiceText) -> None:
        self.content = content
        self.prefetch_keys = prefetch_keys(content.rule.terminology)
        self.content_version = content.version
        self.snooze_days = content.rule.parameters.suppression.snooze_after_override_days
        self.override_codes = content.cards.override_reasons.codes()
        self.definition = definition(text, self.prefetch_keys)

    def _reviewed(
        self, request: wire.HookRequest, facts: PatientFacts
    ) -> tuple[list[SessionOrder], list[SessionOrder]]:
        """(every order of the session, the orders under review): order-select reviews the
        newly selected ones, order-sign all of them."""
        context = request.context
        if isinstance(context, wire.PatientViewContext):  # the platform checked the hook
            raise BadRequestError("This service answers an order hook.", field="hook")
        try:
            session = read_draft_orders(context.draftOrders, self.content.terminology, facts)
        except DraftOrdersError as exc:
            raise BadRequestError(str(exc), field=exc.field) from None
        if isinstance(context, wire.OrderSelectContext):
            return session, selected(session, context.selections)
        return session, session

    def triage(self, request: wire.HookRequest) -> str | None:
        """No record is fetched when no order under review is one this service reads (the
        PAMA tab calls on every change of the order, first with an empty one)."""
        _, reviewed = self._reviewed(request, PatientFacts(request.context.patientId))
        return None if any(o.fact.may_matter for o in reviewed) else "no_order_of_interest"

    async def decide(
        self, request: wire.HookRequest, resolved: Resolved, env: DecideEnv
    ) -> Decision:
        rule = self.content.rule
        facts = facts_of(request, resolved, rule)
        # Read again with the record: a reason may reference one of its Conditions.
        session, reviewed = self._reviewed(request, facts)
        context = request.context
        today = env.now.date()
        assessment, confirmation = assess_with_confirmation(facts, rule.parameters, today)
        suspicion = assessment if isinstance(assessment, Suspicion) else None
        findings = order_findings(
            [o.fact for o in reviewed],
            [o.fact for o in session],
            suspicion,
            confirmation,
            self.content.windows,
        )
        if not findings:
            reason = (
                "confirmed_no_order_to_warn"
                if confirmation
                else assessment.reason
                if isinstance(assessment, NoCard)
                else "no_order_of_concern"
            )
            return Decision(wire.CdsResponse(cards=()), reason)
        base = card_a_evidence(confirmation or suspicion or NoCard(""))
        by_fact = {id(o.fact): o for o in reviewed}
        ctx = OrderRenderContext(context.patientId, context.encounterId, env.call.new_uuid)
        issued: list[_Issued] = []
        for finding in findings:
            evidence = evidence_keys(finding, base)
            kind = finding_kind(finding)
            if suppressed_by_override(evidence, await env.overridden(kind, self.snooze_days)):
                continue
            orders = [by_fact[id(o)] for o in finding.orders]
            issued.append(_Issued(render(finding, orders, self.content, ctx), kind, evidence))
        if not issued:
            return Decision(wire.CdsResponse(cards=()), "suppressed_after_override")
        return Decision(
            wire.CdsResponse(cards=tuple(i.card for i in issued)),
            "+".join(sorted({i.finding for i in issued})),
            frozenset().union(*(i.evidence for i in issued)),
            per_card={i.card.uuid: (i.finding, i.evidence) for i in issued},
        )


def order_services(content: OrderContent) -> tuple[SacralBsiOrderService, ...]:
    texts = content.cards.services
    return (
        SacralBsiOrderService(content, texts.order_select),
        SacralBsiOrderService(content, texts.order_sign),
    )
