"""The rule on clinical cases: the brief's worked examples (11.1, 11.2), its near misses (11.3),
and one case per status, window edge and suppression rule. Records go through the same FHIR
mapping as in production (lean decode -> facts -> rule)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.clinical.facts import RiskCategory, Side
from cds_service.clinical.identity import IDENTIFIER_SYSTEM, plan_identifier
from cds_service.clinical.sacral_bsi import Confirmation, ConfirmFirst, NoCard, Suspicion
from cds_service.services.sacral_bsi.content import Content
from tests import cases
from tests.builders import (
    BILATERAL,
    ICD10CM,
    LEFT,
    LOINC,
    SACRUM,
    SNOMED,
    care_plan,
    coding,
    concept,
    condition,
    observation,
    patient,
    report,
    running_activity,
)
from tests.conftest import assess_case, with_parameters

TODAY = date(2025, 9, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def left_lbp(cid: str = "lbp", onset: str | None = None, **kw: Any) -> dict[str, Any]:
    """M54.42 lumbago with sciatica, left side: the code carries the side."""
    return condition(
        cid,
        coding(ICD10CM, "M54.42", "Lumbago with sciatica, left side"),
        onset=onset or days_ago(20),
        **kw,
    )


# ---------------------------------------------------------------------------- worked examples
def test_rule_maya_before_mri_suspects_with_warning_three_risks_and_three_features(
    content: Content,
) -> None:
    """Brief 11.1 as amended by 14.5: the symptoms and the course of the pain are listed apart
    and not counted; the risk factors are the previous stress fracture, amenorrhea, low BMI."""
    result = assess_case(cases.maya_before_mri(), content, cases.MAYA_SUSPECT_DAY, "maya")
    assert isinstance(result, Suspicion)
    assert result.side is Side.LEFT
    assert result.indicator == "warning"
    assert result.si_label
    assert result.triad
    counted = {r.category for r in result.risks} - {RiskCategory.FEMALE_SEX}
    assert counted == {RiskCategory.PRIOR_BSI, RiskCategory.MENSTRUAL, RiskCategory.LOW_BMI}
    assert {r.category for r in result.features} == {
        RiskCategory.SI_NOT_IMPROVING,
        RiskCategory.PAIN_WITH_IMPACT,
        RiskCategory.INSIDIOUS_ONSET,
    }
    assert result.counted_risks == 3
    assert RiskCategory.FEMALE_SEX in {r.category for r in result.risks}
    assert result.runner.rule == "LOINC 73985-4 = LA11836-6"


def test_rule_maya_after_mri_confirms_with_day0_from_report(content: Content) -> None:
    result = assess_case(cases.maya_after_mri(), content, cases.MAYA_CONFIRMED_DAY, "maya")
    assert isinstance(result, Confirmation)
    assert result.path == "condition-and-report"
    assert result.day0 == date(2025, 10, 3)
    assert result.diagnosis is not None
    assert result.diagnosis.source == "Condition/sacral-bsi-1"
    assert result.grade_text == "Fredericson grade 4"
    assert result.referral  # fracture line
    assert result.side is Side.LEFT
    assert result.plan_identifier == plan_identifier("maya", "Condition/sacral-bsi-1")


def test_rule_daniel_running_nose_and_bilateral_pain_no_card(content: Content) -> None:
    result = assess_case(cases.daniel(), content, TODAY, "daniel")
    assert result == NoCard("not_a_runner")


def test_rule_daniel_as_a_runner_still_no_card_because_bilateral(content: Content) -> None:
    record = [*cases.daniel(), running_activity("run", days_ago(30), patient_id="daniel")]
    assert assess_case(record, content, TODAY, "daniel") == NoCard("pain_bilateral")


# ---------------------------------------------------------------------------- near misses (11.3)
def test_rule_resolved_long_ago_outside_window_no_card(content: Content) -> None:
    pain = left_lbp(onset="2023-04-01", clinical="resolved", abatement="2023-06-01")
    assert isinstance(assess_case(cases.runner_with(pain), content, TODAY), NoCard)


def test_rule_entered_in_error_pain_no_card(content: Content) -> None:
    pain = condition(
        "lbp", coding(ICD10CM, "M54.41"), onset=days_ago(10), verification="entered-in-error"
    )
    assert assess_case(cases.runner_with(pain), content, TODAY) == NoCard("no_qualifying_pain")


def test_rule_refuted_pain_no_card(content: Content) -> None:
    pain = left_lbp(verification="refuted")
    assert assess_case(cases.runner_with(pain), content, TODAY) == NoCard("no_qualifying_pain")


def _unsided_lbp_with_two_risks() -> list[dict[str, object]]:
    return [
        *cases.runner_with(condition("lbp", coding(ICD10CM, "M54.50"), onset=days_ago(15))),
        condition(
            "vitd",
            coding(ICD10CM, "E55.9", "Vitamin D deficiency, unspecified"),
            onset=days_ago(40),
        ),
        condition("osteopenia", coding(SNOMED, "312894000", "Osteopenia"), onset="2022-01-01"),
    ]


def test_rule_unsided_pain_ignored_by_default(content: Content) -> None:
    assert assess_case(_unsided_lbp_with_two_risks(), content, TODAY) == NoCard("side_not_recorded")


def test_rule_unsided_pain_fires_with_risk_policy(content: Content) -> None:
    params = with_parameters(content, suspicion={"unknown_laterality_policy": "with_risk"})
    result = assess_case(_unsided_lbp_with_two_risks(), content, TODAY, params=params)
    assert isinstance(result, Suspicion)
    assert result.side is Side.UNKNOWN
    assert result.counted_risks == 2


def test_rule_unsided_pain_with_one_risk_stays_quiet_under_with_risk(content: Content) -> None:
    params = with_parameters(content, suspicion={"unknown_laterality_policy": "with_risk"})
    record = _unsided_lbp_with_two_risks()[:-1]
    assert assess_case(record, content, TODAY, params=params) == NoCard("side_not_recorded")


def _right_lbp() -> dict[str, object]:
    return condition(
        "lbp", coding(ICD10CM, "M54.41", "Lumbago with sciatica, right side"), onset=days_ago(30)
    )


def test_rule_final_sacral_mri_after_onset_suppresses(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4", "MR Pelvis"),
        effective=days_ago(16),
        conclusion="No marrow edema or fracture.",
    )
    assert assess_case([*cases.runner_with(_right_lbp()), mri], content, TODAY) == NoCard(
        "mri_after_pain_onset"
    )


def test_rule_lumbar_only_mri_silent_on_sacrum_does_not_suppress(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24968-0", "MR Lumbar spine"),
        effective=days_ago(16),
        conclusion="Mild L4-L5 disc bulge. No stenosis.",
    )
    assert isinstance(
        assess_case([*cases.runner_with(_right_lbp()), mri], content, TODAY), Suspicion
    )


def test_rule_lumbar_mri_mentioning_sacrum_suppresses(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24968-0", "MR Lumbar spine"),
        effective=days_ago(16),
        conclusion="Normal lumbar spine. The visualised sacrum is normal.",
    )
    assert assess_case([*cases.runner_with(_right_lbp()), mri], content, TODAY) == NoCard(
        "mri_after_pain_onset"
    )


def test_rule_mri_before_pain_onset_does_not_suppress(content: Content) -> None:
    mri = report("mri", coding(LOINC, "24867-4"), effective=days_ago(200), conclusion="Normal.")
    assert isinstance(
        assess_case([*cases.runner_with(_right_lbp()), mri], content, TODAY), Suspicion
    )


def test_rule_preliminary_report_of_fracture_neither_confirms_nor_suppresses(
    content: Content,
) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        status="preliminary",
        effective=days_ago(5),
        conclusion="Right sacral stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    result = assess_case([*cases.runner_with(_right_lbp()), mri], content, TODAY)
    assert isinstance(result, Suspicion)


def test_rule_imaging_study_without_report_is_not_confirmation(content: Content) -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "is1",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
    }
    result = assess_case([*cases.runner_with(_right_lbp()), study], content, TODAY)
    assert isinstance(result, Suspicion)


def test_rule_indication_is_not_a_finding(content: Content) -> None:
    mri = report(
        "mri",
        coding(SNOMED, "113091000", "MRI"),
        text="MRI sacrum",
        effective=days_ago(200),
        conclusion="Clinical indication: r/o sacral stress fracture. Impression: normal.",
    )
    result = assess_case([*cases.runner_with(_right_lbp()), mri], content, TODAY)
    assert isinstance(result, Suspicion)


def test_rule_pelvic_stress_fracture_at_pubic_ramus_is_not_sacral(content: Content) -> None:
    fx = condition(
        "fx",
        coding(SNOMED, "430907000", "Stress fracture of pelvis"),
        recorded=days_ago(10),
        body_sites=[
            concept(coding(SNOMED, "56416004", "Pubic ramus"), text="left inferior pubic ramus")
        ],
    )
    result = assess_case(cases.runner_with(fx), content, TODAY)
    assert not isinstance(result, Confirmation)


def test_rule_insufficiency_fracture_has_no_runner_pathway(content: Content) -> None:
    record = [
        patient("p1", "female", "1947-01-01"),
        running_activity("run", days_ago(60)),
        _right_lbp(),
        condition("ifx", coding(ICD10CM, "M80.08XA"), recorded=days_ago(3)),
    ]
    assert assess_case(record, content, TODAY) == NoCard("insufficiency_fracture")


def test_rule_confirmed_with_active_plan_addressing_it_stays_quiet(content: Content) -> None:
    record = [
        *cases.maya_after_mri(),
        care_plan("cp", "active", ["Condition/sacral-bsi-1"], patient_id="maya"),
    ]
    assert assess_case(record, content, cases.MAYA_CONFIRMED_DAY, "maya") == NoCard(
        "care_plan_in_chart"
    )


def test_rule_confirmed_with_draft_plan_addressing_it_by_absolute_reference_stays_quiet(
    content: Content,
) -> None:
    ref = "https://ehr.example/fhir/Condition/sacral-bsi-1"
    record = [*cases.maya_after_mri(), care_plan("cp", "draft", [ref], patient_id="maya")]
    assert assess_case(record, content, cases.MAYA_CONFIRMED_DAY, "maya") == NoCard(
        "care_plan_in_chart"
    )


def test_rule_confirmed_with_our_identifier_on_a_plan_stays_quiet(content: Content) -> None:
    ident = (IDENTIFIER_SYSTEM, plan_identifier("maya", "Condition/sacral-bsi-1"))
    record = [
        *cases.maya_after_mri(),
        care_plan("cp", "revoked", identifier=ident, patient_id="maya"),
    ]
    assert assess_case(record, content, cases.MAYA_CONFIRMED_DAY, "maya") == NoCard(
        "care_plan_in_chart"
    )


def test_rule_confirmed_with_plan_instantiating_protocol_stays_quiet(content: Content) -> None:
    record = [
        *cases.maya_after_mri(),
        care_plan("cp", "active", instantiates_uri=content.protocol.uri, patient_id="maya"),
    ]
    assert assess_case(record, content, cases.MAYA_CONFIRMED_DAY, "maya") == NoCard(
        "care_plan_in_chart"
    )


def test_rule_confirmed_with_only_a_revoked_or_other_plan_offers_the_plan(content: Content) -> None:
    record = [
        *cases.maya_after_mri(),
        care_plan("old", "revoked", ["Condition/sacral-bsi-1"], patient_id="maya"),
        care_plan("other", "active", ["Condition/amen-1"], patient_id="maya"),
    ]
    assert isinstance(assess_case(record, content, cases.MAYA_CONFIRMED_DAY, "maya"), Confirmation)


def test_rule_wrong_subject_runner_note_is_not_a_runner(content: Content) -> None:
    record = [
        patient("p1", "female", "2000-01-01"),
        observation(
            "sh", "11341-5", value_string="Dad is a marathon runner.", effective=days_ago(30)
        ),
        condition(
            "si",
            coding(SNOMED, "202487003", "Sacroiliac joint pain"),
            onset=days_ago(20),
            body_sites=[concept(coding(SNOMED, LEFT, "Left"))],
        ),
    ]
    assert assess_case(record, content, TODAY) == NoCard("not_a_runner")


# ---------------------------------------------------------------------------- gates and edges
def test_rule_lookback_edge_365_days_fires_366_does_not(content: Content) -> None:
    inside = cases.runner_with(left_lbp(onset=days_ago(365)), runner_date=days_ago(10))
    outside = cases.runner_with(left_lbp(onset=days_ago(366)), runner_date=days_ago(10))
    assert isinstance(assess_case(inside, content, TODAY), Suspicion)
    assert assess_case(outside, content, TODAY) == NoCard("no_qualifying_pain")


def test_rule_lookback_is_a_parameter(content: Content) -> None:
    params = with_parameters(content, suspicion={"lbp_lookback_days": 90})
    record = cases.runner_with(left_lbp(onset=days_ago(120)))
    assert assess_case(record, content, TODAY, params=params) == NoCard("no_qualifying_pain")


def test_rule_no_onset_falls_back_to_recorded_date(content: Content) -> None:
    pain = condition("lbp", coding(ICD10CM, "M54.42"), recorded=days_ago(10))
    assert isinstance(assess_case(cases.runner_with(pain), content, TODAY), Suspicion)
    old = condition("lbp", coding(ICD10CM, "M54.42"), recorded=days_ago(400))
    assert isinstance(assess_case(cases.runner_with(old), content, TODAY), NoCard)


def test_rule_onset_period_start_counts_as_onset(content: Content) -> None:
    pain = condition("lbp", coding(ICD10CM, "M54.42"), onset_period_start=days_ago(10))
    assert isinstance(assess_case(cases.runner_with(pain), content, TODAY), Suspicion)


def test_rule_undated_pain_is_skipped(content: Content) -> None:
    pain = condition("lbp", coding(ICD10CM, "M54.42"))
    assert assess_case(cases.runner_with(pain), content, TODAY) == NoCard("no_qualifying_pain")


@pytest.mark.parametrize(
    ("clinical", "abated_days_ago", "fires"),
    [
        ("active", None, True),
        ("recurrence", None, True),
        ("relapse", None, True),
        (None, None, True),  # encounter diagnosis without clinicalStatus
        ("resolved", 1, False),
        ("resolved", 30, False),
        ("inactive", 0, False),
        ("remission", 10, False),
        ("resolved", None, False),
    ],
)
def test_rule_clinical_status_resolved_or_inactive_never_fires_by_default(
    content: Content, clinical: str | None, abated_days_ago: int | None, fires: bool
) -> None:
    pain = left_lbp(
        onset=days_ago(150),
        clinical=clinical,
        abatement=days_ago(abated_days_ago) if abated_days_ago is not None else None,
    )
    result = assess_case(cases.runner_with(pain), content, TODAY)
    assert isinstance(result, Suspicion) is fires


@pytest.mark.parametrize(
    ("clinical", "abated_days_ago", "fires"),
    [
        ("resolved", 89, True),
        ("resolved", 91, False),
        ("inactive", 30, True),
        ("remission", 120, False),
        ("resolved", None, False),
    ],
)
def test_rule_recent_resolution_is_a_parameter(
    content: Content, clinical: str, abated_days_ago: int | None, fires: bool
) -> None:
    """The brief's proposal (90 days), for when clinicians sign it off."""
    params = with_parameters(content, suspicion={"recent_resolution_days": 90})
    pain = left_lbp(
        onset=days_ago(150),
        clinical=clinical,
        abatement=days_ago(abated_days_ago) if abated_days_ago is not None else None,
    )
    assert (
        isinstance(assess_case(cases.runner_with(pain), content, TODAY, params=params), Suspicion)
        is fires
    )


