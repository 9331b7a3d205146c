"""Cases from the clinical review of the first version: each was wrong once, and is pinned here."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.clinical import text_rules
from cds_service.clinical.facts import Grade, Polarity, ReportReading, Side
from cds_service.clinical.report_text import read_impression
from cds_service.clinical.sacral_bsi import Confirmation, ConfirmFirst, NoCard, Suspicion
from cds_service.services.sacral_bsi.content import Content
from tests import cases
from tests.builders import (
    ICD10CM,
    LOINC,
    SNOMED,
    care_plan,
    coding,
    concept,
    condition,
    observation,
    report,
)
from tests.conftest import assess_case, facts_of

DAY = date(2025, 10, 10)


def days_ago(n: int) -> str:
    return (DAY - timedelta(days=n)).isoformat()


# ---------------------------------------------------------------------------- sacral site negated
@pytest.mark.parametrize(
    "resources",
    [
        [
            report(
                "mri",
                coding(LOINC, "24867-4"),
                effective=days_ago(7),
                conclusion="Right inferior pubic ramus stress fracture. Sacrum and SI joints are normal.",
                conclusion_codes=[coding(SNOMED, "240197007")],
            )
        ],
        [
            condition(
                "pfx",
                coding(SNOMED, "430907000"),
                recorded=days_ago(7),
                body_sites=[concept(text="Pubic ramus")],
                evidence=["DiagnosticReport/mri"],
            ),
            report(
                "mri",
                coding(LOINC, "24867-4"),
                effective=days_ago(7),
                conclusion="Right inferior pubic ramus stress fracture. Sacrum intact.",
            ),
        ],
        [
            condition(
                "pfx",
                coding(ICD10CM, "M84.350A"),
                recorded=days_ago(7),
                notes=["Pubic ramus stress fracture on MRI; no sacral involvement."],
            )
        ],
    ],
)
def test_regression_negated_sacrum_is_not_sacral_site_evidence(
    content: Content, resources: list[dict[str, Any]]
) -> None:
    assert not isinstance(assess_case(cases.runner_with(*resources), content, DAY), Confirmation)


# ---------------------------------------------------------------------------- healed injury
def _healed_injury() -> list[dict[str, Any]]:
    return [
        condition(
            "old-bsi",
            coding(ICD10CM, "M48.48XA"),
            recorded="2024-11-04",
            clinical="resolved",
            abatement="2025-03-01",
        ),
        care_plan("cp", "completed", ["Condition/old-bsi"]),
        report(
            "old-mri",
            coding(LOINC, "24867-4"),
            effective="2024-11-04",
            conclusion="Left sacral stress fracture.",
            conclusion_codes=[coding(SNOMED, "240197007")],
        ),
    ]


def test_regression_healed_sacral_bsi_does_not_reoffer_a_plan(content: Content) -> None:
    result = assess_case(cases.runner_with(*_healed_injury()), content, DAY)
    assert not isinstance(result, (Confirmation, ConfirmFirst))


def test_regression_healed_sacral_bsi_does_not_hide_new_pain(content: Content) -> None:
    pain = condition("new", coding(ICD10CM, "M54.41"), onset=days_ago(20))
    result = assess_case(cases.runner_with(*_healed_injury(), pain), content, DAY)
    assert isinstance(result, Suspicion)
    assert result.side is Side.RIGHT


def test_regression_old_coded_report_alone_is_too_old_for_a_plan(content: Content) -> None:
    old = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective="2024-11-04",
        conclusion="Left sacral stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    assert not isinstance(assess_case(cases.runner_with(old), content, DAY), Confirmation)


# ---------------------------------------------------------------------------- Day 0
def test_regression_unrelated_mri_near_the_diagnosis_is_not_the_confirming_one(
    content: Content,
) -> None:
    dx = condition("bsi", coding(ICD10CM, "M48.48XA"), onset="2025-08-01", recorded="2025-10-06")
    lumbar = report(
        "l", coding(LOINC, "24968-0"), effective="2025-09-12", conclusion="L4-L5 disc bulge."
    )
    hip = report(
        "h",
        coding(SNOMED, "113091000"),
        text="MRI right hip",
        effective="2025-10-01",
        conclusion="Normal right hip.",
    )
    negative = report(
        "p",
        coding(LOINC, "24867-4"),
        effective="2025-09-20",
        conclusion="No sacral stress fracture.",
    )
    result = assess_case(cases.runner_with(dx, lumbar, hip, negative), content, DAY)
    assert isinstance(result, Confirmation)
    assert result.day0 == date(2025, 10, 6)
    assert result.day0_source == "condition-recorded"
    assert result.side is Side.UNKNOWN


def test_regression_onset_does_not_anchor_the_report_window(content: Content) -> None:
    dx = condition("bsi", coding(ICD10CM, "M48.48XA"), onset="2025-06-01")
    early = report(
        "e",
        coding(LOINC, "24867-4"),
        effective="2025-06-10",
        conclusion="Left sacral stress reaction.",
    )
    result = assess_case(cases.runner_with(dx, early), content, DAY)
    assert isinstance(result, Confirmation)
    assert result.day0_source == "today"


def test_regression_day0_is_the_first_confirming_mri_not_the_follow_up(content: Content) -> None:
    dx = condition(
        "bsi",
        coding(ICD10CM, "M48.48XA"),
        recorded="2025-10-03",
        evidence=["DiagnosticReport/first", "DiagnosticReport/follow-up"],
    )
    first = report(
        "first",
        coding(LOINC, "24867-4"),
        effective="2025-10-03",
        conclusion="Left sacral stress fracture.",
    )
    follow = report(
        "follow-up",
        coding(LOINC, "24867-4"),
        effective="2025-11-20",
        conclusion="Healing left sacral stress fracture.",
    )
    result = assess_case(cases.runner_with(dx, first, follow), content, date(2025, 11, 25))
    assert isinstance(result, Confirmation)
    assert result.day0 == date(2025, 10, 3)


# ---------------------------------------------------------------------------- plan dedupe
@pytest.mark.parametrize("order", ["encounter-first", "problem-list-first"])
def test_regression_plan_for_the_initial_code_covers_its_later_encounter_twin(
    content: Content, order: str
) -> None:
    initial = condition("bsi-xa", coding(ICD10CM, "M48.48XA"), recorded="2025-10-03")
    later = condition(
        "bsi-xd", coding(ICD10CM, "M48.48XD"), recorded="2025-10-03", category="encounter-diagnosis"
    )
    plan = care_plan("cp", "active", ["Condition/bsi-xa"])
    conditions = [later, initial] if order == "encounter-first" else [initial, later]
    assert assess_case(cases.runner_with(*conditions, plan), content, DAY) == NoCard(
        "care_plan_in_chart"
    )


# ---------------------------------------------------------------------------- dates and sides
def test_regression_encounter_date_dates_an_encounter_diagnosis(content: Content) -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "enc",
        "status": "finished",
        "period": {"start": days_ago(12)},
    }
    pain = condition(
        "lbp", coding(ICD10CM, "M54.42"), category="encounter-diagnosis", encounter="Encounter/enc"
    )
    assert isinstance(assess_case(cases.runner_with(pain, encounter), content, DAY), Suspicion)


def test_regression_negative_mri_keeps_suppressing_when_the_pain_is_recoded(
    content: Content,
) -> None:
    first = condition("lbp-1", coding(ICD10CM, "M54.42"), onset="2025-06-01")
    recoded = condition(
        "lbp-2", coding(ICD10CM, "M54.42"), recorded="2025-09-15", category="encounter-diagnosis"
    )
    mri = report("mri", coding(LOINC, "24867-4"), effective="2025-07-01", conclusion="Normal.")
    assert assess_case(cases.runner_with(first, mri, recoded), content, DAY) == NoCard(
        "mri_after_pain_onset"
    )


def test_regression_side_from_icd_code_beside_a_snomed_code(content: Content) -> None:
    pain = condition(
        "lbp", coding(SNOMED, "279039007"), coding(ICD10CM, "M54.42"), onset=days_ago(10)
    )
    result = assess_case(cases.runner_with(pain), content, DAY)
    assert isinstance(result, Suspicion)
    assert result.side is Side.LEFT


def test_regression_nested_snomed_expression_laterality(content: Content) -> None:
    pain = condition(
        "lbp",
        coding(SNOMED, "279039007:363698007=(52612000:272741003=7771000)"),
        onset=days_ago(10),
    )
    assert facts_of([pain], content).pains[0].side is Side.LEFT


def test_regression_report_side_comes_from_the_sacral_sentence(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective="2025-10-01",
        conclusion="Left sacral ala stress fracture. Right SI joint normal.",
    )
    assert facts_of([mri], content).reports[0].side is Side.LEFT


# ---------------------------------------------------------------------------- runner text
def test_regression_negation_aimed_at_something_else_keeps_the_runner(content: Content) -> None:
    for note in (
        "Never smoked and is a marathon runner.",
        "Quit smoking in 2023 and took up running.",
        "Denies tobacco and runs 5 days/week.",
        "Stopped running 2 weeks ago because of the buttock pain.",
    ):
        record = [
            *cases.runner_with(
                condition(
                    "b", coding(SNOMED, "279043006"), text="left buttock pain", onset=days_ago(30)
                )
            ),
            observation("sh", "11341-5", value_string=note, effective=days_ago(15)),
        ]
        assert isinstance(assess_case(record, content, DAY), Suspicion), note


@pytest.mark.parametrize(
    "text",
    [
        "22 yo F with no significant PMH who is a collegiate XC runner",
        "Insidious onset without trauma in a collegiate XC runner.",
        "not improving despite PT in this marathon runner",
        "Pt is a marathoner.",
        "Running 30 miles/week.",
        "Runs on treadmill 5 days a week.",
        "Son is on the XC team and patient runs 20 miles a week.",
    ],
)
def test_regression_runner_text_found(text: str) -> None:
    assert any(m.polarity is Polarity.CURRENT for m in text_rules.runner_mentions(text)), text


@pytest.mark.parametrize(
    "text",
    [
        "Patellofemoral pain syndrome (runner's knee), right.",
        "Member of the high school XC ski team.",
        "Races XC mountain bikes; XC race season starts in May.",
        "Marathon session in the OR yesterday.",
    ],
)
def test_regression_runner_text_false_positives(text: str) -> None:
    assert not any(m.polarity is Polarity.CURRENT for m in text_rules.runner_mentions(text)), text


# ---------------------------------------------------------------------------- side text
@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("Left-sided LBP, no radiation to the right leg", Side.LEFT),
        ("Left SI joint pain. Denies right-sided symptoms.", Side.LEFT),
        ("L buttock pain; R side asymptomatic", Side.LEFT),
        ("Left SI pain, right-handed", Side.LEFT),
        ("Pain in both buttocks, worse on the left", Side.BILATERAL),
        ("(L) buttock pain", Side.LEFT),
        ("buttock pain on L", Side.LEFT),
        ("left > right", Side.BILATERAL),
    ],
)
def test_regression_side_text(text: str, side: Side) -> None:
    assert text_rules.side_from_text(text) is side


# ---------------------------------------------------------------------------- MRI conclusions
@pytest.mark.parametrize(
    "conclusion",
    [
        "Findings do not suggest a sacral stress fracture.",
        "Not consistent with sacral stress fracture.",
        "Sacral stress fracture excluded.",
        "Sacral stress fracture was not demonstrated.",
        "Sacral stress fracture: none.",
        "Healed left sacral stress fracture.",
        "Interval healing of the previously seen left sacral stress fracture.",
        "Evaluate for sacral stress fracture. Impression: normal MRI.",
        "History of sacral stress fracture 2023. Normal MRI.",
        "Bone marrow edema in the sacral and iliac subchondral bone of the left SI joint. Findings compatible with active sacroiliitis.",
    ],
)
def test_regression_conclusions_that_are_not_a_current_sacral_bsi(conclusion: str) -> None:
    assert read_impression(conclusion).reading is not ReportReading.POSITIVE


@pytest.mark.parametrize(
    "conclusion",
    [
        "No fracture line is seen but there is marrow edema in the left sacral ala compatible with a stress reaction.",
        "Marrow edema in the left sacral ala, not seen on the prior study, compatible with stress reaction.",
    ],
)
def test_regression_conclusions_that_are_a_sacral_bsi(conclusion: str) -> None:
    assert read_impression(conclusion).reading is ReportReading.POSITIVE


@pytest.mark.parametrize(
    ("conclusion", "grade"),
    [
        (
            "Left sacral ala marrow edema, no definite fracture line: stress reaction.",
            Grade.REACTION,
        ),
        ("Sacral marrow edema; fracture line is not seen.", Grade.REACTION),
        ("Left sacral stress reaction. No evidence of fracture line.", Grade.REACTION),
        ("Sacral stress reaction, no cortical fracture line.", Grade.REACTION),
        ("Sacral stress injury, Fredericson grade IV.", Grade.FRACTURE),
    ],
)
def test_regression_grade(conclusion: str, grade: Grade) -> None:
    assert text_rules.grade_from_text(conclusion)[0] is grade


def test_regression_hop_test_with_colon_is_pain_with_impact() -> None:
    assert [
        t.value for t, _ in text_rules.topic_mentions("Single-leg hop test: positive on the left")
    ] == ["pain_with_impact"]
