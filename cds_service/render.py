"""Assessment + card content -> CDS Hooks cards. All wording comes from ``cards/sacral-bsi``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cds_service import cds_hooks as wire
from cds_service.content import Content, Words
from cds_service.rules.facts import (
    Code,
    Grade,
    MeasureKind,
    PainGroup,
    RunnerEvidence,
    RunnerKind,
    Side,
)
from cds_service.rules.sacral_bsi import (
    Assessment,
    Confirmation,
    ConfirmFirst,
    NoCard,
    QualifyingPain,
    RiskFactor,
    Suspicion,
)
from fhir_mappings.careplan import PlanFor, to_careplan
from fhir_mappings.orders import to_service_request

SUMMARY_LIMIT = 140  # CDS Hooks: summary SHOULD be under 140 characters


@dataclass(frozen=True)
class RenderContext:
    patient_id: str
    encounter_id: str | None
    today: date
    now: datetime
    new_uuid: Callable[[], str]


@dataclass(frozen=True)
class Rendered:
    cards: tuple[wire.Card, ...]
    careplan: dict[str, Any] | None = None  # the proposed plan, when card B was rendered


class SummaryTooLongError(ValueError):
    """No summary variant in the content fits the limit: a content error."""


def render(assessment: Assessment, content: Content, ctx: RenderContext) -> Rendered:
    if isinstance(assessment, Suspicion):
        return Rendered((_suspect_card(assessment, content, ctx),))
    if isinstance(assessment, Confirmation):
        return _confirmed_card(assessment, content, ctx)
    if isinstance(assessment, ConfirmFirst):
        return Rendered((_confirm_first_card(assessment, content, ctx),))
    assert isinstance(assessment, NoCard)
    return Rendered(())


def fit_summary(*candidates: str) -> str:
    """The first candidate under the CDS Hooks limit."""
    for text in candidates:
        if len(text) < SUMMARY_LIMIT:
            return text
    raise SummaryTooLongError("no summary variant fits under 140 characters")


def _source(content: Content) -> wire.Source:
    return wire.Source(label=content.cards.source.label)


def _links(content: Content) -> tuple[wire.Link, ...]:
    return tuple(
        wire.Link(label=link.label, url=link.url, type="absolute") for link in content.cards.links
    )


def _numbered(items: tuple[str, ...]) -> str:
    return "\n".join(f"{n}. {item}" for n, item in enumerate(items, start=1))


def _coded(words: Words, label: str | None, code: Code) -> str:
    return words.coded.format(
        label=label or code.display or code.code, system=code.system, code=code.code
    )


def _dated(words: Words, text: str, when: date | None) -> str:
    return (
        words.dated.format(text=text, date=when.isoformat())
        if when
        else words.undated.format(text=text)
    )


def _side_word(words: Words, side: Side) -> str:
    return {Side.LEFT: words.left, Side.RIGHT: words.right}.get(side, words.unilateral)


_REGION_ORDER = ("low_back", "buttock", "si_joint")
_GROUP_REGION = {
    PainGroup.LOW_BACK: "low_back",
    PainGroup.LOW_BACK_SCIATICA: "low_back",
    PainGroup.SCIATICA: "low_back",
    PainGroup.BUTTOCK: "buttock",
    PainGroup.SI_JOINT: "si_joint",
}


# ---------------------------------------------------------------------------- card A
def _pain_phrase(s: Suspicion, words: Words) -> str:
    regions = {_GROUP_REGION[q.pain.group] for q in s.pains}
    region = words.region_join.join(
        getattr(words, f"region_{name}") for name in _REGION_ORDER if name in regions
    )
    if s.side is Side.UNKNOWN:
        return words.pain_unknown_side.format(region=region)
    return words.pain_sided.format(side=_side_word(words, s.side), region=region)


def _runner_text(words: Words, e: RunnerEvidence) -> str:
    if e.code is not None and e.kind is RunnerKind.CODED_ACTIVITY:
        text = words.runner_coded.format(display=e.code.display or e.code.code, code=e.code.code)
    elif e.code is not None:
        text = words.runner_activity_code.format(
            display=e.code.display or e.code.code, system=e.code.system, code=e.code.code
        )
    else:
        text = words.noted.format(phrase=e.phrase or "")
    return _dated(words, text, e.when)


_MEASURE_WORDS = {
    MeasureKind.BMI: "measure_bmi",
    MeasureKind.BMI_PERCENTILE: "measure_bmi_percentile",
    MeasureKind.VITAMIN_D_NG_ML: "measure_vitamin_d_ng_ml",
    MeasureKind.EXERCISE_MIN_PER_WEEK: "measure_exercise_min_per_week",
}


def _risk_evidence(words: Words, r: RiskFactor) -> str:
    if r.days is not None and r.code is not None:
        text = words.si_duration.format(coded=_coded(words, r.label, r.code), days=r.days)
    elif r.code is not None:
        text = _coded(words, r.label, r.code)
    elif r.phrase is not None:
        text = words.noted.format(phrase=r.phrase)
    elif r.measure is not None and r.value is not None:
        template: str = getattr(words, _MEASURE_WORDS[r.measure])
        text = template.format(value=r.value, previous=r.previous or 0.0)
    else:
        return words.female_sex
    return _dated(words, text, r.when)


def _pain_item(words: Words, q: QualifyingPain) -> str:
    coded = _coded(words, q.pain.label, q.pain.code)
    if q.pain.side_source is None or q.pain.side not in (Side.LEFT, Side.RIGHT, Side.UNILATERAL):
        return words.pain_item_unknown_side.format(
            coded=coded, since=words.since, date=q.since.isoformat()
        )
    return words.pain_item.format(
        coded=coded,
        side=_side_word(words, q.pain.side),
        side_source=getattr(words, f"side_from_{q.pain.side_source.value}"),
        since=words.since,
        date=q.since.isoformat(),
    )


def _suspect_card(s: Suspicion, content: Content, ctx: RenderContext) -> wire.Card:
    c, words = content.cards, content.cards.words
    pain = _pain_phrase(s, words)
    counted = s.counted_risks
    risk_count = (
        words.risk_count_one if counted == 1 else words.risk_count_many.format(count=counted)
    )
    candidates = []
    if counted:
        candidates.append(c.suspect.summary_with_risks.format(pain=pain, risk_count=risk_count))
    if s.si_label:
        candidates.append(c.suspect.summary_si_label.format(pain=pain))
    candidates += [
        c.suspect.summary_default.format(pain=pain),
        c.suspect.summary_short.format(pain=pain),
        c.suspect.summary_shortest,
    ]
    pains = "; ".join(_pain_item(words, q) for q in s.pains)
    risks = (
        "\n".join(
            words.risk_item.format(
                label=c.risk_labels.get(r.category.value, r.category.value),
                evidence=_risk_evidence(words, r),
            )
            for r in s.risks
        )
        or f"- {words.none_found}"
    )
    detail = c.suspect.detail.format(
        pain=pain,
        pains=pains,
        runner=_runner_text(words, s.runner),
        si_line=c.suspect.si_line if s.si_label else "",
        risks=risks,
        triad_line=c.suspect.triad_line if s.triad else "",
        based_on=c.suspect.based_on.format(today=ctx.today.isoformat()),
        references=_numbered(c.references.suspect),
        version=content.version,
    ).strip()
    order = to_service_request(
        c.orders.mri,
        patient_id=ctx.patient_id,
        reasons=tuple(q.pain.source for q in s.pains),
        note=c.suspect.order_note,
        encounter_id=ctx.encounter_id,
    )
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(*candidates),
        indicator=s.indicator,
        source=_source(content),
        detail=detail,
        suggestions=(
            wire.Suggestion(
                label=c.suspect.suggestion_label,
                uuid=ctx.new_uuid(),
                isRecommended=False,
                actions=(
                    wire.Action(
                        type="create",
                        description=c.suspect.action_description,
                        resource=order,
                    ),
                ),
            ),
        ),
        selectionBehavior="at-most-one",
        overrideReasons=tuple(
            wire.Coding(code=r.code, system=c.override_reasons.system, display=r.display)
            for r in c.override_reasons.reasons
        ),
        links=_links(content),
    )


# ---------------------------------------------------------------------------- card B
def plan_description(conf: Confirmation, content: Content) -> str:
    words, protocol = content.cards.words, content.protocol
    injury = {Side.LEFT: words.injury_left, Side.RIGHT: words.injury_right}.get(
        conf.side, words.injury_unknown
    )
    grade = ""
    if conf.grade is not None:
        grade = protocol.grade_suffix.format(
            grade_text=conf.grade_text or "",
            grade_kind=protocol.fracture_note
            if conf.grade is Grade.FRACTURE
            else protocol.reaction_note,
        )
    basis = {
        "report": words.basis_report,
        "condition-recorded": words.basis_condition,
        "today": words.basis_today,
    }[conf.day0_source]
    return protocol.description.format(
        injury=injury, grade=grade, basis=basis, day0=conf.day0.isoformat()
    )


def build_careplan(conf: Confirmation, content: Content, ctx: RenderContext) -> dict[str, Any]:
    return to_careplan(
        content.protocol,
        PlanFor(
            patient_id=ctx.patient_id,
            identifier=conf.plan_identifier,
            day0=conf.day0,
            description=plan_description(conf, content),
            condition=conf.diagnosis.source if conf.diagnosis else None,
            report=conf.report.source if conf.report else None,
            created=ctx.now,
            encounter_id=ctx.encounter_id,
        ),
    )


def _confirmed_detail(conf: Confirmation, content: Content) -> str:
    c, words, protocol = content.cards, content.cards.words, content.protocol
    t = c.confirmed
    report_label = (
        words.report.format(label=conf.report.label, source=conf.report.source)
        if conf.report
        else ""
    )
    report_date = conf.report.when.isoformat() if conf.report and conf.report.when else "-"
    if conf.diagnosis is not None:
        report_part = (
            t.finding_report_part.format(report=report_label, report_date=report_date)
            if conf.report
            else t.finding_no_report
        )
        finding = t.finding_condition.format(
            label=conf.diagnosis.label,
            code=f"{conf.diagnosis.code.system} {conf.diagnosis.code.code}",
            report_part=report_part,
        )
    else:
        finding = t.finding_report.format(report=report_label, report_date=report_date)
    phases = "\n".join(
        "- "
        + t.phase_line.format(
            name=phase.name,
            start=first.isoformat(),
            end=last.isoformat(),
        )
        for phase in protocol.phase
        for first, last in (protocol.window(conf.day0, phase.start_day, phase.end_day),)
    )
    grade_line = (
        t.grade_line.format(
            grade_text=conf.grade_text or "",
            grade_kind=words.grade_fracture
            if conf.grade is Grade.FRACTURE
            else words.grade_reaction,
        )
        if conf.grade is not None
        else ""
    )
    day0_basis = {
        "report": t.day0_report,
        "condition-recorded": t.day0_condition,
        "today": t.day0_today,
    }[conf.day0_source]
    detail = t.detail.format(
        finding=finding,
        day0=conf.day0.isoformat(),
        day0_basis=day0_basis,
        grade_line=grade_line,
        phases=phases,
        based_on=t.based_on,
        references=_numbered(c.references.confirmed),
        version=content.version,
    ).strip()
    return detail


def _confirmed_card(conf: Confirmation, content: Content, ctx: RenderContext) -> Rendered:
    c, t = content.cards, content.cards.confirmed
    detail = _confirmed_detail(conf, content)
    careplan = build_careplan(conf, content, ctx)
    summary_by_path = {
        "condition-and-report": t.summary_condition_and_report,
        "condition": t.summary_condition,
        "report": t.summary_report,
    }
    suggestions = [
        wire.Suggestion(
            label=t.suggestion_label,
            uuid=ctx.new_uuid(),
            isRecommended=True,
            actions=(_careplan_action(conf, content, careplan),),
        )
    ]
    if conf.referral:
        referral = to_service_request(
            c.orders.referral,
            patient_id=ctx.patient_id,
            reasons=(conf.finding,),
            note=t.referral_note,
            encounter_id=ctx.encounter_id,
        )
        suggestions.append(
            wire.Suggestion(
                label=t.referral_label,
                uuid=ctx.new_uuid(),
                isRecommended=False,
                actions=(
                    wire.Action(
                        type="create", description=t.referral_description, resource=referral
                    ),
                ),
            )
        )
    card = wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(summary_by_path[conf.path], t.summary_short),
        indicator="info",
        source=_source(content),
        detail=detail,
        suggestions=tuple(suggestions),
        selectionBehavior="any" if len(suggestions) > 1 else "at-most-one",
        links=_links(content),
    )
    return Rendered((card,), careplan)


def written_card(
    conf: Confirmation, content: Content, ctx: RenderContext, location: str
) -> wire.Card:
    """Card B when the service has written the draft plan itself (direct-write delivery)."""
    t = content.cards.confirmed
    detail = (
        _confirmed_detail(conf, content)
        + "\n\n"
        + t.written_line.format(location=location, identifier=conf.plan_identifier)
    )
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(t.summary_written, t.summary_short),
        indicator="info",
        source=_source(content),
        detail=detail,
        links=(
            wire.Link(label=t.written_link_label, url=location, type="absolute"),
            *_links(content),
        ),
    )


def system_action_card(
    conf: Confirmation, content: Content, ctx: RenderContext, careplan: dict[str, Any]
) -> tuple[wire.Card, wire.Action]:
    """Card B and its CarePlan as a system action (system-action delivery)."""
    t = content.cards.confirmed
    card = wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(t.summary_system_action, t.summary_short),
        indicator="info",
        source=_source(content),
        detail=_confirmed_detail(conf, content) + "\n\n" + t.system_action_line,
        links=_links(content),
    )
    return card, _careplan_action(conf, content, careplan)


def _careplan_action(conf: Confirmation, content: Content, careplan: dict[str, Any]) -> wire.Action:
    """The ``create`` of the draft CarePlan, for a suggestion or a system action."""
    description = content.cards.confirmed.action_description.format(day0=conf.day0.isoformat())
    return wire.Action(type="create", description=description, resource=careplan)


# ---------------------------------------------------------------------------- card B'
def _confirm_first_card(cf: ConfirmFirst, content: Content, ctx: RenderContext) -> wire.Card:
    c, words = content.cards, content.cards.words
    detail = c.confirm_first.detail.format(
        report=words.report.format(label=cf.report.label, source=cf.report.source),
        report_date=cf.report.when.isoformat() if cf.report.when else "-",
        version=content.version,
    ).strip()
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(c.confirm_first.summary),
        indicator="info",
        source=_source(content),
        detail=detail,
        links=_links(content),
    )