@pytest.mark.parametrize(
    "verification", ["unconfirmed", "provisional", "differential", "confirmed", None]
)
def test_rule_verification_statuses_that_count(content: Content, verification: str | None) -> None:
    assert isinstance(
        assess_case(cases.runner_with(left_lbp(verification=verification)), content, TODAY),
        Suspicion,
    )


def test_rule_non_runner_no_card(content: Content) -> None:
    record = [patient("p1", "male", "1990-01-01"), left_lbp()]
    assert assess_case(record, content, TODAY) == NoCard("not_a_runner")


def test_rule_runner_with_neck_pain_only_no_card(content: Content) -> None:
    neck = condition(
        "neck",
        coding(ICD10CM, "M54.2", "Cervicalgia"),
        onset=days_ago(10),
        body_sites=[concept(coding(SNOMED, LEFT))],
    )
    assert assess_case(cases.runner_with(neck), content, TODAY) == NoCard("no_qualifying_pain")


def test_rule_runner_with_hip_pain_only_no_card(content: Content) -> None:
    hip = condition("hip", coding(ICD10CM, "M25.552", "Pain in left hip"), onset=days_ago(10))
    assert assess_case(cases.runner_with(hip), content, TODAY) == NoCard("no_qualifying_pain")


def test_rule_left_and_right_pains_combine_to_bilateral(content: Content) -> None:
    record = cases.runner_with(left_lbp("l"), _right_lbp())
    assert assess_case(record, content, TODAY) == NoCard("pain_bilateral")


