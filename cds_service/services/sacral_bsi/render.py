"""Assessment + card content -> CDS Hooks cards. All wording comes from ``cards/sacral-bsi``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from cds_service.clinical.facts import (
    Code,
    Grade,
    MeasureKind,
    MriReport,
    PainGroup,
    RunnerEvidence,
    RunnerKind,
    Side,
)
from cds_service.clinical.identity import PLAN_NAMESPACE
from cds_service.clinical.report_text import QUOTE_LIMIT
from cds_service.clinical.sacral_bsi import (
    Assessment,
    Confirmation,
    ConfirmFirst,
    NoCard,
    QualifyingPain,
    RiskFactor,
    Suspicion,
)
from cds_service.platform import wire
from cds_service.services.sacral_bsi.content import Content, Words
from fhir_mappings.careplan import PlanFor, to_careplan
from fhir_mappings.conditions import DiagnosisFor, to_condition
from fhir_mappings.orders import OrderSpec, to_service_request
from fhir_mappings.primitives import is_literal_reference

SUMMARY_LIMIT = 140  # CDS Hooks: summary SHOULD be under 140 characters


@dataclass(frozen=True)
class RenderContext:
    patient_id: str
    encounter_id: str | None
    today: date
    now: datetime
    new_uuid: Callable[[], str]
    fhir_server: str | None = None  # the EHR's FHIR base: where the suggestions are applied
    app_launch_url: str | None = None  # the SMART app's launch URL, for the cards' links


@dataclass(frozen=True)
class Rendered:
    cards: tuple[wire.Card, ...]
    # The proposed plan as the service or the EHR would write it by itself (direct-write,
    # system-action): it addresses only a Condition already in the record.
    careplan: dict[str, Any] | None = None


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


def card_links(
    content: Content, ctx: RenderContext, view: Literal["evidence", "plan"]
) -> tuple[wire.Link, ...]:
    """The card's links: the SMART app's view first when the cards carry it (CDS_SMART_LINKS;
    the EHR launches it with launch and iss), then the references."""
    app: tuple[wire.Link, ...] = ()
    if ctx.app_launch_url:
        t = content.cards.app
        label = t.evidence_link if view == "evidence" else t.plan_link
        app = (wire.Link(label=label, url=ctx.app_launch_url, type="smart", appContext=view),)
    return (*app, *links(content))


def links(content: Content) -> tuple[wire.Link, ...]:
    return tuple(
        wire.Link(label=link.label, url=link.url, type="absolute") for link in content.cards.links
    )


# With [ ] escaped no link or image can form, so ( ) and ! may stay as they are.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~])")
_LINE_START = re.compile(r"^(\d+)([.)])")  # "1. text" would start a list
_AUTOLINK = re.compile(r"(://|\bwww\.)", re.IGNORECASE)
TEXT_SHOWN = 160  # characters of any one piece of record text shown in a card


# Characters that change how text around them is shown but show nothing themselves: bidi
# controls (which could turn the rest of a card line around), zero-width and other format marks.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    "\ufff9-\ufffb\U000e0001\U000e0020-\U000e007f]"
)


def quote_text(text: str, limit: int = TEXT_SHOWN) -> str:
    """Record text shown in a card's markdown, inert: on one line, at most ``limit``
    characters, no invisible format characters (bidi controls, zero-width marks), markdown and
    HTML characters escaped, no list or heading at its start, and no address a renderer would
    turn into a link."""
    flat = " ".join(_INVISIBLE.sub("", text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "\u2026"
    escaped = _MARKDOWN.sub(r"\\\1", flat)
    escaped = _LINE_START.sub(r"\1\\\2", escaped)
    if escaped.startswith(("-", "=", "+")):
        escaped = "\\" + escaped
    return _AUTOLINK.sub(
        lambda m: m.group(0).replace(":", ":\u200b").replace(".", "\u200b."), escaped
    )


def _coded(words: Words, label: str | None, code: Code) -> str:
    return words.coded.format(
        label=quote_text(label or code.display or code.code),
        system=code.system,
        code=quote_text(code.code, 40),
    )


def _dated(words: Words, text: str, when: date | None) -> str:
    return (
        words.dated.format(text=text, date=when.isoformat())
        if when
        else words.undated.format(text=text)
    )


def _side_word(words: Words, side: Side) -> str:
    return {Side.LEFT: words.left, Side.RIGHT: words.right}.get(side, words.unilateral)


def _ordinal(value: float) -> str:
    if value < 1:
        return "<1st"
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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
        text = words.runner_coded.format(
            display=quote_text(e.code.display or e.code.code), code=quote_text(e.code.code, 40)
        )
    elif e.code is not None:
        text = words.runner_activity_code.format(
            display=quote_text(e.code.display or e.code.code),
            system=e.code.system,
            code=quote_text(e.code.code, 40),
        )
    else:
        text = words.noted.format(phrase=quote_text(e.phrase or ""))
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
    elif r.ended and r.code is not None:
        text = words.ended.format(coded=_coded(words, r.label, r.code))
    elif r.code is not None:
        text = _coded(words, r.label, r.code)
    elif r.phrase is not None:
        text = words.noted.format(phrase=quote_text(r.phrase))
    elif r.label is not None:  # a record item named by its label (an MRI coded, not worded)
        text = quote_text(r.label)
    elif r.measure is not None and r.value is not None and r.percentile is not None:
        text = words.measure_bmi_for_age.format(
            value=r.value,
            percentile=_ordinal(r.percentile),
            percent_of_median=r.percent_of_median or 0.0,
        )
    elif r.measure is not None and r.value is not None:
        template: str = getattr(words, _MEASURE_WORDS[r.measure])
        text = template.format(value=r.value, previous=r.previous or 0.0)
    else:
        return words.female_sex
    return _dated(words, text, r.when)


@dataclass(frozen=True)
class _Brevity:
    """How much of card A's detail to keep (14.5: at most about 150 words)."""

    feature_quotes: bool = True  # the words noted for each feature of the story
    risk_evidence: bool = True  # each risk factor's code, value or words
    risk_dates: bool = True
    long_wording: bool = True  # the opening line and the long forms of the other lines


