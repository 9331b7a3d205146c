"""The sacral BSI rule: ``PatientFacts`` + parameters + today -> ``Assessment``.

Pure: no I/O, no clock (``today`` is passed in), no FHIR JSON. Brief sections in brackets.

    confirmed sacral BSI of the current episode (8.2, 14.2), Day 0 at most 182 days ago (14.3)
        ............................... Confirmation (card B), or nothing if its plan exists
    positive MRI text, not confirmed (8.2/3, 14.1)  ConfirmFirst (card B')
    runner (4) and one-sided pain (5) ........ Suspicion (card A), unless suppressed (7.5)
    otherwise ................................ NoCard(reason)

An *episode* is one injury: an older sacral BSI Condition that is closed, or whose Day 0 lies more
than ``report_max_age_days`` before a newer MRI, is an earlier episode (14.2): it blocks nothing
and is listed as a prior sacral BSI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from cds_service.clinical.facts import (
    BsiDiagnosis,
    ClinicalStatus,
    Code,
    Grade,
    ImagingOrder,
    ImagingRegion,
    MeasureKind,
    Measurement,
    MriReport,
    PainCondition,
    PainGroup,
    PatientFacts,
    Polarity,
    PregnancyEvidence,
    PregnancyState,
    ReportReading,
    RiskCategory,
    RiskCodeKind,
    RiskCondition,
    RunnerEvidence,
    RunnerKind,
    Side,
    Strength,
    TextTopic,
    Verification,
    combine_sides,
)
from cds_service.clinical.growth import PLAUSIBLE_BMI, bmi_for_age
from cds_service.clinical.identity import IDENTIFIER_SYSTEM, plan_identifier
from cds_service.clinical.parameters import RuleParameters

Indicator = Literal["info", "warning"]
MriProposal = Literal["sacrum", "pelvis"]


@dataclass(frozen=True)
class RiskFactor:
    """One risk category and the evidence that shows it (exactly one kind of evidence is set)."""

    category: RiskCategory
    when: date | None
    source: str | None  # "Condition/1"; None for Patient.gender
    code: Code | None = None  # a coded condition ...
    label: str | None = None  # ... and its text; alone: a record item named by its label
    phrase: str | None = None  # matched free text
    measure: MeasureKind | None = None  # a measurement ...
    value: float | None = None  # ... its value (BMI kg/m2, vitamin D ng/mL, percentile, min/week)
    previous: float | None = None  # earlier reading, for a rise in training
    days: int | None = None  # an SI-joint label still active this many days after onset
    percentile: float | None = None  # BMI-for-age percentile (under 20, computed: 14.9)
    percent_of_median: float | None = None  # BMI as % of the median for age and sex
    ended: bool = False  # the coded condition (a pregnancy) ended on ``when``


@dataclass(frozen=True)
class QualifyingPain:
    pain: PainCondition
    since: date  # onset (14.7), else recorded date, else encounter date


@dataclass(frozen=True)
class MriUnderWay:
    """An MRI ordered, or read only preliminarily, since the pain began (14.5)."""

    source: str
    label: str
    when: date | None
    status: str


@dataclass(frozen=True)
class Suspicion:
    side: Side  # LEFT | RIGHT | UNILATERAL | UNKNOWN (UNKNOWN only under "with_risk")
    pains: tuple[QualifyingPain, ...]  # newest first
    runner: RunnerEvidence
    risks: tuple[RiskFactor, ...]  # risk factors (female sex listed, not counted)
    counted_risks: int
    indicator: Indicator
    triad: bool
    si_label: bool
    features: tuple[RiskFactor, ...] = ()  # symptoms and course: listed apart, never counted
    mri: MriProposal = "sacrum"  # the MRI to propose: the pelvis for buttock or hip pain
    mri_under_way: MriUnderWay | None = None  # then no MRI is proposed
    mri_equivocal: MriReport | None = None  # an MRI read as uncertain (card A as if unread)
    adolescent: bool = False
    pregnancy: PregnancyEvidence | None = None


@dataclass(frozen=True)
class Confirmation:
    path: Literal["condition-and-report", "condition", "report"]
    diagnosis: BsiDiagnosis | None
    report: MriReport | None
    day0: date
    day0_source: Literal["report", "condition-recorded", "today"]
    grade: Grade | None
    grade_text: str | None
    side: Side
    plan_identifier: str
    referral: bool
    days_since_day0: int = 0
    prior: tuple[BsiDiagnosis, ...] = ()  # earlier sacral BSI episodes (14.2)
    sex: str | None = None  # Patient.gender, for the bone-health wording of the plan (14.4)

    @property
    def finding(self) -> str:
        """The resource the plan is for: the confirmed Condition, else the MRI report."""
        if self.diagnosis is not None:
            return self.diagnosis.source
        assert self.report is not None
        return self.report.source

    @property
    def proposes_condition(self) -> bool:
        """Path 2b: no Condition records the injury, so the card offers to record it (8.2)."""
        return self.diagnosis is None


@dataclass(frozen=True)
class ConfirmFirst:
    report: MriReport
    sex: str | None = None


@dataclass(frozen=True)
class NoCard:
    reason: str


Assessment = Suspicion | Confirmation | ConfirmFirst | NoCard

_RESOLVED = frozenset({ClinicalStatus.INACTIVE, ClinicalStatus.REMISSION, ClinicalStatus.RESOLVED})
_STRICT_ACTIVE = frozenset(
    {ClinicalStatus.ACTIVE, ClinicalStatus.RECURRENCE, ClinicalStatus.RELAPSE}
)
_STRENGTH_RANK = {Strength.STRONG: 2, Strength.MODERATE: 1}
_KIND_RANK = {
    RunnerKind.CODED_ACTIVITY: 4,
    RunnerKind.ACTIVITY_CODE: 3,
    RunnerKind.MILEAGE: 2,
    RunnerKind.TEXT: 1,
    RunnerKind.STOPPED_FOR_PAIN: 0,
}
_SIDED = frozenset({Side.LEFT, Side.RIGHT, Side.BILATERAL})
_ANY_SIDE = frozenset({Side.LEFT, Side.RIGHT, Side.BILATERAL, Side.UNILATERAL})


def assess(facts: PatientFacts, params: RuleParameters, today: date) -> Assessment:
    return assess_with_confirmation(facts, params, today)[0]


def assess_with_confirmation(
    facts: PatientFacts, params: RuleParameters, today: date
) -> tuple[Assessment, Confirmation | None]:
    """The assessment, and the current confirmation (``current_confirmation``) computed on the
    way: for callers that need both (the order services, the SMART app's view)."""
    if _insufficiency(facts):
        return NoCard("insufficiency_fracture"), None
    confirmation = _episode_confirmation(facts, params, today)
    stale = confirmation is not None and _stale(confirmation, params)
    if confirmation is not None and not stale:
        if _plan_in_chart(facts, confirmation, params):
            return NoCard("care_plan_in_chart"), confirmation
        return confirmation, confirmation
    report = _positive_report_text(facts, params, today)
    if report is not None and not _before_new_pain(report.when or today, facts, params, today):
        return ConfirmFirst(report, facts.gender), None
    suspicion = _suspicion(facts, params, today)
    if stale and isinstance(suspicion, NoCard):
        # The whole plan would lie in the past (14.3): nothing to propose.
        return NoCard("diagnosis_too_old_for_a_plan"), None
    return suspicion, None


def _insufficiency(facts: PatientFacts) -> bool:
    """An active insufficiency fracture: another pathway (8.4), no card of this rule."""
    return any(d.insufficiency and d.clinical.is_active for d in facts.diagnoses)


def _stale(confirmation: Confirmation, params: RuleParameters) -> bool:
    """Day 0 too long ago for a plan (14.3)."""
    return confirmation.days_since_day0 > params.confirmation.report_max_age_days


def _episode_confirmation(
    facts: PatientFacts, params: RuleParameters, today: date
) -> Confirmation | None:
    confirmation = _confirmation(facts, params, today)
    if confirmation is not None and _before_new_pain(confirmation.day0, facts, params, today):
        # 14.2: this pain began well after that injury was confirmed: a new episode, for card A
        # (the old injury is a previous BSI), not a plan for the old one.
        return None
    return confirmation


def current_confirmation(
    facts: PatientFacts, params: RuleParameters, today: date
) -> Confirmation | None:
    """The sacral BSI confirmed (8.2 paths 1, 2, 2b) for the current episode, no older than
    ``report_max_age_days``: the injury card B plans for, whether or not a plan is in the
    chart already. None for an insufficiency fracture (8.4)."""
    if _insufficiency(facts):
        return None
    confirmation = _episode_confirmation(facts, params, today)
    if confirmation is None or _stale(confirmation, params):
        return None
    return confirmation


def _before_new_pain(day0: date, facts: PatientFacts, params: RuleParameters, today: date) -> bool:
    """An injury confirmed on ``day0`` belongs to an earlier episode than the current episode of
    qualifying pain (card A's episode) when that pain began more than ``new_pain_episode_days``
    after it (14.2)."""
    pains = current_episode(qualifying_pains(facts.pains, params, today), params)
    began = min((q.since for q in pains), default=None)
    gap = params.confirmation.new_pain_episode_days
    return began is not None and began > day0 + timedelta(days=gap)


# ---------------------------------------------------------------------------- card B (8, 14.2-3)
def _covers_sacrum(report: MriReport) -> bool:
    return report.region is ImagingRegion.SACRUM or (
        report.region is ImagingRegion.LUMBAR and report.conclusion_names_sacrum
    )


_NOT_CONFIRMING = frozenset(
    {
        ReportReading.UNCERTAIN,
        ReportReading.ATTRIBUTED,
        ReportReading.NEGATED,
        ReportReading.HISTORY,
        ReportReading.OTHER_SITE,
    }
)


def _confirms(report: MriReport) -> bool:
    """The report itself shows a sacral BSI: a coded conclusion, or a conclusion reading so."""
    return report.coded_sacral_bsi or report.reading is ReportReading.POSITIVE


def _confirming_report(
    dx: BsiDiagnosis, reports: list[MriReport], window: timedelta
) -> MriReport | None:
    """The MRI that confirmed ``dx`` (brief 8.2, 8.5): a final MRI covering the sacrum whose
    conclusion does not read as absent, uncertain, another cause or an old injury, linked
    through Condition.evidence, else dated within the window of the Condition's recorded date
    (never its onset, which is when symptoms began). Among several, the first that shows the
    injury: the diagnosis date, not a follow-up scan."""
    usable = [r for r in reports if _covers_sacrum(r) and r.reading not in _NOT_CONFIRMING]
    linked = [r for r in usable if r.source in dx.evidence]
    near = (
        [r for r in usable if r.when is not None and abs(r.when - dx.recorded) <= window]
        if dx.recorded is not None
        else []
    )
    for group in (linked, near):
        showing = [r for r in group if _confirms(r)] or group
        if showing:
            return min(showing, key=lambda r: r.when or date.max)
    return None


def _sacral_conditions(facts: PatientFacts) -> list[BsiDiagnosis]:
    """Every sacral BSI Condition in the record, whatever its status (refuted and
    entered-in-error are already gone)."""
    return [d for d in facts.diagnoses if d.sacral and not d.insufficiency]


def _dx_date(dx: BsiDiagnosis, reports: list[MriReport]) -> date | None:
    """When the injury a Condition records was diagnosed: its linked MRI, else its recorded
    date, else its onset (only to place the episode in time, never as a plan's Day 0)."""
    linked = [r.when for r in reports if r.source in dx.evidence and r.when is not None]
    return min(linked) if linked else (dx.recorded or dx.onset)


def _same_episode(
    dx: BsiDiagnosis, when: date, reports: list[MriReport], params: RuleParameters
) -> bool:
    """Does Condition ``dx`` record the injury an MRI of ``when`` shows (14.2)? A closed one
    (resolved, inactive, remission) does unless it was diagnosed well before that MRI; an open
    one does unless its Day 0 lies more than ``report_max_age_days`` before it. Undated: yes."""
    dated = _dx_date(dx, reports)
    if dated is None:
        return True
    c = params.confirmation
    days = c.report_link_window_days if dx.clinical in _RESOLVED else c.report_max_age_days
    return dated >= when - timedelta(days=days)


def _confirmation(facts: PatientFacts, params: RuleParameters, today: date) -> Confirmation | None:
    """The newest confirmed injury (the latest Day 0): from a confirmed, active Condition
    (paths 1, 2), or from a final MRI whose conclusion codes a sacral stress fracture that no
    Condition of the same episode records yet (path 2b)."""
    final_reports = [r for r in facts.reports if r.final]
    window = timedelta(days=params.confirmation.report_link_window_days)
    candidates: list[Confirmation] = []
    sacral = _sacral_conditions(facts)
    for dx in sacral:
        if dx.verification is not Verification.CONFIRMED or not dx.clinical.is_active:
            continue
        report = _confirming_report(dx, final_reports, window)
        source: Literal["report", "condition-recorded", "today"]
        if report is not None and report.when is not None:
            day0, source = report.when, "report"
        elif dx.recorded is not None:
            day0, source = dx.recorded, "condition-recorded"
        else:
            day0, source = today, "today"
        path: Literal["condition-and-report", "condition"] = (
            "condition-and-report" if report else "condition"
        )
        candidates.append(_confirmed(facts, params, today, path, dx, report, day0, source))
    for report in final_reports:
        if not report.coded_sacral_bsi:
            continue
        day0 = report.when or today
        # A Condition of this episode, whatever its status, means the clinician has judged
        # this injury: it makes its own card (confirmed) or none (provisional, resolved).
        if any(_same_episode(dx, day0, final_reports, params) for dx in sacral):
            continue
        when: Literal["report", "today"] = "report" if report.when else "today"
        candidates.append(_confirmed(facts, params, today, "report", None, report, day0, when))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c.day0)