def test_rule_central_pain_no_card(content: Content) -> None:
    pain = condition(
        "lbp",
        coding(SNOMED, "279039007", "Low back pain"),
        text="central low back pain",
        onset=days_ago(10),
    )
    assert assess_case(cases.runner_with(pain), content, TODAY) == NoCard("pain_central")


def test_rule_sided_and_unsided_pains_keep_the_side(content: Content) -> None:
    record = cases.runner_with(
        left_lbp("l"), condition("u", coding(ICD10CM, "M54.50"), onset=days_ago(5))
    )
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.side is Side.LEFT


def test_rule_sciatica_codes_follow_the_parameter(content: Content) -> None:
    record = cases.runner_with(
        condition("s", coding(ICD10CM, "M54.32", "Sciatica, left side"), onset=days_ago(10))
    )
    assert isinstance(assess_case(record, content, TODAY), Suspicion)
    params = with_parameters(content, suspicion={"include_sciatica_codes": False})
    assert assess_case(record, content, TODAY, params=params) == NoCard("no_qualifying_pain")


def test_rule_runner_evidence_outside_lookback_is_not_a_runner(content: Content) -> None:
    record = cases.runner_with(left_lbp(), runner_date=days_ago(731))
    assert assess_case(record, content, TODAY) == NoCard("not_a_runner")