_BREVITY = (
    _Brevity(),
    _Brevity(feature_quotes=False),
    _Brevity(feature_quotes=False, risk_evidence=False),
    _Brevity(feature_quotes=False, risk_evidence=False, risk_dates=False, long_wording=False),
)


def _label(content: Content, r: RiskFactor, brevity: _Brevity) -> str:
    labels = content.cards.risk_labels if brevity.long_wording else content.cards.risk_labels_short
    return labels.get(r.category.value, r.category.value)


def _risk_items(content: Content, risks: tuple[RiskFactor, ...], brevity: _Brevity) -> str:
    words = content.cards.words

    def item(r: RiskFactor) -> str:
        label = _label(content, r, brevity)
        if r.source is None:
            return words.risk_item_bare.format(label=label, evidence=words.female_sex)
        if brevity.risk_evidence:
            return words.risk_item.format(label=label, evidence=_risk_evidence(words, r))
        return _dated(words, label, r.when) if brevity.risk_dates else label

    return words.item_join.join(item(r) for r in risks)


def _feature_items(content: Content, features: tuple[RiskFactor, ...], brevity: _Brevity) -> str:
    """Features of the story (symptoms, course): what was noted, no dates (they fall in the
    pain's own window)."""
    words = content.cards.words

    def item(r: RiskFactor) -> str:
        label = _label(content, r, brevity)
        found = None
        if brevity.feature_quotes and r.days is not None:
            found = words.si_duration_short.format(days=r.days)
        elif brevity.feature_quotes and r.phrase is not None:
            found = words.noted.format(phrase=quote_text(r.phrase))
        return words.risk_item_bare.format(label=label, evidence=found) if found else label

    return words.item_join.join(item(r) for r in features)


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


PAINS_SHOWN = 3  # the newest qualifying pains listed on card A; the others are counted


def _pain_items(words: Words, pains: tuple[QualifyingPain, ...]) -> str:
    shown = [_pain_item(words, q) for q in pains[:PAINS_SHOWN]]
    if len(pains) > PAINS_SHOWN:
        shown.append(words.more.format(count=len(pains) - PAINS_SHOWN))
    return words.item_join.join(shown)


def _date_or(words: Words, when: date | None) -> str:
    return when.isoformat() if when else words.date_not_recorded