def _confirmed(
    facts: PatientFacts,
    params: RuleParameters,
    today: date,
    path: Literal["condition-and-report", "condition", "report"],
    dx: BsiDiagnosis | None,
    report: MriReport | None,
    day0: date,
    day0_source: Literal["report", "condition-recorded", "today"],
) -> Confirmation:
    grade = report.grade if report else None
    grade_text = report.grade_text if report else None
    side = combine_sides(
        s for s in (dx.side if dx else Side.UNKNOWN, report.side if report else Side.UNKNOWN)
    )
    finding = dx.source if dx is not None else (report.source if report else "")
    final_reports = [r for r in facts.reports if r.final]
    episode = set(_episode_conditions(facts, dx, day0, params))
    prior = tuple(
        sorted(
            (d for d in _sacral_conditions(facts) if d.source not in episode),
            key=lambda d: _dx_date(d, final_reports) or date.min,
        )
    )
    return Confirmation(
        path=path,
        diagnosis=dx,
        report=report,
        day0=day0,
        day0_source=day0_source,
        grade=grade,
        grade_text=grade_text,
        side=side,
        plan_identifier=plan_identifier(facts.patient_id, finding),
        referral=params.confirmation.referral_on_fracture_line and grade is Grade.FRACTURE,
        days_since_day0=(today - day0).days,
        prior=prior,
        sex=facts.gender,
    )


