"""The order services' cards: X-ray or CT instead of MRI, SI-joint treatment before a sacral BSI
is considered, and a warning for a confirmed one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cds_service.clinical.orders import (
    ConfirmedBsiWarning,
    ConsiderBsiFirst,
    ImagingInstead,
    OrderFinding,
    OrderKind,
)
from cds_service.clinical.sacral_bsi import Suspicion
from cds_service.platform import wire
from cds_service.services.sacral_bsi.render import (
    fit_summary,
    links,
    quote_text,
    suspicion_evidence,
)
from cds_service.services.sacral_bsi_orders.content import OrderContent
from fhir_mappings.draft_orders import SessionOrder, as_mri
from fhir_mappings.orders import to_service_request


@dataclass(frozen=True)
class OrderRenderContext:
    patient_id: str
    encounter_id: str | None
    new_uuid: Callable[[], str]


def render(
    finding: OrderFinding, order: SessionOrder, content: OrderContent, ctx: OrderRenderContext
) -> wire.Card:
    if isinstance(finding, ImagingInstead):
        return _imaging_card(finding, order, content, ctx)
    if isinstance(finding, ConsiderBsiFirst):
        return _si_treatment_card(finding, order, content, ctx)
    return _confirmed_card(finding, order, content, ctx)


def _card(
    content: OrderContent,
    ctx: OrderRenderContext,
    *,
    summary: str,
    indicator: Any,
    detail: str,
    suggestions: tuple[wire.Suggestion, ...],
) -> wire.Card:
    reasons = content.cards.override_reasons
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=summary,
        indicator=indicator,
        source=wire.Source(label=content.cards.source.label),
        detail=detail,
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=tuple(
            wire.Coding(code=r.code, system=reasons.system, display=r.display)
            for r in reasons.reasons
        ),
        links=links(content.rule),
    )


def _footer(content: OrderContent) -> str:
    return content.cards.words.footer.format(version=content.version)


def _mri_words(content: OrderContent, s: Suspicion) -> str:
    t = content.cards.imaging
    return t.mri_words_pelvis if s.mri == "pelvis" else t.mri_words_sacrum


def _mri_order(
    s: Suspicion, content: OrderContent, ctx: OrderRenderContext, note: str, like: dict[str, Any]
) -> dict[str, Any]:
    """Card A's MRI order (sacrum, or pelvis for buttock or hip pain: brief 14.5), with the
    draft's intent and coded reasons when it has them."""
    orders = content.rule.cards.orders
    mri = to_service_request(
        orders.mri_pelvis if s.mri == "pelvis" else orders.mri,
        patient_id=ctx.patient_id,
        reasons=tuple(q.pain.source for q in s.pains),
        note=note,
        encounter_id=ctx.encounter_id,
    )
    if isinstance(like.get("intent"), str):
        mri["intent"] = like["intent"]
    if isinstance(like.get("reasonCode"), list) and like["reasonCode"]:
        mri["reasonCode"] = like["reasonCode"]
    return mri


def _imaging_card(
    f: ImagingInstead, order: SessionOrder, content: OrderContent, ctx: OrderRenderContext
) -> wire.Card:
    t, s = content.cards.imaging, f.suspicion
    evidence = suspicion_evidence(s, content.rule)
    study = t.study_ct if f.order.kind is OrderKind.CT else t.study_xray
    label = quote_text(f.order.label)
    fill = {
        "study": study,
        "pain": evidence.pain,
        "mri": s.mri,
        "mri_words": _mri_words(content, s),
    }
    mri = _mri_order(s, content, ctx, t.order_note.format(order=f.order.label), order.resource)
    suggestions: list[wire.Suggestion] = []
    if order.reference:
        suggestions.append(
            wire.Suggestion(
                label=t.update_label.format(**fill),
                uuid=ctx.new_uuid(),
                isRecommended=True,
                actions=(
                    wire.Action(
                        type="update",
                        description=t.update_description.format(order=label, **fill),
                        resource=as_mri(order.resource, mri),
                    ),
                ),
            )
        )
        replace: tuple[wire.Action, ...] = (
            wire.Action(
                type="delete",
                description=t.delete_description.format(order=label),
                resourceId=order.reference,
            ),
        )
    else:
        replace = ()
    suggestions.append(
        wire.Suggestion(
            label=t.replace_label.format(**fill),
            uuid=ctx.new_uuid(),
            isRecommended=False,
            actions=(
                *replace,
                wire.Action(
                    type="create", description=t.create_description.format(**fill), resource=mri
                ),
            ),
        )
    )
    detail = t.detail.format(
        order=label,
        pains=evidence.pains,
        runner=evidence.runner,
        counted=evidence.counted,
        risks=evidence.risks,
        lines=evidence.lines,
        mri_words=fill["mri_words"],
        footer=_footer(content),
    ).strip()
    return _card(
        content,
        ctx,
        summary=fit_summary(t.summary.format(**fill), t.summary_short.format(**fill)),
        indicator=s.indicator,
        detail=detail,
        suggestions=tuple(suggestions),
    )


def _si_treatment_card(
    f: ConsiderBsiFirst, order: SessionOrder, content: OrderContent, ctx: OrderRenderContext
) -> wire.Card:
    t, s = content.cards.si_treatment, f.suspicion
    evidence = suspicion_evidence(s, content.rule)
    treatment = t.injection if f.order.kind is OrderKind.SI_INJECTION else t.physio
    detail = t.detail.format(
        treatment=treatment,
        order=quote_text(f.order.label),
        pains=evidence.pains,
        runner=evidence.runner,
        counted=evidence.counted,
        risks=evidence.risks,
        lines=evidence.lines,
        mri_words=_mri_words(content, s),
        footer=_footer(content),
    ).strip()
    suggestions: tuple[wire.Suggestion, ...] = ()
    if s.mri_under_way is None:
        rule_text = content.rule.cards.suspect
        pelvis = s.mri == "pelvis"
        suggestions = (
            wire.Suggestion(
                label=rule_text.suggestion_label_pelvis
                if pelvis
                else rule_text.suggestion_label_sacrum,
                uuid=ctx.new_uuid(),
                isRecommended=False,
                actions=(
                    wire.Action(
                        type="create",
                        description=(
                            rule_text.action_description_pelvis
                            if pelvis
                            else rule_text.action_description_sacrum
                        ),
                        resource=_mri_order(s, content, ctx, rule_text.order_note, {}),
                    ),
                ),
            ),
        )
    fill = {"pain": evidence.pain}
    return _card(
        content,
        ctx,
        summary=fit_summary(t.summary.format(**fill), t.summary_short),
        indicator=s.indicator,
        detail=detail,
        suggestions=suggestions,
    )


def _confirmed_card(
    f: ConfirmedBsiWarning, order: SessionOrder, content: OrderContent, ctx: OrderRenderContext
) -> wire.Card:
    t, c = content.cards.confirmed, f.confirmation
    injection = f.order.kind is OrderKind.SI_INJECTION
    finding = (t.finding_condition if c.diagnosis is not None else t.finding_report).format(
        source=quote_text(c.finding)
    )
    detail = t.detail.format(
        treatment=t.injection if injection else t.running,
        order=quote_text(f.order.label),
        finding=finding,
        day0=c.day0.isoformat(),
        running_from=(c.day0 + timedelta(days=content.running_from_day)).isoformat(),
        footer=_footer(content),
    ).strip()
    return _card(
        content,
        ctx,
        summary=fit_summary(t.summary_injection if injection else t.summary_running),
        indicator="warning",
        detail=detail,
        suggestions=(),
    )