def _suspect_lines(s: Suspicion, content: Content, long_wording: bool) -> list[str]:
    t, words = content.cards.suspect, content.cards.words
    lines: list[str] = []
    if s.triad:
        lines.append(t.triad_line)
    if s.mri_under_way is not None:
        lines.append(
            t.under_way_line.format(
                date=_date_or(words, s.mri_under_way.when),
                label=quote_text(s.mri_under_way.label),
            )
        )
    if s.mri_equivocal is not None and s.mri_equivocal.quote:
        lines.append(
            t.equivocal_line.format(
                date=_date_or(words, s.mri_equivocal.when),
                quote=quote_text(s.mri_equivocal.quote, QUOTE_LIMIT),
            )
        )
    if s.adolescent:
        lines.append(t.adolescent_line if long_wording else t.adolescent_line_short)
    if s.pregnancy is not None:
        lines.append(t.pregnancy_line if long_wording else t.pregnancy_line_short)
    return lines


def _next_steps(s: Suspicion, content: Content, long_wording: bool) -> str:
    t = content.cards.suspect
    if s.mri_under_way is not None:
        return t.next_steps_under_way
    if s.mri == "pelvis":
        return t.next_steps_pelvis if long_wording else t.next_steps_pelvis_short
    return t.next_steps_sacrum if long_wording else t.next_steps_sacrum_short


def _suspect_detail(s: Suspicion, content: Content) -> str:
    """The detail at the first level of brevity that fits the word limit (the last otherwise)."""
    t, words = content.cards.suspect, content.cards.words
    detail = ""
    for brevity in _BREVITY:
        long_wording = brevity.long_wording
        lines = "".join(f"\n{line}\n" for line in _suspect_lines(s, content, long_wording))
        detail = t.detail.format(
            why=(t.why_si_label if s.si_label else t.why) if long_wording else "",
            pains=_pain_items(words, s.pains),
            runner=_runner_text(words, s.runner),
            counted=s.counted_risks,
            risks=_risk_items(content, s.risks, brevity) or words.none_found,
            features=(
                t.features.format(items=_feature_items(content, s.features, brevity))
                if s.features
                else ""
            ),
            lines=lines,
            next_steps=_next_steps(s, content, long_wording),
            footer=(t.footer if long_wording else t.footer_short).format(version=content.version),
            version=content.version,
        ).strip()
        if len(detail.split()) <= t.detail_word_limit:
            break
    return detail


@dataclass(frozen=True)
class SuspicionEvidence:
    """Card A's evidence in card words, for the cards of other services that stand on it."""

    pain: str  # "left low back pain"
    pains: str  # each qualifying condition, coded and dated
    runner: str
    counted: int
    risks: str
    lines: str  # the triad, MRI under way or uncertain, adolescent and pregnancy lines


def suspicion_evidence(s: Suspicion, content: Content) -> SuspicionEvidence:
    words, brevity = content.cards.words, _BREVITY[2]
    return SuspicionEvidence(
        pain=_pain_phrase(s, words),
        pains=_pain_items(words, s.pains),
        runner=_runner_text(words, s.runner),
        counted=s.counted_risks,
        risks=_risk_items(content, s.risks, brevity) or words.none_found,
        lines="".join(f"\n{line}\n" for line in _suspect_lines(s, content, False)),
    )


def proposed_mri(
    s: Suspicion,
    content: Content,
    patient_id: str,
    encounter_id: str | None,
    *,
    spec: OrderSpec | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Card A's MRI order (sacrum, or pelvis for buttock or hip pain: 14.5; ``spec`` for
    another), reasoned by the qualifying conditions, its note saying MRI without contrast when
    a pregnancy is recorded (14.5). Validated as R4."""
    t, orders = content.cards.suspect, content.cards.orders
    note = note or t.order_note
    if s.pregnancy is not None:
        note = f"{note} {t.order_note_pregnancy}"
    return to_service_request(
        spec or (orders.mri_pelvis if s.mri == "pelvis" else orders.mri),
        patient_id=patient_id,
        reasons=tuple(q.pain.source for q in s.pains),
        note=note,
        encounter_id=encounter_id,
    )


def mri_suggestion(
    s: Suspicion,
    content: Content,
    patient_id: str,
    encounter_id: str | None,
    new_uuid: Callable[[], str],
) -> wire.Suggestion:
    """Card A's suggestion: create a draft MRI (proposed_mri), for the clinician to sign."""
    t = content.cards.suspect
    pelvis = s.mri == "pelvis"
    return wire.Suggestion(
        label=t.suggestion_label_pelvis if pelvis else t.suggestion_label_sacrum,
        uuid=new_uuid(),
        isRecommended=False,
        actions=(
            wire.Action(
                type="create",
                description=t.action_description_pelvis if pelvis else t.action_description_sacrum,
                resource=proposed_mri(s, content, patient_id, encounter_id),
            ),
        ),
    )