def _episode_conditions(
    facts: PatientFacts, dx: BsiDiagnosis | None, day0: date, params: RuleParameters
) -> list[str]:
    """The sacral BSI Conditions that record the injury confirmed on ``day0``: the confirming
    one, and its twins (a later-encounter code, a second entry) of the same episode."""
    final_reports = [r for r in facts.reports if r.final]
    found = [dx.source] if dx is not None else []
    found += [
        d.source
        for d in _sacral_conditions(facts)
        if d is not dx and _same_episode(d, day0, final_reports, params)
    ]
    return found


def _plan_in_chart(facts: PatientFacts, c: Confirmation, params: RuleParameters) -> bool:
    """A plan for this injury is already in the record: one of ours (by identifier, any status
    but entered-in-error), or a live plan that addresses a Condition of this episode (an
    initial-encounter code and its later-encounter twin are one injury), supports the
    confirming report, or instantiates our protocol for no other Condition or report. A plan for
    an earlier episode does not count (14.2)."""
    live = params.confirmation.plan_statuses_in_chart
    conditions = set(_episode_conditions(facts, c.diagnosis, c.day0, params))
    ours = {c.plan_identifier} | {plan_identifier(facts.patient_id, ref) for ref in conditions}
    if c.report is not None:
        ours.add(plan_identifier(facts.patient_id, c.report.source))
    for plan in facts.care_plans:
        if plan.status != "entered-in-error" and any(
            (IDENTIFIER_SYSTEM, value) in plan.identifiers for value in ours
        ):
            return True
        if plan.status not in live:
            continue
        if conditions & set(plan.addresses):
            return True
        if c.report is not None and c.report.source in plan.supporting:
            return True
        if (
            params.protocol_uri
            and params.protocol_uri in plan.instantiates
            and not plan.addresses
            and not plan.supporting
        ):
            return True
    return False


