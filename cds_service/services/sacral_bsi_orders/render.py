"""The order services' cards: X-ray or CT instead of MRI, SI-joint treatment before a sacral BSI
is considered, and a warning for a confirmed one. One card per kind of finding, whatever the
number of orders it is about."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from cds_service.clinical.orders import (
    ConfirmedInjection,
    ConfirmedLoad,
    ConsiderBsiFirst,
    ImagingInstead,
    MriProposal,
    OrderFinding,
    OrderKind,
)
from cds_service.clinical.sacral_bsi import Suspicion
from cds_service.platform import wire
from cds_service.services.sacral_bsi.render import (
    SuspicionEvidence,
    fit_summary,
    links,
    proposed_mri,
    quote_text,
    suspicion_evidence,
)
from cds_service.services.sacral_bsi_orders.content import OrderContent
from fhir_mappings.draft_orders import MAX_REASONS, SessionOrder, as_mri
from fhir_mappings.orders import OrderSpec


@dataclass(frozen=True)
class OrderRenderContext:
    patient_id: str
    encounter_id: str | None
    new_uuid: Callable[[], str]


def render(
    finding: OrderFinding,
    orders: Sequence[SessionOrder],
    content: OrderContent,
    ctx: OrderRenderContext,
) -> wire.Card:
    """``orders``: the session's orders the finding is about, in the finding's order."""
    if isinstance(finding, ImagingInstead):
        return _imaging_card(finding, orders, content, ctx)
    if isinstance(finding, ConsiderBsiFirst):
        return _si_treatment_card(finding, orders, content, ctx)
    return _confirmed_card(finding, content, ctx)


def _card(
    content: OrderContent,
    ctx: OrderRenderContext,
    *,
    summary: str,
    indicator: Literal["info", "warning", "critical"],
    detail: str,
    suggestions: tuple[wire.Suggestion, ...],
) -> wire.Card:
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=summary,
        indicator=indicator,
        source=wire.Source(label=content.cards.source.label),
        detail=detail,
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=content.cards.override_reasons.codings(),
        links=links(content.rule),
    )


def _evidence(
    content: OrderContent, evidence: SuspicionEvidence, mri_words: str
) -> dict[str, object]:
    """The placeholders both suspicion cards fill the same way: card A's evidence, the MRI
    proposed, the footer."""
    return {
        "pains": evidence.pains,
        "runner": evidence.runner,
        "counted": evidence.counted,
        "risks": evidence.risks,
        "lines": evidence.lines,
        "mri_words": mri_words,
        "footer": _footer(content),
    }


def _footer(content: OrderContent) -> str:
    return content.cards.words.footer.format(version=content.version)


SHOWN_ORDERS = 5  # order names a card or a note lists; the rest are counted


def _names(content: OrderContent, labels: Sequence[str], quoted: bool) -> str:
    words = content.cards.words
    shown = [f'"{quote_text(label)}"' if quoted else label for label in labels[:SHOWN_ORDERS]]
    if len(labels) > SHOWN_ORDERS:
        shown.append(words.more.format(count=len(labels) - SHOWN_ORDERS))
    return words.order_join.join(shown)


def _orders(content: OrderContent, labels: Sequence[str]) -> dict[str, str]:
    """{orders}: each order's name quoted (inert markdown); {verb}: is / are."""
    words = content.cards.words
    return {
        "orders": _names(content, labels, quoted=True),
        "verb": words.verb_one if len(labels) == 1 else words.verb_many,
    }


def _mri_spec(content: OrderContent, mri: MriProposal) -> OrderSpec:
    orders = content.rule.cards.orders
    return {"pelvis": orders.mri_pelvis, "lumbosacral": content.cards.lumbosacral}.get(
        mri, orders.mri
    )


def _mri_words(content: OrderContent, mri: MriProposal) -> tuple[str, str]:
    t = content.cards.imaging
    return {
        "sacrum": (t.mri_sacrum, t.mri_words_sacrum),
        "pelvis": (t.mri_pelvis, t.mri_words_pelvis),
        "lumbosacral": (t.mri_lumbosacral, t.mri_words_lumbosacral),
    }[mri]


def _mri_order(
    s: Suspicion,
    mri: MriProposal,
    content: OrderContent,
    ctx: OrderRenderContext,
    note: str,
    like: dict[str, Any],
) -> dict[str, Any]:
    """Card A's MRI order (its reasons, its pregnancy note) of the region ``mri``, with the
    draft's intent and coded reasons when it has them."""
    if mri == "lumbosacral":
        note = f"{note} {content.cards.imaging.lumbosacral_note}"
    order = proposed_mri(
        s, content.rule, ctx.patient_id, ctx.encounter_id, spec=_mri_spec(content, mri), note=note
    )
    if like.get("intent") in ("proposal", "plan", "order", "original-order"):
        order["intent"] = like["intent"]
    reasons = like.get("reasonCode")
    if isinstance(reasons, list) and reasons and all(isinstance(r, dict) for r in reasons):
        order["reasonCode"] = reasons[:MAX_REASONS]
    return order


