"""A plan that holds together (brief 14.4), and card B's wording for late and repeat injuries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cds_service.clinical.sacral_bsi import Confirmation
from cds_service.services.sacral_bsi.content import Content
from cds_service.services.sacral_bsi.render import RenderContext, build_careplan, render
from tests import cases
from tests.builders import (
    ICD10CM,
    LEFT,
    LOINC,
    SACRUM,
    SNOMED,
    coding,
    concept,
    condition,
    patient,
    running_activity,
)
from tests.builders import report as mri_report
from tests.conftest import assess_case

TODAY = date(2026, 11, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def ctx(pid: str = "p1") -> RenderContext:
    return RenderContext(pid, None, TODAY, datetime(2026, 11, 30, 9, 0, tzinfo=UTC), lambda: "u")


def confirmed(content: Content, gender: str | None = "female", days: int = 3) -> Confirmation:
    record = [
        patient("p1", gender, "1995-01-01"),
        running_activity("run", days_ago(60)),
        condition(
            "bsi",
            coding(ICD10CM, "M48.48XA"),
            recorded=days_ago(days),
            body_sites=[concept(coding(SNOMED, SACRUM)), concept(coding(SNOMED, LEFT))],
        ),
    ]
    result = assess_case(record, content, TODAY)
    assert isinstance(result, Confirmation)
    return result


def plan(content: Content, gender: str | None = "female") -> dict[str, Any]:
    built: dict[str, Any] = build_careplan(confirmed(content, gender), content, ctx())
    return built


def activity(p: dict[str, Any], starts: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        a["detail"] for a in p["activity"] if a["detail"]["code"]["text"].startswith(starts)
    ]
    (only,) = found
    return only


def test_plan_restriction_is_its_own_activity_with_no_end_date(content: Content) -> None:
    p = plan(content)
    (restriction,) = [a["detail"] for a in p["activity"] if a["detail"].get("doNotPerform")]
    assert restriction["code"] == {"text": "Running, hopping, jumping"}
    assert restriction["scheduledPeriod"] == {"start": days_ago(3)}  # Day 0, no end
    assert "until the clinician clears" in restriction["description"]
    assert "One exception: the low-level hop progression of phase 3" in restriction["description"]


def test_plan_hops_are_the_named_exception_not_a_contradiction(content: Content) -> None:
    """Phase 3 schedules hops inside the restriction: its text says they are the exception and
    when they may start; phase 2 keeps hopping out."""
    p = plan(content)
    phase3 = activity(p, "Phase 3")["description"]
    assert "once walking and double-leg work are pain-free and the clinician allows it" in phase3
    assert "the one exception to the no-hopping restriction" in phase3
    assert "Hopping" in activity(p, "Phase 2")["description"].split("Avoid:")[1]


def test_plan_names_when_to_stop_and_reassess(content: Content) -> None:
    p = plan(content)
    for trigger in (
        "pain at rest or at night",
        "pain that rises during a phase",
        "new groin or hip pain",
        "femoral neck",
        "no progress after about 2 weeks in a phase",
    ):
        assert trigger in p["description"], trigger
        assert trigger in p["text"]["div"], trigger


def test_plan_phase5_has_exit_criteria(content: Content) -> None:
    criteria = activity(plan(content), "Phase 5")["description"].split("Move on when:")[1]
    assert "pain-free for 2 weeks" in criteria
    assert "usual training volume and intensity" in criteria.lower()
    assert "bone-health items addressed" in criteria


def test_plan_has_starting_doses(content: Content) -> None:
    p = plan(content)
    assert (
        "brisk walking for 30-45 min pain-free before any hopping"
        in activity(p, "Phase 2")["description"]
    )
    assert "1 min run / 1 min walk x 10, every other day" in activity(p, "Phase 4")["description"]
    assert (
        "only when pain-free during the run, after it and the next day"
        in activity(p, "Phase 4")["description"]
    )


def test_plan_bone_health_for_a_woman_names_the_trabecular_site_and_menstrual_history(
    content: Content,
) -> None:
    text = activity(plan(content, "female"), "Bone health")["description"]
    assert "trabecular site such as the sacrum is itself a reason" in text
    assert "DXA" in text
    assert "menstrual" in text


def test_plan_bone_health_for_a_man_has_no_menstrual_wording(content: Content) -> None:
    text = activity(plan(content, "male"), "Bone health")["description"]
    assert "menstrual" not in text.lower()
    assert "Triad" not in text
    assert "Consider a DXA scan if other risk factors are present" in text


@pytest.mark.parametrize("gender", [None, "other", "unknown"])
def test_plan_bone_health_sex_not_recorded_covers_both(
    content: Content, gender: str | None
) -> None:
    text = activity(plan(content, gender), "Bone health")["description"]
    assert "in women, a bone stress injury at a trabecular site" in text
    assert "otherwise if other risk factors are present" in text


def test_plan_card_for_a_man_has_no_menstrual_wording(content: Content) -> None:
    (card,) = render(confirmed(content, "male"), content, ctx()).cards
    assert "menstrual" not in (card.detail or "").lower()


def test_card_b_late_diagnosis_says_how_many_weeks_ago(content: Content) -> None:
    (card,) = render(confirmed(content, days=70), content, ctx()).cards
    assert card.summary == (
        "Sacral bone stress injury diagnosed 10 weeks ago: review the proposed rehab plan from "
        "the phase reached."
    )
    assert "**Diagnosed 10 weeks ago:**" in (card.detail or "")
    assert "starts with protected weight-bearing" not in card.summary


def test_card_b_before_eight_weeks_keeps_the_first_phase_wording(content: Content) -> None:
    (card,) = render(confirmed(content, days=55), content, ctx()).cards
    assert "starts with protected weight-bearing" in card.summary
    assert "weeks ago" not in (card.detail or "")


def test_card_b_lists_the_earlier_episode_as_prior_sacral_bsi(content: Content) -> None:
    old = condition(
        "old",
        coding(ICD10CM, "M48.48XA"),
        clinical="resolved",
        recorded="2023-02-01",
        body_sites=[concept(coding(SNOMED, SACRUM))],
    )
    mri = mri_report(
        "mri",
        coding(LOINC, "24867-4"),
        effective=days_ago(2),
        conclusion="Left sacral stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    result = assess_case(cases.runner_with(old, mri), content, TODAY)
    assert isinstance(result, Confirmation)
    (card,) = render(result, content, ctx()).cards
    assert "Prior sacral BSI: Fatigue fracture of vertebra" in (card.detail or "")
    assert "2023-02-01" in (card.detail or "")


def test_card_b_shows_the_stop_triggers_and_the_restriction(content: Content) -> None:
    (card,) = render(confirmed(content), content, ctx()).cards
    detail = card.detail or ""
    assert "Stop and re-assess if" in detail
    assert f"No running, hopping or jumping from {days_ago(3)} until the clinician clears it" in (
        detail
    )