def _positive_report_text(
    facts: PatientFacts, params: RuleParameters, today: date
) -> MriReport | None:
    """Path 3: a recent final MRI covering the sacrum whose conclusion has a clear affirmative
    sacral BSI sentence (14.1), when no Condition of the same episode records the injury."""
    final_reports = [r for r in facts.reports if r.final]
    oldest = today - timedelta(days=params.confirmation.report_max_age_days)
    sacral = _sacral_conditions(facts)
    return _newest(
        r
        for r in final_reports
        if (r.when is None or r.when >= oldest)
        and _covers_sacrum(r)
        and r.reading is ReportReading.POSITIVE
        and not any(_same_episode(dx, r.when or today, final_reports, params) for dx in sacral)
    )


def _newest(reports: Iterable[MriReport]) -> MriReport | None:
    listed = list(reports)
    if not listed:
        return None
    return max(listed, key=lambda r: r.when or date.min)


# ---------------------------------------------------------------------------- card A (4-7, 14.5)
def _suspicion(facts: PatientFacts, params: RuleParameters, today: date) -> Assessment:
    p = params.suspicion
    pains = current_episode(qualifying_pains(facts.pains, params, today), params)
    episode_start = min((q.since for q in pains), default=None)
    runner = best_runner_evidence(
        facts.runner,
        today,
        p.runner_lookback_days,
        episode_start - timedelta(days=p.stopped_for_pain_margin_days) if episode_start else None,
    )
    if runner is None:
        return NoCard("not_a_runner")
    if not pains or episode_start is None:
        return NoCard("no_qualifying_pain")
    side = combine_sides(q.pain.side for q in pains)
    if side in (Side.BILATERAL, Side.CENTRAL):
        return NoCard(f"pain_{side.value}")
    if _confirmed_since(facts, episode_start):
        # 7.5.1: this pain already has its diagnosis (however old: card B may be past, 14.3).
        return NoCard("sacral_bsi_confirmed")
    read_since_pain = [
        r
        for r in facts.reports
        if r.final and _covers_sacrum(r) and r.when is not None and r.when >= episode_start
    ]
    if p.mri_suppress and any(r.reading.read_as_imaged for r in read_since_pain):
        return NoCard("mri_after_pain_onset")
    found = risk_factors(facts, pains, params, today)
    symptoms = set(params.indicator.symptoms)
    risks = tuple(r for r in found if r.category.value not in symptoms)
    features = tuple(r for r in found if r.category.value in symptoms)
    counted = sum(1 for r in risks if r.category.value not in params.indicator.not_counted)
    if side is Side.UNKNOWN and not (
        p.unknown_laterality_policy == "with_risk" and counted >= p.unknown_lat_min_risks
    ):
        return NoCard("side_not_recorded")
    categories = {r.category for r in risks}
    triad_groups = (
        RiskCategory.MENSTRUAL in categories,
        bool(categories & {RiskCategory.LOW_ENERGY, RiskCategory.LOW_BMI}),
        RiskCategory.LOW_BMD in categories,
    )
    age = _age(facts.birth_date, today)
    return Suspicion(
        side=side,
        pains=tuple(sorted(pains, key=lambda q: q.since, reverse=True)),
        runner=runner,
        risks=risks,
        counted_risks=counted,
        indicator="warning" if counted >= params.indicator.warning_min_risk_factors else "info",
        triad=sum(triad_groups) >= 2,
        si_label=any(q.pain.group is PainGroup.SI_JOINT for q in pains),
        features=features,
        mri=(
            "pelvis"
            if any(_hip_or_buttock(q.pain) for q in pains)
            or any((today - began).days <= p.lbp_lookback_days for began in facts.hip_pain)
            else "sacrum"
        ),
        mri_under_way=_mri_under_way(facts, episode_start),
        mri_equivocal=_newest(r for r in read_since_pain if r.reading is ReportReading.UNCERTAIN),
        adolescent=age is not None and age < p.adolescent_age_years,
        pregnancy=(
            None
            if facts.gender == "male"  # a pregnancy code on a man's record is a data error
            else _pregnant(facts.pregnancy, today, p.pregnancy_window_days)
        ),
    )