def _imaging_card(
    f: ImagingInstead,
    orders: Sequence[SessionOrder],
    content: OrderContent,
    ctx: OrderRenderContext,
) -> wire.Card:
    t, s = content.cards.imaging, f.suspicion
    evidence = suspicion_evidence(s, content.rule)
    study = t.study_ct if all(o.kind is OrderKind.CT for o in f.orders) else t.study_xray
    mri, mri_words = _mri_words(content, f.mri)
    fill = {"study": study, "pain": evidence.pain, "mri": mri, "mri_words": mri_words}
    labels = [o.label for o in f.orders]
    # The orders a suggestion can act on: each usable reference once (an EHR may repeat an id).
    removable = list({o.reference: o for o in orders if o.reference}.values())
    first = removable[0] if removable else None
    changed = [o.fact.label for o in removable] or labels
    mri_order = _mri_order(
        s,
        f.mri,
        content,
        ctx,
        t.order_note.format(order=_names(content, changed, quoted=False)),
        first.resource if first else orders[0].resource,
    )

    def delete(order: SessionOrder) -> wire.Action:
        return wire.Action(
            type="delete",
            description=t.delete_description.format(order=quote_text(order.fact.label)),
            resourceId=order.reference,
        )

    create = wire.Action(
        type="create", description=t.create_description.format(**fill), resource=mri_order
    )
    suggestions: list[wire.Suggestion] = []
    if first is not None:
        # The recommended one: the first draft becomes the MRI; any other X-ray or CT goes.
        suggestions.append(
            wire.Suggestion(
                label=(t.update_label_many if len(removable) > 1 else t.update_label).format(
                    **fill
                ),
                uuid=ctx.new_uuid(),
                isRecommended=True,
                actions=(
                    wire.Action(
                        type="update",
                        description=t.update_description.format(
                            order=quote_text(first.fact.label), **fill
                        ),
                        resource=as_mri(first.resource, mri_order),
                    ),
                    *(delete(o) for o in removable[1:]),
                ),
            )
        )
    if removable and all(o.reference for o in orders):
        replace_label = t.replace_label_many if len(removable) > 1 else t.replace_label
        replace = (*(delete(o) for o in removable), create)
    else:
        # An order without a usable id cannot be removed by a suggestion: only the MRI is added.
        replace_label, replace = t.add_label, (create,)
    suggestions.append(
        wire.Suggestion(
            label=replace_label.format(**fill),
            uuid=ctx.new_uuid(),
            isRecommended=False,
            actions=replace,
        )
    )
    detail = t.detail.format(
        **_orders(content, labels), **_evidence(content, evidence, mri_words)
    ).strip()
    return _card(
        content,
        ctx,
        summary=fit_summary(t.summary.format(**fill), t.summary_short.format(**fill)),
        indicator=s.indicator,
        detail=detail,
        suggestions=tuple(suggestions),
    )


def _treatments(content: OrderContent, words: Sequence[str]) -> str:
    unique = list(dict.fromkeys(words))
    return content.cards.words.treatment_join.join(unique)


def _si_treatment_card(
    f: ConsiderBsiFirst,
    orders: Sequence[SessionOrder],
    content: OrderContent,
    ctx: OrderRenderContext,
) -> wire.Card:
    t, s = content.cards.si_treatment, f.suspicion
    evidence = suspicion_evidence(s, content.rule)
    mri, mri_words = _mri_words(content, f.mri)
    treatment = _treatments(
        content,
        [t.injection if o.kind is OrderKind.SI_INJECTION else t.physio for o in f.orders],
    )
    detail = t.detail.format(
        treatment=treatment,
        **_orders(content, [o.label for o in f.orders]),
        **_evidence(content, evidence, mri_words),
    ).strip()
    suggestions: tuple[wire.Suggestion, ...] = ()
    if s.mri_under_way is None and not f.mri_elsewhere:
        rule_text = content.rule.cards.suspect
        fill = {"mri": mri, "mri_words": mri_words}
        suggestions = (
            wire.Suggestion(
                label=content.cards.imaging.add_label.format(**fill),
                uuid=ctx.new_uuid(),
                isRecommended=False,
                actions=(
                    wire.Action(
                        type="create",
                        description=content.cards.imaging.create_description.format(**fill),
                        resource=_mri_order(
                            s, f.mri, content, ctx, rule_text.order_note, orders[0].resource
                        ),
                    ),
                ),
            ),
        )
    return _card(
        content,
        ctx,
        summary=fit_summary(t.summary.format(pain=evidence.pain), t.summary_short),
        indicator=s.indicator,
        detail=detail,
        suggestions=suggestions,
    )


def _confirmed_card(
    f: ConfirmedInjection | ConfirmedLoad, content: OrderContent, ctx: OrderRenderContext
) -> wire.Card:
    t, c = content.cards.confirmed, f.confirmation
    if c.diagnosis is not None:
        finding = t.finding_condition.format(
            label=quote_text(c.diagnosis.label), source=quote_text(c.finding)
        )
    else:
        label = c.report.label if c.report is not None else ""
        finding = t.finding_report.format(label=quote_text(label), source=quote_text(c.finding))
    fill = {
        **_orders(content, [o.label for o in f.orders]),
        "finding": finding,
        "day0": c.day0.isoformat(),
        "footer": _footer(content),
    }
    indicator: Literal["info", "warning"] = "warning"
    if isinstance(f, ConfirmedInjection):
        summary = t.summary_injection
        detail = t.detail_injection.format(**fill)
    else:
        windows = content.windows
        summary = t.summary_load_early if f.early else t.summary_load_cleared
        indicator = "warning" if f.early else "info"  # 14.4: on clearance, not on a date
        detail = t.detail_load.format(
            **fill,
            hopping_from=(c.day0 + timedelta(days=windows.hopping_from_day)).isoformat(),
            running_from=(c.day0 + timedelta(days=windows.running_from_day)).isoformat(),
            hopping_criteria=content.hopping_criteria,
            running_criteria=content.running_criteria,
        )
    return _card(
        content,
        ctx,
        summary=fit_summary(summary),
        indicator=indicator,
        detail=detail.strip(),
        suggestions=(),
    )