def _suspect_card(s: Suspicion, content: Content, ctx: RenderContext) -> wire.Card:
    c, words, t = content.cards, content.cards.words, content.cards.suspect
    pain = _pain_phrase(s, words)
    counted = s.counted_risks
    risk_count = (
        words.risk_count_one if counted == 1 else words.risk_count_many.format(count=counted)
    )
    proposing = s.mri_under_way is None
    next_step = (
        t.next_under_way if not proposing else t.next_pelvis if s.mri == "pelvis" else t.next_sacrum
    )
    fill = {
        "pain": pain,
        "risk_count": risk_count,
        "next": next_step,
        "xray": t.xray if proposing else "",
        "xray_short": t.xray_short if proposing else "",
    }
    candidates = []
    if counted:
        candidates.append(t.summary_with_risks.format(**fill))
    if s.si_label:
        candidates.append(t.summary_si_label.format(**fill))
    candidates += [
        t.summary_default.format(**fill),
        t.summary_short.format(**fill),
        t.summary_shortest,
    ]
    detail = _suspect_detail(s, content)
    suggestions: tuple[wire.Suggestion, ...] = ()
    if proposing:
        suggestions = (mri_suggestion(s, content, ctx.patient_id, ctx.encounter_id, ctx.new_uuid),)
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(*candidates),
        indicator=s.indicator,
        source=_source(content),
        detail=detail,
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=c.override_reasons.codings(),
        links=card_links(content, ctx, "evidence"),
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
        injury=injury,
        grade=grade,
        basis=basis,
        day0=conf.day0.isoformat(),
        stop=protocol.stop_and_reassess,
    )


def proposed_condition_id(patient_id: str, report: str) -> str:
    """The temporary id of the Condition proposed with a plan (path 2b): stable per finding."""
    name = f"sacral-bsi-diagnosis|Patient/{patient_id}|{report}"
    return f"sacral-bsi-dx-{uuid.uuid5(PLAN_NAMESPACE, name).hex}"


def build_careplan(
    conf: Confirmation, content: Content, ctx: RenderContext, condition: str | None = None
) -> dict[str, Any]:
    """The proposed plan; ``condition``: the Condition it addresses when none is recorded yet
    (the one proposed in the same suggestion)."""
    return to_careplan(
        content.protocol,
        PlanFor(
            patient_id=ctx.patient_id,
            identifier=conf.plan_identifier,
            day0=conf.day0,
            description=plan_description(conf, content),
            condition=conf.diagnosis.source if conf.diagnosis else condition,
            report=conf.report.source if conf.report else None,
            created=ctx.now,
            encounter_id=ctx.encounter_id,
            sex=conf.sex,
        ),
    )


def build_condition(
    report: str, side: Side, content: Content, ctx: RenderContext
) -> dict[str, Any]:
    """The confirmed sacral BSI Condition proposed from an MRI report (paths 2b and 3)."""
    return to_condition(
        content.cards.diagnosis,
        DiagnosisFor(
            patient_id=ctx.patient_id,
            resource_id=proposed_condition_id(ctx.patient_id, report),
            side={Side.LEFT: "left", Side.RIGHT: "right"}.get(side),
            report=report,
            recorded=ctx.today,
            encounter_id=ctx.encounter_id,
        ),
    )


