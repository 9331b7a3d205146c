"""Onset given another way (brief 14.7) and sides over time (14.8)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.clinical.facts import Side
from cds_service.clinical.sacral_bsi import NoCard, Suspicion
from cds_service.services.sacral_bsi.content import Content
from fhir_mappings.onset import onset_from_text
from tests import cases
from tests.builders import ICD10CM, RIGHT, SNOMED, coding, concept, condition
from tests.conftest import assess_case, facts_of

TODAY = date(2026, 11, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def lbp(cid: str = "lbp", code: str = "M54.42", **kw: Any) -> dict[str, Any]:
    return condition(cid, coding(ICD10CM, code), **kw)


def decide(*conditions: dict[str, Any], content: Content) -> Any:
    return assess_case(cases.runner_with(*conditions, runner_date=days_ago(40)), content, TODAY)


# ---------------------------------------------------------------------------- 14.7 onset
@pytest.mark.parametrize(
    ("text", "written", "expected"),
    [
        ("since 2017", None, date(2017, 1, 1)),
        ("Since March 2021", None, date(2021, 3, 1)),
        ("began 2019-06", None, date(2019, 6, 1)),
        ("onset 2026-10-02 while running", None, date(2026, 10, 2)),
        ("since 09/2024", None, date(2024, 9, 1)),
        ("for 5 years", date(2026, 11, 1), date(2021, 11, 1)),
        ("x 3 weeks", date(2026, 11, 20), date(2026, 10, 30)),
        ("\u00d7 3 wks", date(2026, 11, 20), date(2026, 10, 30)),
        ("3/52", date(2026, 11, 20), date(2026, 10, 30)),
        ("for 6 months", date(2026, 11, 30), date(2026, 5, 31)),
        ("two weeks ago", date(2026, 11, 30), date(2026, 11, 16)),
        ("for a few days", date(2026, 11, 30), date(2026, 11, 27)),
        ("for years", date(2026, 11, 30), date(2024, 11, 30)),
        ("since childhood", date(2026, 11, 30), date(2024, 11, 30)),
    ],
)
def test_onset_text_gives_a_date(text: str, written: date | None, expected: date) -> None:
    assert onset_from_text(text, written).when == expected


@pytest.mark.parametrize(
    "text",
    [
        "childhood",
        "Childhood onset",
        "years",
        "teenager",
        "since age 15",
        "Since the 1990s",
        "on and off for a decade",
        "since university",
        "long standing",
        "decades",
        "x10y",
        "10+ years",
        "Since childhood, worse 3 weeks",  # the earliest onset written decides
    ],
)
def test_onset_text_long_ago_is_before_the_look_back(text: str) -> None:
    written = date(2026, 11, 20)
    found = onset_from_text(text, written, birth=date(2000, 5, 1))
    assert found.when is not None
    assert (written - found.when).days > 365, found


def test_onset_text_month_and_year_is_not_read_as_an_age() -> None:
    assert onset_from_text("Since 3/2019", None, birth=date(2000, 5, 1)).when == date(2019, 3, 1)


def test_onset_text_duration_with_nothing_to_count_from_is_days_ago() -> None:
    found = onset_from_text("x 3 weeks", None)
    assert (found.when, found.days_ago) == (None, 21)


@pytest.mark.parametrize("text", ["gradual", "after a long run", "L5 area", "chronic"])
def test_onset_text_without_a_date_or_duration_gives_nothing(text: str) -> None:
    found = onset_from_text(text, date(2026, 11, 1))
    assert (found.when, found.days_ago) == (None, None)


def test_onset_string_since_2017_is_chronic_no_card(content: Content) -> None:
    """The issue's case: recorded last week, but the pain dates from 2017."""
    chronic = lbp(onset_string="since 2017", recorded=days_ago(7))
    assert decide(chronic, content=content) == NoCard("no_qualifying_pain")


def test_onset_string_for_five_years_counts_back_from_the_recorded_date(content: Content) -> None:
    assert decide(lbp(onset_string="for 5 years", recorded=days_ago(3)), content=content) == (
        NoCard("no_qualifying_pain")
    )


def test_onset_string_recent_duration_keeps_the_card(content: Content) -> None:
    result = decide(lbp(onset_string="x 3 weeks", recorded=days_ago(2)), content=content)
    assert isinstance(result, Suspicion)
    assert result.pains[0].since == TODAY - timedelta(days=23)


def test_onset_string_duration_without_recorded_date_counts_from_today(content: Content) -> None:
    result = decide(lbp(onset_string="for 2 years"), content=content)
    assert result == NoCard("no_qualifying_pain")
    result = decide(lbp(onset_string="for 2 weeks"), content=content)
    assert isinstance(result, Suspicion)
    assert result.pains[0].since == TODAY - timedelta(days=14)


