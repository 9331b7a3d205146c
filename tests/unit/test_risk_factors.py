"""Risk factors (brief 6): each category from each source the brief names, with its window."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.clinical.facts import RiskCategory
from cds_service.clinical.sacral_bsi import RiskFactor, Suspicion
from cds_service.services.sacral_bsi.content import Content
from tests.builders import (
    ICD10CM,
    SNOMED,
    coding,
    condition,
    observation,
    patient,
    running_activity,
)
from tests.conftest import assess_case

TODAY = date(2025, 9, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def risks_of(
    extra: list[dict[str, Any]],
    content: Content,
    *,
    birth: str = "1990-01-01",
    gender: str = "male",
) -> dict[RiskCategory, RiskFactor]:
    record = [
        patient("p1", gender, birth),
        running_activity("run", days_ago(30)),
        condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(40)),
        *extra,
    ]
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Suspicion)
    return {r.category: r for r in (*result.risks, *result.features)}


@pytest.mark.parametrize(
    ("codes", "category"),
    [
        ([coding(ICD10CM, "Z87.312")], RiskCategory.PRIOR_BSI),
        ([coding(ICD10CM, "M84.374A", "Stress fracture, right foot")], RiskCategory.PRIOR_BSI),
        ([coding(SNOMED, "240197007")], RiskCategory.PRIOR_BSI),
        ([coding(ICD10CM, "N91.1")], RiskCategory.MENSTRUAL),
        ([coding(ICD10CM, "N91.4")], RiskCategory.MENSTRUAL),
        ([coding(SNOMED, "14302001")], RiskCategory.MENSTRUAL),
        ([coding(SNOMED, "52073004")], RiskCategory.MENSTRUAL),
        ([coding(ICD10CM, "F50.01")], RiskCategory.LOW_ENERGY),
        ([coding(ICD10CM, "F50.011")], RiskCategory.LOW_ENERGY),
        ([coding(ICD10CM, "F50.2")], RiskCategory.LOW_ENERGY),
        ([coding(SNOMED, "72366004")], RiskCategory.LOW_ENERGY),
        ([coding(ICD10CM, "R63.6")], RiskCategory.LOW_BMI),
        ([coding(SNOMED, "248342006")], RiskCategory.LOW_BMI),
        ([coding(ICD10CM, "Z68.1")], RiskCategory.LOW_BMI),
        ([coding(ICD10CM, "M81.0")], RiskCategory.LOW_BMD),
        ([coding(ICD10CM, "M85.80")], RiskCategory.LOW_BMD),
        ([coding(SNOMED, "64859006")], RiskCategory.LOW_BMD),
        ([coding(ICD10CM, "E55.9")], RiskCategory.LOW_VITAMIN_D),
        ([coding(SNOMED, "34713006")], RiskCategory.LOW_VITAMIN_D),
    ],
)
def test_risk_coded_condition_counts(
    content: Content, codes: list[dict[str, str]], category: RiskCategory
) -> None:
    found = risks_of([condition("r", *codes, onset=days_ago(60))], content)
    assert category in found


def test_risk_refuted_condition_never_counts(content: Content) -> None:
    found = risks_of(
        [condition("r", coding(ICD10CM, "N91.1"), onset=days_ago(60), verification="refuted")],
        content,
    )
    assert RiskCategory.MENSTRUAL not in found


def test_risk_resolved_menstrual_dysfunction_counts_within_24_months_only(content: Content) -> None:
    recent = condition("r", coding(ICD10CM, "N91.1"), onset=days_ago(700), clinical="resolved")
    old = condition("r", coding(ICD10CM, "N91.1"), onset=days_ago(800), clinical="resolved")
    assert RiskCategory.MENSTRUAL in risks_of([recent], content)
    assert RiskCategory.MENSTRUAL not in risks_of([old], content)


def test_risk_eating_disorder_counts_at_any_date(content: Content) -> None:
    old = condition("r", coding(ICD10CM, "F50.00"), onset="2010-01-01", clinical="resolved")
    assert RiskCategory.LOW_ENERGY in risks_of([old], content)


def test_risk_adult_bmi_below_threshold_latest_value_decides(content: Content) -> None:
    low = observation("b1", "39156-5", value=18.2, unit="kg/m2", effective=days_ago(100))
    normal_later = observation("b2", "39156-5", value=19.4, unit="kg/m2", effective=days_ago(10))
    assert RiskCategory.LOW_BMI in risks_of([low], content)
    assert RiskCategory.LOW_BMI not in risks_of([low, normal_later], content)


def test_risk_bmi_outside_lookback_ignored(content: Content) -> None:
    old = observation("b1", "39156-5", value=17.0, unit="kg/m2", effective=days_ago(400))
    assert RiskCategory.LOW_BMI not in risks_of([old], content)


def test_risk_bmi_computed_from_weight_and_height(content: Content) -> None:
    weight = observation(
        "w", "29463-7", value=110.0, unit="[lb_av]", effective=days_ago(20)
    )  # 49.9 kg
    height = observation("h", "8302-2", value=170.0, unit="cm", effective=days_ago(900))
    found = risks_of([weight, height], content)  # 49.9 / 1.7^2 = 17.3
    assert found[RiskCategory.LOW_BMI].value == pytest.approx(17.3, abs=0.05)


def test_risk_child_never_uses_adult_bmi_threshold(content: Content) -> None:
    """BMI 17.9 is under the adult 18.5, but for a 12-year-old boy it is above the median for
    age (CDC 2000: M = 17.6 at 150 months): not low."""
    bmi = observation("b1", "39156-5", value=17.9, unit="kg/m2", effective=days_ago(20))
    assert RiskCategory.LOW_BMI not in risks_of([bmi], content, birth="2013-03-01")


def test_risk_teen_bmi_percentile_below_5_counts(content: Content) -> None:
    pct = observation("p", "59576-9", value=3, unit="%", effective=days_ago(20))
    assert RiskCategory.LOW_BMI in risks_of([pct], content, birth="2009-01-01")


def test_risk_teen_pediatric_bmi_code_counts_adult_band_does_not(content: Content) -> None:
    assert RiskCategory.LOW_BMI in risks_of(
        [condition("z", coding(ICD10CM, "Z68.51"), recorded=days_ago(20))],
        content,
        birth="2009-01-01",
    )
    assert RiskCategory.LOW_BMI not in risks_of(
        [condition("z", coding(ICD10CM, "Z68.1"), recorded=days_ago(20))],
        content,
        birth="2009-01-01",
    )


def test_risk_z68_1_band_yields_to_a_measured_normal_bmi(content: Content) -> None:
    band = condition("z", coding(ICD10CM, "Z68.1"), recorded=days_ago(20))
    bmi = observation("b", "39156-5", value=19.5, unit="kg/m2", effective=days_ago(10))
    assert RiskCategory.LOW_BMI not in risks_of([band, bmi], content)


@pytest.mark.parametrize(
    ("code", "value", "unit", "low"),
    [
        ("62292-8", 15.0, "ng/mL", True),
        ("62292-8", 25.0, "ng/mL", False),
        ("1989-3", 19.0, "ug/L", True),
        ("14635-7", 40.0, "nmol/L", True),  # 16 ng/mL
        ("14635-7", 60.0, "nmol/L", False),  # 24 ng/mL
        ("14635-7", 40.0, None, True),  # the code's usual unit
    ],
)
def test_risk_vitamin_d_threshold_and_units(
    content: Content, code: str, value: float, unit: str | None, low: bool
) -> None:
    obs = observation("d", code, value=value, unit=unit, effective=days_ago(30))
    assert (RiskCategory.LOW_VITAMIN_D in risks_of([obs], content)) is low


def test_risk_vitamin_d_comparator_below_detection_counts(content: Content) -> None:
    obs = observation("d", "62292-8", value=8, unit="ng/mL", comparator="<", effective=days_ago(30))
    assert RiskCategory.LOW_VITAMIN_D in risks_of([obs], content)


def test_risk_vitamin_d_normal_lab_overrides_older_deficiency_code(content: Content) -> None:
    code = condition("e", coding(ICD10CM, "E55.9"), onset=days_ago(200))
    lab = observation("d", "62292-8", value=35.0, unit="ng/mL", effective=days_ago(30))
    assert RiskCategory.LOW_VITAMIN_D not in risks_of([code, lab], content)


def test_risk_preliminary_lab_is_not_used(content: Content) -> None:
    lab = observation(
        "d", "62292-8", value=8.0, unit="ng/mL", effective=days_ago(30), status="preliminary"
    )
    assert RiskCategory.LOW_VITAMIN_D not in risks_of([lab], content)


@pytest.mark.parametrize(
    ("note", "category"),
    [
        ("Pain with hopping on the left side", RiskCategory.PAIN_WITH_IMPACT),
        ("Single-leg hop test positive on the left", RiskCategory.PAIN_WITH_IMPACT),
        ("Recently increased mileage from 20 to 40 miles", RiskCategory.TRAINING_INCREASE),
        ("Gradual onset, no trauma", RiskCategory.INSIDIOUS_ONSET),
        ("History of tibial stress fracture in 2022", RiskCategory.PRIOR_BSI),
        ("Missed periods for 5 months", RiskCategory.MENSTRUAL),
        ("Concern for low energy availability / RED-S", RiskCategory.LOW_ENERGY),
    ],
)
def test_risk_text_in_condition_note(content: Content, note: str, category: RiskCategory) -> None:
    found = risks_of(
        [
            condition(
                "n",
                coding(SNOMED, "161891005"),
                onset=days_ago(40),
                notes=[note],
                clinical="resolved",
            )
        ],
        content,
    )
    assert category in found


def test_risk_negated_text_does_not_count(content: Content) -> None:
    note = condition(
        "n",
        coding(SNOMED, "0"),
        onset=days_ago(30),
        notes=["No pain with hopping. Denies missed periods."],
    )
    found = risks_of([note], content)
    assert RiskCategory.PAIN_WITH_IMPACT not in found
    assert RiskCategory.MENSTRUAL not in found


def test_risk_family_history_text_does_not_count(content: Content) -> None:
    note = condition(
        "n", coding(SNOMED, "0"), onset=days_ago(30), notes=["Mother has osteoporosis."]
    )
    assert RiskCategory.LOW_BMD not in risks_of([note], content)


def test_risk_training_increase_from_exercise_minutes(content: Content) -> None:
    before = observation("e1", "82290-8", value=150, unit="min/wk", effective=days_ago(120))
    after = observation("e2", "82290-8", value=300, unit="min/wk", effective=days_ago(45))
    found = risks_of([before, after], content)
    assert found[RiskCategory.TRAINING_INCREASE].previous == 150


def test_risk_si_label_active_28_days_counts_27_does_not(content: Content) -> None:
    def si(onset_days: int) -> list[dict[str, Any]]:
        return [
            patient("p1", "male", "1990-01-01"),
            running_activity("run", days_ago(30)),
            condition(
                "si", coding(ICD10CM, "M46.1"), text="left sacroiliitis", onset=days_ago(onset_days)
            ),
        ]

    at_28 = assess_case(si(28), content, TODAY)
    at_27 = assess_case(si(27), content, TODAY)
    assert isinstance(at_28, Suspicion)
    assert isinstance(at_27, Suspicion)
    assert RiskCategory.SI_NOT_IMPROVING in {r.category for r in at_28.features}
    assert RiskCategory.SI_NOT_IMPROVING not in {r.category for r in at_27.features}


def test_risk_current_sacral_provisional_fracture_is_not_a_prior_one(content: Content) -> None:
    current = condition(
        "bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(3), verification="provisional"
    )
    assert RiskCategory.PRIOR_BSI not in risks_of([current], content)


def test_risk_each_category_counts_once(content: Content) -> None:
    found = risks_of(
        [
            condition("a", coding(ICD10CM, "N91.1"), onset=days_ago(60)),
            condition("b", coding(SNOMED, "14302001"), onset=days_ago(30)),
        ],
        content,
    )
    assert list(found).count(RiskCategory.MENSTRUAL) == 1
    assert found[RiskCategory.MENSTRUAL].source == "Condition/b"  # newest evidence shown


def test_risk_text_prior_fracture_ruled_out_does_not_count(content: Content) -> None:
    note = condition(
        "n",
        coding(SNOMED, "0"),
        onset=days_ago(30),
        notes=["Previous stress fracture was ruled out on MRI in 2024."],
    )
    assert RiskCategory.PRIOR_BSI not in risks_of([note], content)