def _confirmed_since(facts: PatientFacts, pain_began: date) -> bool:
    """A sacral BSI confirmed on or after the day this pain began."""
    final_reports = [r for r in facts.reports if r.final]
    return any(
        d.verification is Verification.CONFIRMED
        and (dated := _dx_date(d, final_reports)) is not None
        and dated >= pain_began
        for d in _sacral_conditions(facts)
    )


def _hip_or_buttock(pain: PainCondition) -> bool:
    return pain.group is PainGroup.BUTTOCK or pain.hip_or_buttock


def _mri_under_way(facts: PatientFacts, pain_began: date) -> MriUnderWay | None:
    """An MRI of the lumbar spine, sacrum or pelvis ordered (draft, active, on-hold) since the
    pain began, or a report of one that is registered, partial or preliminary (14.5). An
    undated one counts: saying "ordered" wrongly costs less than ordering twice."""
    under_way: list[MriUnderWay] = [
        MriUnderWay(o.source, o.label, o.authored, o.status)
        for o in facts.orders
        if _spine_or_pelvis(o) and (o.authored is None or o.authored >= pain_began)
    ]
    under_way += [
        MriUnderWay(r.source, r.label, r.when, r.status)
        for r in facts.reports
        if r.pending
        and r.region in (ImagingRegion.SACRUM, ImagingRegion.LUMBAR)
        and (r.when is None or r.when >= pain_began)
    ]
    if not under_way:
        return None
    return max(under_way, key=lambda u: u.when or date.min)


def _spine_or_pelvis(order: ImagingOrder) -> bool:
    return order.region in (ImagingRegion.SACRUM, ImagingRegion.LUMBAR)


def _pregnant(
    evidence: Iterable[PregnancyEvidence], today: date, window_days: int
) -> PregnancyEvidence | None:
    """Pregnant now: the newest dated pregnancy evidence within the window says pregnant (a
    later "not pregnant" observation, or the end of the pregnancy Condition, says otherwise)."""
    start = today - timedelta(days=window_days)
    states: list[tuple[date, PregnancyEvidence | None]] = []
    for e in evidence:
        if e.state is PregnancyState.PREGNANT and not e.closed and e.ended is None:
            if e.when is not None:
                states.append((e.when, e))
        elif e.state is PregnancyState.NOT_PREGNANT and e.when is not None:
            states.append((e.when, None))
        if e.ended is not None:
            states.append((e.ended, None))
    recent = [(when, e) for when, e in states if start <= when <= today]
    if not recent:
        return None
    return max(recent, key=lambda item: (item[0], item[1] is None))[1]


def best_runner_evidence(
    evidence: Iterable[RunnerEvidence],
    today: date,
    lookback_days: int,
    episode_start: date | None = None,
) -> RunnerEvidence | None:
    """RUNNER = a STRONG or MODERATE current item within the look-back (4.1), unless newer
    evidence says the patient stopped or denies running (4.2: the newest dated evidence wins).
    "Stopped running because of the pain" counts only within the current episode (14.6):
    dated on or after ``episode_start``."""
    start = today - timedelta(days=lookback_days)
    dated = [
        e
        for e in evidence
        if e.when is not None
        and (
            e.kind is not RunnerKind.STOPPED_FOR_PAIN
            or (episode_start is not None and e.when >= episode_start)
        )
    ]
    current = [e for e in dated if e.polarity is Polarity.CURRENT and e.when and e.when >= start]
    if not current:
        return None
    newest_current = max(e.when for e in current if e.when)
    former = [e.when for e in dated if e.polarity is Polarity.FORMER and e.when]
    if former and max(former) > newest_current:
        return None
    return max(
        current,
        key=lambda e: (_STRENGTH_RANK[e.strength], _KIND_RANK[e.kind], e.when or date.min),
    )