def test_rule_newer_stopped_running_note_wins(content: Content) -> None:
    record = [
        *cases.runner_with(left_lbp(), runner_date=days_ago(200)),
        observation(
            "sh", "11341-5", value_string="Stopped running last year.", effective=days_ago(20)
        ),
    ]
    assert assess_case(record, content, TODAY) == NoCard("not_a_runner")


def test_rule_older_stopped_running_note_loses_to_newer_running(content: Content) -> None:
    record = [
        *cases.runner_with(left_lbp(), runner_date=days_ago(20)),
        observation("sh", "11341-5", value_string="Former runner.", effective=days_ago(600)),
    ]
    assert isinstance(assess_case(record, content, TODAY), Suspicion)


def test_rule_y93_02_activity_code_makes_a_runner(content: Content) -> None:
    record = [
        patient("p1", "male", "1990-01-01"),
        left_lbp(),
        condition(
            "y93",
            coding(ICD10CM, "Y93.02", "Activity, running"),
            recorded=days_ago(20),
            category="encounter-diagnosis",
        ),
    ]
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.runner.rule == "ICD-10-CM Y93.02"


def test_rule_jogging_answer_makes_a_runner(content: Content) -> None:
    record = [
        patient("p1", "male", "1990-01-01"),
        left_lbp(),
        running_activity("j", days_ago(30), answer="LA11835-8"),
    ]
    assert isinstance(assess_case(record, content, TODAY), Suspicion)