def _confirmed_detail(conf: Confirmation, content: Content, *, written: bool = False) -> str:
    c, words, protocol = content.cards, content.cards.words, content.protocol
    t = c.confirmed
    report_label = _report_label(conf.report, words) if conf.report else ""
    report_date = conf.report.when.isoformat() if conf.report and conf.report.when else "-"
    if conf.diagnosis is not None:
        report_part = (
            t.finding_report_part.format(report=report_label, report_date=report_date)
            if conf.report
            else t.finding_no_report
        )
        finding = t.finding_condition.format(
            label=quote_text(conf.diagnosis.label),
            code=f"{conf.diagnosis.code.system} {quote_text(conf.diagnosis.code.code, 40)}",
            report_part=report_part,
        )
    else:
        template = t.finding_report_written if written else t.finding_report
        finding = template.format(report=report_label, report_date=report_date)
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
    grade_kind = words.grade_fracture if conf.grade is Grade.FRACTURE else words.grade_reaction
    grade_line = (
        t.grade_line.format(grade_text=conf.grade_text or grade_kind, grade_kind=grade_kind)
        if conf.grade is not None and conf.grade_text != grade_kind
        else t.grade_line_plain.format(grade_kind=grade_kind)
        if conf.grade is not None
        else ""
    )
    late = conf.days_since_day0 >= content.parameters.confirmation.late_plan_days
    prior_line = (
        t.prior_line.format(
            items=words.item_join.join(
                _dated(words, _coded(words, d.label, d.code), d.recorded or d.onset)
                for d in conf.prior
            )
        )
        if conf.prior
        else ""
    )
    day0_basis = {
        "report": t.day0_report,
        "condition-recorded": t.day0_condition,
        "today": t.day0_today,
    }[conf.day0_source]
    bone_health = next(
        (p for p in protocol.phase if p.allowed_by_sex), protocol.phase[-1]
    ).allowed_for(conf.sex)
    return t.detail.format(
        finding=finding,
        day0=conf.day0.isoformat(),
        day0_basis=day0_basis,
        grade_line=grade_line,
        late_line=t.late_line.format(weeks=conf.days_since_day0 // 7) if late else "",
        prior_line=prior_line,
        phases=phases,
        restriction=t.restriction.format(day0=conf.day0.isoformat()),
        stop=protocol.stop_and_reassess,
        bone_health=bone_health,
        version=content.version,
    ).strip()


def _confirmed_summary(conf: Confirmation, content: Content) -> str:
    t = content.cards.confirmed
    if conf.days_since_day0 >= content.parameters.confirmation.late_plan_days:
        return fit_summary(t.summary_late.format(weeks=conf.days_since_day0 // 7), t.summary_short)
    by_path = {
        "condition-and-report": t.summary_condition_and_report,
        "condition": t.summary_condition,
        "report": t.summary_report,
    }
    return fit_summary(by_path[conf.path], t.summary_short)


def _confirmed_card(conf: Confirmation, content: Content, ctx: RenderContext) -> Rendered:
    c, t = content.cards, content.cards.confirmed
    detail = _confirmed_detail(conf, content)
    careplan = build_careplan(conf, content, ctx)
    actions: tuple[wire.Action, ...] = (_careplan_action(conf, content, careplan),)
    label = t.suggestion_label
    if conf.proposes_condition and conf.report is not None:
        # Path 2b: record the diagnosis and create the plan that addresses it, together.
        condition = build_condition(conf.report.source, conf.side, content, ctx)
        with_condition = build_careplan(
            conf, content, ctx, condition=_reference_within_suggestion(ctx, condition)
        )
        actions = (
            _condition_action(content, condition),
            _careplan_action(conf, content, with_condition),
        )
        label = t.suggestion_label_with_diagnosis
    suggestions = [
        wire.Suggestion(label=label, uuid=ctx.new_uuid(), isRecommended=True, actions=actions)
    ]
    if conf.referral:
        referral = to_service_request(
            c.orders.referral,
            patient_id=ctx.patient_id,
            reasons=(conf.finding,) if conf.diagnosis is not None else (),
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
        summary=_confirmed_summary(conf, content),
        indicator="info",
        source=_source(content),
        detail=detail,
        suggestions=tuple(suggestions),
        selectionBehavior="any" if len(suggestions) > 1 else "at-most-one",
        links=card_links(content, ctx, "plan"),
    )
    return Rendered((card,), careplan)


def _reference_within_suggestion(ctx: RenderContext, resource: dict[str, Any]) -> str:
    """How one action's resource refers to another created in the same suggestion. CDS Hooks
    2.0: a suggestion's actions are applied as one FHIR transaction whose entries' full URLs
    are the EHR's FHIR base plus type and id; a reference equal to that full URL is the one a
    server rewrites to the id it assigns. Without a FHIR base, the relative form."""
    relative = f"{resource['resourceType']}/{resource['id']}"
    return f"{ctx.fhir_server.rstrip('/')}/{relative}" if ctx.fhir_server else relative


def _condition_suggestions(
    conf: Confirmation, content: Content, ctx: RenderContext
) -> tuple[wire.Suggestion, ...]:
    """When the plan is written without the EHR's help (direct-write, system-action) and no
    Condition records the injury: the card still offers to record it."""
    if not conf.proposes_condition or conf.report is None:
        return ()
    condition = build_condition(conf.report.source, conf.side, content, ctx)
    return (
        wire.Suggestion(
            label=content.cards.confirmed.diagnosis_label,
            uuid=ctx.new_uuid(),
            isRecommended=True,
            actions=(_condition_action(content, condition),),
        ),
    )


def written_card(
    conf: Confirmation, content: Content, ctx: RenderContext, location: str
) -> wire.Card:
    """Card B when the service has written the draft plan itself (direct-write delivery)."""
    t = content.cards.confirmed
    detail = (
        _confirmed_detail(conf, content, written=True)
        + "\n\n"
        + t.written_line.format(location=quote_text(location, 300), identifier=conf.plan_identifier)
    )
    suggestions = _condition_suggestions(conf, content, ctx)
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(t.summary_written, t.summary_short),
        indicator="info",
        source=_source(content),
        detail=detail,
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        links=(
            wire.Link(label=t.written_link_label, url=location, type="absolute"),
            *card_links(content, ctx, "plan"),
        ),
    )


def system_action_card(
    conf: Confirmation, content: Content, ctx: RenderContext, careplan: dict[str, Any]
) -> tuple[wire.Card, wire.Action]:
    """Card B and its CarePlan as a system action (system-action delivery)."""
    t = content.cards.confirmed
    suggestions = _condition_suggestions(conf, content, ctx)
    card = wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(t.summary_system_action, t.summary_short),
        indicator="info",
        source=_source(content),
        detail=_confirmed_detail(conf, content, written=True) + "\n\n" + t.system_action_line,
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        links=card_links(content, ctx, "plan"),
    )
    return card, _careplan_action(conf, content, careplan)


def _careplan_action(conf: Confirmation, content: Content, careplan: dict[str, Any]) -> wire.Action:
    """The ``create`` of the draft CarePlan, for a suggestion or a system action."""
    description = content.cards.confirmed.action_description.format(day0=conf.day0.isoformat())
    return wire.Action(type="create", description=description, resource=careplan)


def _condition_action(content: Content, condition: dict[str, Any]) -> wire.Action:
    return wire.Action(
        type="create",
        description=content.cards.confirmed.diagnosis_description,
        resource=condition,
    )


def _report_label(report: MriReport, words: Words) -> str:
    """The report as a card names it: its label and reference ("MRI sacrum (DiagnosticReport/7)"),
    the label alone when it was sent without an id."""
    if not is_literal_reference(report.source):
        return quote_text(report.label)
    return words.report.format(label=quote_text(report.label), source=quote_text(report.source, 80))


# ---------------------------------------------------------------------------- card B'
def _confirm_first_card(cf: ConfirmFirst, content: Content, ctx: RenderContext) -> wire.Card:
    c, words = content.cards, content.cards.words
    report = cf.report
    detail = c.confirm_first.detail.format(
        report=_report_label(report, words),
        report_date=report.when.isoformat() if report.when else "-",
        quote=quote_text(report.quote or "", QUOTE_LIMIT),
        version=content.version,
    ).strip()
    condition = build_condition(report.source, report.side, content, ctx)
    return wire.Card(
        uuid=ctx.new_uuid(),
        summary=fit_summary(c.confirm_first.summary),
        indicator="info",
        source=_source(content),
        detail=detail,
        suggestions=(
            wire.Suggestion(
                label=c.confirm_first.suggestion_label,
                uuid=ctx.new_uuid(),
                isRecommended=False,
                actions=(_condition_action(content, condition),),
            ),
        ),
        selectionBehavior="at-most-one",
        links=card_links(content, ctx, "evidence"),
    )