def qualifying_pains(
    pains: Iterable[PainCondition], params: RuleParameters, today: date
) -> list[QualifyingPain]:
    """Status and date filters of 5.3 applied to every coded low back / buttock / SI pain; the
    onset as 14.7 reads it (a duration with nothing to count it from counts from today)."""
    p = params.suspicion
    out: list[QualifyingPain] = []
    for pain in pains:
        if pain.group is PainGroup.SCIATICA and not p.include_sciatica_codes:
            continue
        if pain.verification.excluded:
            continue
        if pain.clinical in _RESOLVED:
            if (
                p.recent_resolution_days <= 0
                or pain.abated is None
                or (today - pain.abated).days > p.recent_resolution_days
            ):
                continue
        elif not pain.clinical.is_active:
            continue
        since = (
            pain.onset
            or (
                today - timedelta(days=pain.onset_days_ago)
                if pain.onset_days_ago is not None
                else None
            )
            or pain.recorded
            or pain.encounter_date
        )
        if since is None or (today - since).days > p.lbp_lookback_days:
            continue
        out.append(QualifyingPain(pain, since))
    return out


def current_episode(pains: list[QualifyingPain], params: RuleParameters) -> list[QualifyingPain]:
    """14.8: left and right make "bilateral" only when the episodes overlap. A pain on another
    side that began more than ``separate_episode_days`` before the newest sided pain, and was
    not seen at an encounter since then, is an earlier episode: it is left out."""
    sided = [q for q in pains if q.pain.side in _ANY_SIDE]
    if not sided:
        return pains
    newest = max(sided, key=lambda q: q.since)
    cutoff = newest.since - timedelta(days=params.suspicion.separate_episode_days)

    def earlier_episode(q: QualifyingPain) -> bool:
        seen_since = q.pain.encounter_date is not None and q.pain.encounter_date >= cutoff
        return (
            q.pain.side in _SIDED
            and q.pain.side is not newest.pain.side
            and q.since < cutoff
            and not seen_since
        )

    return [q for q in pains if not earlier_episode(q)]