def test_rule_bicycling_answer_is_not_a_runner(content: Content) -> None:
    record = [
        patient("p1", "male", "1990-01-01"),
        left_lbp(),
        running_activity("b", days_ago(30), answer="LA11837-4"),
    ]
    assert assess_case(record, content, TODAY) == NoCard("not_a_runner")


def test_rule_exercise_amount_alone_is_not_a_runner(content: Content) -> None:
    record = [
        patient("p1", "male", "1990-01-01"),
        left_lbp(),
        observation("evs", "82290-8", value=300, unit="min/wk", effective=days_ago(10)),
    ]
    assert assess_case(record, content, TODAY) == NoCard("not_a_runner")


def test_rule_free_text_runner_in_a_note_makes_a_runner(content: Content) -> None:
    record = [
        patient("p1", "male", "1990-01-01"),
        left_lbp(notes=["Marathon runner, 50 miles per week, pain since long run"]),
    ]
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.runner.rule.startswith("text:")


def test_rule_exercise_activity_value_string_running_makes_a_runner(content: Content) -> None:
    obs = observation("ea", "73985-4", value_string="running", effective=days_ago(40))
    record = [patient("p1", "male", "1990-01-01"), left_lbp(), obs]
    assert isinstance(assess_case(record, content, TODAY), Suspicion)


