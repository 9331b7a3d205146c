"""One injury or two (brief 14.2), and diagnoses too old for a plan (14.3).

A sacral BSI Condition that is closed, or whose Day 0 lies more than 182 days before a newer MRI,
is an earlier episode: it blocks nothing and is listed as a prior sacral BSI. A plan whose Day 0
is more than 182 days ago is not proposed; from 56 days the card says how many weeks ago.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from cds_service.clinical.facts import Side
from cds_service.clinical.identity import IDENTIFIER_SYSTEM, plan_identifier
from cds_service.clinical.sacral_bsi import Confirmation, ConfirmFirst, NoCard, Suspicion
from cds_service.services.sacral_bsi.content import Content
from tests import cases
from tests.builders import (
    ICD10CM,
    LEFT,
    LOINC,
    RIGHT,
    SACRUM,
    SNOMED,
    care_plan,
    coding,
    concept,
    condition,
    report,
)
from tests.conftest import assess_case

TODAY = date(2026, 11, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def old_right_bsi(
    *, clinical: str = "resolved", recorded_days_ago: int = 3 * 365
) -> dict[str, Any]:
    return condition(
        "old",
        coding(ICD10CM, "M48.48XA"),
        clinical=clinical,
        recorded=days_ago(recorded_days_ago),
        abatement=days_ago(recorded_days_ago - 90) if clinical == "resolved" else None,
        body_sites=[concept(coding(SNOMED, SACRUM)), concept(coding(SNOMED, RIGHT))],
    )


def new_left_mri(days: int = 5, *, coded: bool = True) -> dict[str, Any]:
    return report(
        "mri-new",
        coding(LOINC, "24867-4"),
        effective=days_ago(days),
        conclusion="Left sacral ala stress fracture with a vertical fracture line.",
        conclusion_codes=[coding(SNOMED, "240197007")] if coded else (),
    )


# ---------------------------------------------------------------------------- 14.2
def test_episode_new_coded_mri_after_a_healed_injury_gets_a_plan(content: Content) -> None:
    """The issue's case: nothing at all before; now card B for the new episode."""
    result = assess_case(cases.runner_with(old_right_bsi(), new_left_mri()), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.path == "report"
    assert result.report is not None
    assert result.report.source == "DiagnosticReport/mri-new"
    assert result.day0 == TODAY - timedelta(days=5)
    assert result.side is Side.LEFT
    assert [d.source for d in result.prior] == ["Condition/old"]
    assert result.proposes_condition


def test_episode_old_injury_never_closed_does_not_block_or_take_over(content: Content) -> None:
    """Still "active" on the problem list three years on: an earlier episode, not this one."""
    old = old_right_bsi(clinical="active")
    result = assess_case(cases.runner_with(old, new_left_mri()), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.report is not None
    assert result.report.source == "DiagnosticReport/mri-new"
    assert [d.source for d in result.prior] == ["Condition/old"]


def test_episode_confirmed_condition_of_the_new_episode_addresses_the_new_one(
    content: Content,
) -> None:
    new = condition(
        "new",
        coding(ICD10CM, "M48.48XA"),
        recorded=days_ago(4),
        evidence=["DiagnosticReport/mri-new"],
        body_sites=[concept(coding(SNOMED, SACRUM)), concept(coding(SNOMED, LEFT))],
    )
    result = assess_case(cases.runner_with(old_right_bsi(), new_left_mri(), new), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.diagnosis is not None
    assert result.diagnosis.source == "Condition/new"
    assert result.day0 == TODAY - timedelta(days=5)  # the MRI, linked by evidence
    assert [d.source for d in result.prior] == ["Condition/old"]


def test_episode_plan_for_the_old_injury_does_not_count_for_the_new_one(content: Content) -> None:
    old_plan = care_plan(
        "cp-old",
        status="active",
        addresses=["Condition/old"],
        identifier=(IDENTIFIER_SYSTEM, plan_identifier("p1", "Condition/old")),
    )
    result = assess_case(
        cases.runner_with(old_right_bsi(clinical="active"), new_left_mri(), old_plan),
        content,
        TODAY,
    )
    assert isinstance(result, Confirmation)


def test_episode_plan_for_the_new_injury_still_counts(content: Content) -> None:
    ours = care_plan(
        "cp-new",
        status="draft",
        identifier=(IDENTIFIER_SYSTEM, plan_identifier("p1", "DiagnosticReport/mri-new")),
    )
    result = assess_case(cases.runner_with(old_right_bsi(), new_left_mri(), ours), content, TODAY)
    assert result == NoCard("care_plan_in_chart")


def test_episode_condition_of_the_same_episode_still_blocks_the_report_path(
    content: Content,
) -> None:
    """A provisional Condition recorded after the MRI: the clinician is judging this injury."""
    provisional = condition(
        "prov", coding(ICD10CM, "M48.48XA"), verification="provisional", recorded=days_ago(3)
    )
    result = assess_case(cases.runner_with(provisional, new_left_mri()), content, TODAY)
    assert not isinstance(result, (Confirmation, ConfirmFirst))


def test_episode_resolved_condition_of_the_same_mri_still_blocks(content: Content) -> None:
    """Closed, but it recorded this very MRI: the episode is over, not a new one."""
    healed = condition(
        "healed",
        coding(ICD10CM, "M48.48XA"),
        clinical="resolved",
        recorded=days_ago(100),
        evidence=["DiagnosticReport/mri-new"],
    )
    result = assess_case(cases.runner_with(healed, new_left_mri(110)), content, TODAY)
    assert not isinstance(result, (Confirmation, ConfirmFirst))


def test_episode_open_condition_within_six_months_is_the_same_injury(content: Content) -> None:
    """An active Condition recorded 100 days before the MRI: one episode (a follow-up scan, or a
    recurrence the clinician has not recorded separately): no plan from the report."""
    recent = condition("recent", coding(ICD10CM, "M48.48XA"), recorded=days_ago(105))
    result = assess_case(cases.runner_with(recent, new_left_mri()), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.diagnosis is not None
    assert result.diagnosis.source == "Condition/recent"
    assert result.path == "condition"  # the MRI is 100 days from it: not its confirming one
    assert result.day0 == TODAY - timedelta(days=105)


def test_episode_new_report_text_after_an_old_injury_asks_to_confirm(content: Content) -> None:
    result = assess_case(
        cases.runner_with(old_right_bsi(), new_left_mri(coded=False)), content, TODAY
    )
    assert isinstance(result, ConfirmFirst)
    assert result.report.quote == "Left sacral ala stress fracture with a vertical fracture line."


# ---------------------------------------------------------------------------- 14.3
def bsi_recorded(days: int) -> dict[str, Any]:
    return condition(
        "bsi",
        coding(ICD10CM, "M48.48XA"),
        recorded=days_ago(days),
        body_sites=[concept(coding(SNOMED, SACRUM)), concept(coding(SNOMED, LEFT))],
    )


def test_stale_diagnosis_seven_months_ago_gets_no_plan(content: Content) -> None:
    result = assess_case(cases.runner_with(bsi_recorded(213)), content, TODAY)
    assert result == NoCard("diagnosis_too_old_for_a_plan")


def test_stale_boundary_182_days_still_plans_183_does_not(content: Content) -> None:
    at_182 = assess_case(cases.runner_with(bsi_recorded(182)), content, TODAY)
    at_183 = assess_case(cases.runner_with(bsi_recorded(183)), content, TODAY)
    assert isinstance(at_182, Confirmation)
    assert at_182.days_since_day0 == 182
    assert isinstance(at_183, NoCard)


def test_stale_diagnosis_does_not_hide_a_new_one_sided_pain(content: Content) -> None:
    """Seven months after a sacral BSI, a new left low back pain: card A, the old injury a
    previous BSI."""
    pain = condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(10))
    result = assess_case(
        cases.runner_with(bsi_recorded(213), pain, runner_date=days_ago(30)), content, TODAY
    )
    assert isinstance(result, Suspicion)
    assert "prior_bsi" in {r.category.value for r in result.risks}


def test_stale_day0_is_the_mri_not_the_recorded_date(content: Content) -> None:
    """Recorded recently, but its MRI is 200 days old: Day 0 is the MRI, so it is stale."""
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(200),
        conclusion="Left sacral stress fracture.",
    )
    dx = condition(
        "bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(20), evidence=["DiagnosticReport/mri"]
    )
    assert isinstance(assess_case(cases.runner_with(mri, dx), content, TODAY), NoCard)


def test_stale_positive_mri_before_a_new_pain_is_a_previous_bsi(content: Content) -> None:
    """An MRI that showed a sacral stress fracture three years ago, and nothing since: too old
    for a plan (14.3); a new one-sided pain now gets card A, the old injury a risk factor."""
    old = report(
        "mri-old",
        coding(LOINC, "24867-4"),
        effective=days_ago(3 * 365),
        conclusion="Right sacral ala stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    pain = condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(15))
    result = assess_case(cases.runner_with(old, pain, runner_date=days_ago(30)), content, TODAY)
    assert isinstance(result, Suspicion)
    (prior,) = [r for r in result.risks if r.category.value == "prior_bsi"]
    assert prior.source == "DiagnosticReport/mri-old"
    assert prior.phrase == "Right sacral ala stress fracture."


# ---------------------------------------------------------------------------- 14.2: a new pain
def june_mri(days: int, *, coded: bool = True) -> dict[str, Any]:
    return report(
        "mri-june",
        coding(LOINC, "24867-4"),
        effective=days_ago(days),
        conclusion="Left sacral ala stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")] if coded else (),
    )


def left_pain(onset_days_ago: int) -> dict[str, Any]:
    return condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(onset_days_ago))