def test_onset_age_is_birth_date_plus_age(content: Content) -> None:
    """Born 1990-01-01 (cases.runner_with): onset at age 30 is 2020: chronic; at 36.9, recent."""
    assert decide(lbp(onset_age=(30, "a"), recorded=days_ago(5)), content=content) == NoCard(
        "no_qualifying_pain"
    )
    recent = decide(lbp(onset_age=(36.9, "a"), recorded=days_ago(5)), content=content)
    assert isinstance(recent, Suspicion)


def test_onset_age_in_months(content: Content) -> None:
    # Born 1990-01-01; 440 months = 36 years 8 months: about 2026-09-01 (months of 30.44 days).
    (pain,) = facts_of(cases.runner_with(lbp(onset_age=(440, "mo"))), content).pains
    assert pain.onset is not None
    assert abs((pain.onset - date(2026, 9, 1)).days) <= 2


def test_onset_period_start_is_used(content: Content) -> None:
    result = decide(lbp(onset_period_start="2017-04-01", recorded=days_ago(5)), content=content)
    assert result == NoCard("no_qualifying_pain")


def test_onset_datetime_comes_first(content: Content) -> None:
    both = lbp(onset=days_ago(10), onset_string="since 2017")
    assert isinstance(decide(both, content=content), Suspicion)


# ---------------------------------------------------------------------------- 14.8 sides
def right_pain(days: int, **kw: Any) -> dict[str, Any]:
    return lbp("old", "M54.41", onset=days_ago(days), **kw)


def left_pain(days: int = 10) -> dict[str, Any]:
    return lbp("new", "M54.42", onset=days_ago(days))


def test_sides_old_right_episode_does_not_make_new_left_pain_bilateral(content: Content) -> None:
    """The issue's case: a right-sided problem 300 days old, never closed; new left pain."""
    result = decide(right_pain(300), left_pain(10), content=content)
    assert isinstance(result, Suspicion)
    assert result.side is Side.LEFT
    assert [q.pain.source for q in result.pains] == ["Condition/new"]


def test_sides_boundary_180_days_apart_overlaps_181_does_not(content: Content) -> None:
    at_180 = decide(right_pain(190), left_pain(10), content=content)
    at_181 = decide(right_pain(191), left_pain(10), content=content)
    assert at_180 == NoCard("pain_bilateral")
    assert isinstance(at_181, Suspicion)


def test_sides_old_episode_seen_at_a_recent_encounter_still_overlaps(content: Content) -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "enc",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": {"start": days_ago(20)},
    }
    old = right_pain(300, encounter="Encounter/enc")
    result = assess_case(
        [*cases.runner_with(old, left_pain(10), runner_date=days_ago(40)), encounter],
        content,
        TODAY,
    )
    assert result == NoCard("pain_bilateral")


def test_sides_recent_left_and_right_are_still_bilateral(content: Content) -> None:
    assert decide(right_pain(60), left_pain(10), content=content) == NoCard("pain_bilateral")


def test_sides_old_bilateral_problem_is_an_earlier_episode_too(content: Content) -> None:
    old = lbp(
        "old",
        "M54.50",
        onset=days_ago(300),
        body_sites=[concept(coding(SNOMED, "51440002", "Bilateral"))],
    )
    result = decide(old, left_pain(10), content=content)
    assert isinstance(result, Suspicion)
    assert result.side is Side.LEFT


def test_sides_old_same_side_pain_stays_in_the_episode(content: Content) -> None:
    old_left = lbp("old", "M54.42", onset=days_ago(300))
    result = decide(old_left, left_pain(10), content=content)
    assert isinstance(result, Suspicion)
    assert {q.pain.source for q in result.pains} == {"Condition/old", "Condition/new"}


def test_sides_new_pain_on_the_old_side_with_a_body_site_qualifier(content: Content) -> None:
    old_left = lbp("old", "M54.42", onset=days_ago(300))
    new_right = lbp("new", "M54.50", onset=days_ago(5), body_sites=[concept(coding(SNOMED, RIGHT))])
    result = decide(old_left, new_right, content=content)
    assert isinstance(result, Suspicion)
    assert result.side is Side.RIGHT


def test_sides_new_one_sided_pain_is_not_the_old_right_one(content: Content) -> None:
    """A new pain recorded only as one-sided, 20 days ago; an old right pain 300 days ago: the
    card says one-sided, not right."""
    new = lbp(
        "new",
        "M54.50",
        onset=days_ago(20),
        body_sites=[concept(coding(SNOMED, "66459002", "Unilateral"))],
    )
    result = decide(right_pain(300), new, content=content)
    assert isinstance(result, Suspicion)
    assert result.side is Side.UNILATERAL


def test_sides_a_side_in_a_note_about_something_else_is_not_the_pain_side(
    content: Content,
) -> None:
    pain = lbp("lbp", "M54.50", onset=days_ago(20), notes=["Hx of left ACL repair 2019."])
    assert decide(pain, content=content) == NoCard("side_not_recorded")
    sided = lbp("lbp", "M54.50", onset=days_ago(20), notes=["Pain worse on the left."])
    result = decide(sided, content=content)
    assert isinstance(result, Suspicion)
    assert result.side is Side.LEFT