# ---------------------------------------------------------------------------- confirmation paths
def test_rule_confirmed_condition_without_report_is_path_2_dated_by_recorded_date(
    content: Content,
) -> None:
    dx = condition("bsi", coding(ICD10CM, "M48.48XA"), onset=days_ago(60), recorded=days_ago(7))
    result = assess_case(cases.runner_with(dx), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.path == "condition"
    assert result.day0 == TODAY - timedelta(days=7)
    assert result.day0_source == "condition-recorded"


def test_rule_report_within_30_days_links_to_condition(content: Content) -> None:
    dx = condition("bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(7))
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(30),
        conclusion="Sacral stress reaction.",
    )
    result = assess_case(cases.runner_with(dx, mri), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.path == "condition-and-report"
    assert result.day0 == TODAY - timedelta(days=30)


@pytest.mark.parametrize(
    "codes",
    [
        [coding(ICD10CM, "M48.48XA")],
        [coding(ICD10CM, "M4848XA")],  # no dot
        [coding("urn:oid:2.16.840.1.113883.6.90", "M48.48XD")],  # OID system, later encounter
    ],
)
def test_rule_sacral_fatigue_fracture_codes_confirm_by_themselves(
    content: Content, codes: list[dict[str, str]]
) -> None:
    dx = condition("bsi", *codes, recorded=days_ago(3))
    assert isinstance(assess_case(cases.runner_with(dx), content, TODAY), Confirmation)


@pytest.mark.parametrize(
    ("codes", "sites", "text", "confirmed"),
    [
        (
            [coding(SNOMED, "240197007", "Stress fracture")],
            [concept(coding(SNOMED, SACRUM, "Sacrum"))],
            None,
            True,
        ),
        ([coding(SNOMED, "240197007")], [], None, False),
        ([coding(SNOMED, "240197007")], [], "Stress fracture of the left sacral ala", True),
        ([coding(SNOMED, "430907000")], [concept(text="Sacrum, left")], None, True),
        ([coding(ICD10CM, "M84.350A")], [concept(coding(SNOMED, SACRUM))], None, True),
        ([coding(ICD10CM, "M84.350A")], [], None, False),
        ([coding(ICD10CM, "M84.38XA")], [concept(coding(SNOMED, SACRUM))], None, True),
        ([coding(SNOMED, "240197007:363698007=54735007")], [], None, True),
        (
            [coding(SNOMED, "240197007")],
            [concept(coding(SNOMED, "39723000", "SI joint"))],
            None,
            False,
        ),
    ],
)
def test_rule_non_specific_stress_fracture_codes_need_sacral_site(
    content: Content,
    codes: list[dict[str, str]],
    sites: list[dict[str, object]],
    text: str | None,
    confirmed: bool,
) -> None:
    dx = condition("bsi", *codes, text=text, recorded=days_ago(3), body_sites=sites)
    result = assess_case(cases.runner_with(dx), content, TODAY)
    assert isinstance(result, Confirmation) is confirmed


@pytest.mark.parametrize("verification", ["provisional", "unconfirmed", "differential"])
def test_rule_unconfirmed_sacral_diagnosis_is_not_confirmation(
    content: Content, verification: str
) -> None:
    dx = condition(
        "bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(3), verification=verification
    )
    result = assess_case(cases.runner_with(left_lbp(), dx), content, TODAY)
    assert isinstance(result, Suspicion)


def test_rule_coded_report_conclusion_confirms_path_2b(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(4),
        conclusion="Right sacral stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    result = assess_case(cases.runner_with(_right_lbp(), mri), content, TODAY)
    assert isinstance(result, Confirmation)
    assert result.path == "report"
    assert result.diagnosis is None
    assert result.day0 == TODAY - timedelta(days=4)
    assert result.side is Side.RIGHT


def test_rule_coded_conclusion_without_sacral_site_is_not_confirmation(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(4),
        conclusion="Stress fracture of the left inferior pubic ramus.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    result = assess_case(cases.runner_with(mri), content, TODAY)
    assert not isinstance(result, Confirmation)


def test_rule_positive_report_text_only_asks_to_confirm_first(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(4),
        conclusion="Impression: left sacral stress fracture with marrow edema.",
    )
    result = assess_case(cases.runner_with(left_lbp(), mri), content, TODAY)
    assert isinstance(result, ConfirmFirst)
    assert result.report.source == "DiagnosticReport/mri"


def test_rule_equivocal_report_leaves_card_a_as_if_no_mri_had_been_read(
    content: Content,
) -> None:
    """14.1: an uncertain MRI neither asks to confirm (B') nor suppresses card A; card A says
    what the MRI read."""
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(4),
        conclusion="Possible early sacral stress reaction; cannot exclude.",
    )
    result = assess_case(cases.runner_with(left_lbp(), mri), content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.mri_equivocal is not None
    assert result.mri_equivocal.quote == "Possible early sacral stress reaction"
    assert result.mri_under_way is None


def test_rule_no_suspect_card_once_confirmed(content: Content) -> None:
    dx = condition("bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(3))
    assert isinstance(assess_case(cases.runner_with(left_lbp(), dx), content, TODAY), Confirmation)


# ---------------------------------------------------------------------------- indicator
def test_rule_female_sex_alone_keeps_info(content: Content) -> None:
    record = [
        patient("p1", "female", "1995-01-01"),
        running_activity("r", days_ago(30)),
        left_lbp(),
    ]
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.indicator == "info"
    assert result.counted_risks == 0
    assert [r.category for r in result.risks] == [RiskCategory.FEMALE_SEX]


def test_rule_one_risk_factor_gives_warning(content: Content) -> None:
    record = cases.runner_with(
        left_lbp(),
        condition("an", coding(SNOMED, "56882008", "Anorexia nervosa"), onset="2015-01-01"),
    )
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.indicator == "warning"


def test_rule_warning_threshold_is_content(content: Content) -> None:
    record = cases.runner_with(
        left_lbp(), condition("an", coding(SNOMED, "56882008"), onset="2015-01-01")
    )
    params = with_parameters(content, indicator={"warning_min_risk_factors": 2})
    result = assess_case(record, content, TODAY, params=params)
    assert isinstance(result, Suspicion)
    assert result.indicator == "info"


def test_rule_bilateral_body_site_on_si_label_no_card(content: Content) -> None:
    pain = condition(
        "si",
        coding(SNOMED, "202487003"),
        onset=days_ago(10),
        body_sites=[concept(coding(SNOMED, "39723000")), concept(coding(SNOMED, BILATERAL))],
    )
    assert assess_case(cases.runner_with(pain), content, TODAY) == NoCard("pain_bilateral")