def test_new_pain_months_after_a_coded_mri_is_a_new_episode(content: Content) -> None:
    """A sacral BSI coded on an MRI 170 days ago, a left low back pain that began 18 days ago:
    not a plan for the old injury ("diagnosed 24 weeks ago") but card A for the new pain, the
    old MRI a previous BSI."""
    result = assess_case(
        cases.runner_with(june_mri(170), left_pain(18), runner_date=days_ago(30)), content, TODAY
    )
    assert isinstance(result, Suspicion)
    (prior,) = [r for r in result.risks if r.category.value == "prior_bsi"]
    assert prior.source == "DiagnosticReport/mri-june"


def test_new_pain_months_after_a_confirmed_condition_is_a_new_episode(content: Content) -> None:
    dx = bsi_recorded(120)
    result = assess_case(
        cases.runner_with(dx, left_pain(20), runner_date=days_ago(30)), content, TODAY
    )
    assert isinstance(result, Suspicion)
    assert "prior_bsi" in {r.category.value for r in result.risks}


def test_new_pain_months_after_an_uncoded_positive_mri_does_not_ask_to_confirm_it(
    content: Content,
) -> None:
    result = assess_case(
        cases.runner_with(june_mri(150, coded=False), left_pain(18), runner_date=days_ago(30)),
        content,
        TODAY,
    )
    assert isinstance(result, Suspicion)