# ---------------------------------------------------------------------------- risk factors (6)
def risk_factors(
    facts: PatientFacts, pains: list[QualifyingPain], params: RuleParameters, today: date
) -> tuple[RiskFactor, ...]:
    """Each category once, with its best (newest) evidence. Female sex is listed, not counted."""
    p, t = params.suspicion, params.thresholds
    earliest_pain = min(q.since for q in pains)
    risk_start = today - timedelta(days=p.risk_lookback_days)
    pain_start = today - timedelta(days=p.lbp_lookback_days)
    menstrual_start = today - timedelta(days=p.menstrual_lookback_days)
    postpartum_start = today - timedelta(days=p.postpartum_window_days)
    found: dict[RiskCategory, RiskFactor] = {}

    def add(factor: RiskFactor) -> None:
        held = found.get(factor.category)
        if held is None or (
            factor.when is not None and (held.when is None or factor.when > held.when)
        ):
            found[factor.category] = factor

    def add_coded(category: RiskCategory, c: RiskCondition) -> None:
        add(RiskFactor(category, c.when, c.source, code=c.code, label=c.label))

    def add_measured(
        category: RiskCategory,
        m: Measurement,
        *,
        previous: float | None = None,
        percentile: float | None = None,
        percent_of_median: float | None = None,
    ) -> None:
        add(
            RiskFactor(
                category,
                m.when,
                m.source,
                measure=m.kind,
                value=m.value,
                previous=previous,
                percentile=percentile,
                percent_of_median=percent_of_median,
            )
        )

    def active_or_since(c: RiskCondition, start: date) -> bool:
        return c.clinical in _STRICT_ACTIVE or (c.when is not None and c.when >= start)

    age = _age(facts.birth_date, today)
    adult = age is None or age >= t.adult_age_years
    measured_bmi = _latest(facts.measurements, MeasureKind.BMI, risk_start)
    for c in facts.risk_conditions:
        kind = c.kind
        if kind is RiskCodeKind.STRESS_FRACTURE_HISTORY:
            add_coded(RiskCategory.PRIOR_BSI, c)
        elif kind is RiskCodeKind.STRESS_FRACTURE:
            current_sacral = (
                c.sacral and c.clinical.is_active and (c.when is None or c.when >= earliest_pain)
            )
            if not current_sacral:
                add_coded(RiskCategory.PRIOR_BSI, c)
        elif kind is RiskCodeKind.MENSTRUAL and active_or_since(c, menstrual_start):
            add_coded(RiskCategory.MENSTRUAL, c)
        elif kind is RiskCodeKind.EATING_DISORDER:
            add_coded(RiskCategory.LOW_ENERGY, c)
        elif (
            (kind is RiskCodeKind.UNDERWEIGHT and active_or_since(c, risk_start))
            or (
                kind is RiskCodeKind.BMI_BAND_LOW_ADULT
                and adult
                and measured_bmi is None
                and active_or_since(c, risk_start)
            )
            or (
                kind is RiskCodeKind.BMI_LOW_PEDIATRIC
                and not adult
                and active_or_since(c, risk_start)
            )
        ):
            add_coded(RiskCategory.LOW_BMI, c)
        elif kind is RiskCodeKind.LOW_BMD:
            add_coded(RiskCategory.LOW_BMD, c)
        elif (
            kind is RiskCodeKind.VITAMIN_D_DEFICIENCY
            and active_or_since(c, risk_start)
            and _latest(facts.measurements, MeasureKind.VITAMIN_D_NG_ML, risk_start) is None
        ):
            add_coded(RiskCategory.LOW_VITAMIN_D, c)
        elif kind in (RiskCodeKind.POSTPARTUM, RiskCodeKind.LACTATION) and (
            (c.clinical in _STRICT_ACTIVE and (c.when is None or c.when >= postpartum_start))
            or (c.when is not None and c.when >= postpartum_start)
        ):
            add_coded(RiskCategory.POSTPARTUM_LACTATION, c)

    # A pregnancy that ended within the window (14.5: postpartum up to 12 months).
    for e in facts.pregnancy:
        if e.ended is not None and postpartum_start <= e.ended <= today:
            add(
                RiskFactor(
                    RiskCategory.POSTPARTUM_LACTATION,
                    e.ended,
                    e.source,
                    code=e.code,
                    label=e.label,
                    ended=True,
                )
            )

    # Low BMI from measurements (6 row 4; under 20: 14.9).
    if adult:
        bmi = measured_bmi or _computed_bmi(facts.measurements, risk_start)
        if bmi is not None and _below(bmi, t.bmi_low_adult):
            add_measured(RiskCategory.LOW_BMI, bmi)
    else:
        pct = _latest(facts.measurements, MeasureKind.BMI_PERCENTILE, risk_start)
        if pct is not None and _below(pct, t.bmi_percentile_low):
            add_measured(RiskCategory.LOW_BMI, pct)
        bmi = measured_bmi or _computed_bmi(facts.measurements, risk_start)
        if bmi is not None and facts.birth_date is not None and bmi.comparator is None:
            for_age = bmi_for_age(
                params.bmi_for_age, facts.gender, facts.birth_date, bmi.when, bmi.value
            )
            if for_age is not None and (
                for_age.percentile < t.bmi_percentile_low
                or for_age.percent_of_median < t.bmi_percent_of_median_low
            ):
                add_measured(
                    RiskCategory.LOW_BMI,
                    bmi,
                    percentile=for_age.percentile,
                    percent_of_median=for_age.percent_of_median,
                )
    vit_d = _latest(facts.measurements, MeasureKind.VITAMIN_D_NG_ML, risk_start)
    if vit_d is not None and _below(vit_d, t.vitamin_d_low_ng_ml):
        add_measured(RiskCategory.LOW_VITAMIN_D, vit_d)

    # An MRI that describes a healed or earlier sacral injury (14.1), or that showed one before
    # this pain began: a previous BSI.
    for r in facts.reports:
        if r.final and r.history_quote:
            add(RiskFactor(RiskCategory.PRIOR_BSI, r.when, r.source, phrase=r.history_quote))
        elif r.final and _confirms(r) and r.when is not None and r.when < earliest_pain:
            quoted, named = (r.quote, None) if r.quote else (None, r.label)
            add(RiskFactor(RiskCategory.PRIOR_BSI, r.when, r.source, label=named, phrase=quoted))

    # SI-joint label not improving with usual care (row 7).
    for q in pains:
        if q.pain.group is not PainGroup.SI_JOINT or q.pain.clinical not in (
            *_STRICT_ACTIVE,
            ClinicalStatus.MISSING,
        ):
            continue
        days = (today - q.since).days
        if days >= p.si_not_improving_days:
            add(
                RiskFactor(
                    RiskCategory.SI_NOT_IMPROVING,
                    q.since,
                    q.pain.source,
                    code=q.pain.code,
                    label=q.pain.label,
                    days=days,
                )
            )

    # Free text (rows 1, 2, 3, 5, 7-10; postpartum and lactation).
    by_topic: dict[TextTopic, tuple[RiskCategory, date | None]] = {
        TextTopic.PRIOR_BSI: (RiskCategory.PRIOR_BSI, None),
        TextTopic.MENSTRUAL: (RiskCategory.MENSTRUAL, menstrual_start),
        TextTopic.LOW_ENERGY: (RiskCategory.LOW_ENERGY, None),
        TextTopic.LOW_BMD: (RiskCategory.LOW_BMD, None),
        TextTopic.PAIN_WITH_IMPACT: (RiskCategory.PAIN_WITH_IMPACT, pain_start),
        TextTopic.INSIDIOUS_ONSET: (RiskCategory.INSIDIOUS_ONSET, pain_start),
        TextTopic.POSTPARTUM: (RiskCategory.POSTPARTUM_LACTATION, postpartum_start),
        TextTopic.LACTATION: (RiskCategory.POSTPARTUM_LACTATION, postpartum_start),
    }
    si_label = any(q.pain.group is PainGroup.SI_JOINT for q in pains)
    for finding in facts.texts:
        category_start: tuple[RiskCategory, date | None] | None = by_topic.get(finding.topic)
        if finding.topic is TextTopic.NOT_IMPROVING and si_label:
            category_start = (RiskCategory.SI_NOT_IMPROVING, pain_start)
        if category_start is None:
            if (
                finding.topic is TextTopic.TRAINING_INCREASE
                and finding.when is not None
                and any(
                    abs((finding.when - q.since).days) <= p.training_increase_window_days
                    for q in pains
                )
            ):
                category_start = (RiskCategory.TRAINING_INCREASE, None)
            else:
                continue
        category, start = category_start
        if start is None or (finding.when is not None and finding.when >= start):
            add(RiskFactor(category, finding.when, finding.source, phrase=finding.phrase))
    rise = _training_rise(
        facts.measurements, pains, p.training_increase_window_days, p.training_increase_min_ratio
    )
    if rise is not None:
        before, after = rise
        add_measured(RiskCategory.TRAINING_INCREASE, after, previous=before.value)

    if facts.gender == "female":
        found[RiskCategory.FEMALE_SEX] = RiskFactor(RiskCategory.FEMALE_SEX, None, None)
    order = list(RiskCategory)
    return tuple(sorted(found.values(), key=lambda r: order.index(r.category)))