def test_pain_recorded_soon_after_the_mri_is_the_same_episode(content: Content) -> None:
    """Near miss: a pain Condition dated 56 days after the MRI (a follow-up entry, or pain the
    clinician recorded late) is still this injury: card B. From 57 days, a new episode."""
    at_56 = assess_case(
        cases.runner_with(june_mri(80), left_pain(80 - 56), runner_date=days_ago(30)),
        content,
        TODAY,
    )
    at_57 = assess_case(
        cases.runner_with(june_mri(80), left_pain(80 - 57), runner_date=days_ago(30)),
        content,
        TODAY,
    )
    assert isinstance(at_56, Confirmation)
    assert at_56.report is not None
    assert at_56.report.source == "DiagnosticReport/mri-june"
    assert isinstance(at_57, Suspicion)


def test_pain_that_began_before_the_mri_keeps_the_plan(content: Content) -> None:
    """The usual story: pain for weeks, then the MRI: card B, whatever the pain's age."""
    result = assess_case(
        cases.runner_with(june_mri(100), left_pain(140), runner_date=days_ago(150)),
        content,
        TODAY,
    )
    assert isinstance(result, Confirmation)


def test_new_pain_after_an_old_injury_on_both_sides_stays_quiet(content: Content) -> None:
    """New pain on both sides months after the injury: no plan for the old one, and card A's own
    rule (one-sided pain) keeps it quiet."""
    both = condition(
        "lbp", coding(ICD10CM, "M54.50"), onset=days_ago(18), text="Low back pain, both sides"
    )
    result = assess_case(
        cases.runner_with(june_mri(170), left_pain(18), both, runner_date=days_ago(30)),
        content,
        TODAY,
    )
    assert not isinstance(result, (Confirmation, ConfirmFirst))