def _age(birth: date | None, today: date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _latest(
    measurements: Iterable[Measurement], kind: MeasureKind, start: date
) -> Measurement | None:
    inside = [m for m in measurements if m.kind is kind and m.when >= start]
    return max(inside, key=lambda m: m.when) if inside else None


def _below(m: Measurement, threshold: float) -> bool:
    if m.comparator in ("<", "<="):
        return m.value <= threshold
    if m.comparator in (">", ">="):
        return False
    return m.value < threshold


def _computed_bmi(measurements: Iterable[Measurement], start: date) -> Measurement | None:
    weight = _latest(measurements, MeasureKind.WEIGHT_KG, start)
    height = _latest(measurements, MeasureKind.HEIGHT_CM, date.min)
    if weight is None or height is None or height.value <= 0:
        return None
    value = weight.value / (height.value / 100.0) ** 2
    if not PLAUSIBLE_BMI[0] <= value <= PLAUSIBLE_BMI[1]:
        return None  # a unit or entry error in the weight or the height
    return Measurement(weight.source, MeasureKind.BMI, round(value, 1), weight.when)


def _training_rise(
    measurements: Iterable[Measurement],
    pains: list[QualifyingPain],
    window_days: int,
    min_ratio: float,
) -> tuple[Measurement, Measurement] | None:
    """A rise in exercise minutes/week (LOINC 82290-8) between readings near the pain onset."""
    readings = sorted(
        (
            m
            for m in measurements
            if m.kind is MeasureKind.EXERCISE_MIN_PER_WEEK
            and any(abs((m.when - q.since).days) <= window_days for q in pains)
        ),
        key=lambda m: m.when,
    )
    if len(readings) < 2:
        return None
    before, after = readings[-2], readings[-1]
    if before.value > 0 and after.value >= before.value * min_ratio:
        return before, after
    return None


# ---------------------------------------------------------------------------- feedback
def evidence_keys(assessment: Assessment) -> frozenset[str]:
    """What a card stood on: its qualifying conditions, risk categories, confirming resources.
    A card overridden on some evidence stays quiet while the evidence is the same or less."""
    if isinstance(assessment, Suspicion):
        return frozenset(
            {f"pain:{q.pain.source}" for q in assessment.pains}
            | {f"risk:{r.category.value}" for r in (*assessment.risks, *assessment.features)}
        )
    if isinstance(assessment, Confirmation):
        return frozenset({f"finding:{assessment.finding}"})
    if isinstance(assessment, ConfirmFirst):
        return frozenset({f"report:{assessment.report.source}"})
    return frozenset()


def finding_kind(assessment: Assessment) -> str:
    if isinstance(assessment, Suspicion):
        return "suspect"
    if isinstance(assessment, Confirmation):
        return "confirmed"
    if isinstance(assessment, ConfirmFirst):
        return "confirm_first"
    return assessment.reason


def suppressed_by_override(current: frozenset[str], overridden: Iterable[frozenset[str]]) -> bool:
    """True when an overridden card already stood on all of the current evidence."""
    return any(current <= before for before in overridden)
