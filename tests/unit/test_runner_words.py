"""Runner words (brief 14.6): multisport and club words count; running as a job or an errand does
not; stopping because of the pain is a current runner; a running-distance value is mileage."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.clinical import text_rules
from cds_service.clinical.facts import Polarity, RunnerKind, Strength
from cds_service.clinical.sacral_bsi import NoCard, Suspicion
from cds_service.services.sacral_bsi.content import Content
from tests.builders import ICD10CM, LOINC, coding, condition, observation, patient
from tests.conftest import assess_case

TODAY = date(2026, 11, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


@pytest.mark.parametrize(
    "text",
    [
        "Triathlete, trains 10 h/week.",
        "Competitive duathlete.",
        "Member of a run club.",
        "Runs with her running club on Sundays.",
        "Training for a 70.3 in the spring.",
        "Training for an Ironman.",
        "Currently training for a half.",
        "Ran the Boston marathon in April.",
        "Did a sprint triathlon last month.",
        "Exercise: Yes. Types: Running. Times/week: 3",
        "Started Couch to 5K 8 weeks ago.",
        "Signed up for the Boston marathon in April.",
    ],
)
def test_runner_words_count_as_current_runner(text: str) -> None:
    mentions = text_rules.runner_mentions(text)
    assert mentions, text
    assert all(m.polarity is Polarity.CURRENT for m in mentions), mentions


@pytest.mark.parametrize(
    "text",
    [
        "Triathlete, trains 10 h/week.",
        "Competitive duathlete.",
        "Member of a run club.",
        "Training for an Ironman.",
    ],
)
def test_multisport_and_club_words_are_moderate(text: str) -> None:
    assert {m.strength for m in text_rules.runner_mentions(text)} == {Strength.MODERATE}


@pytest.mark.parametrize(
    "text",
    [
        "Works as a food runner at a restaurant.",
        "Bank runner for a law firm.",
        "He is a runner at the restaurant downtown.",
        "History of being a drug runner.",
        "Works as a runner.",
        "Job: errand runner for an office.",
        "Finished runner-up in the chess tournament.",
        "Grows runner beans.",
        "Running errands all day at work.",
        "Running a small business.",
        "Watched the Iron Man movie.",
        "Pushes the baby in a jogging stroller on walks.",
        "Thinking about signing up for a marathon next year.",
        "Parkrun volunteer marshal.",
        "Watched the London marathon with her kids.",
    ],
)
def test_runner_words_for_jobs_and_errands_do_not_count(text: str) -> None:
    assert text_rules.runner_mentions(text) == [], text


@pytest.mark.parametrize(
    "text",
    [
        "Stopped running 3 weeks ago because of the left buttock pain.",
        "Unable to run due to pain.",
        "Had to stop running because of the pain in her low back.",
        "Can't run since the injury.",
        "Had to stop running d/t LBP.",
    ],
)
def test_stopped_because_of_the_pain_is_a_current_moderate_runner(text: str) -> None:
    (mention,) = text_rules.runner_mentions(text)
    assert mention.polarity is Polarity.CURRENT
    assert mention.strength is Strength.MODERATE
    assert mention.rule == text_rules.STOPPED_FOR_PAIN_RULE


@pytest.mark.parametrize(
    "text", ["Stopped running in 2019.", "Quit running years ago.", "Former runner."]
)
def test_stopped_for_no_stated_reason_stays_former(text: str) -> None:
    assert [m.polarity for m in text_rules.runner_mentions(text)] == [Polarity.FORMER]


def test_stopped_because_of_the_pain_of_someone_else_does_not_count() -> None:
    assert text_rules.runner_mentions("Her husband stopped running because of knee pain.") == []


def note(text: str, days: int) -> dict[str, Any]:
    return observation(
        "note", "11348-0", value_string=text, effective=days_ago(days), category="social-history"
    )


def record(*extra: dict[str, Any], pain_days: int = 20) -> list[dict[str, Any]]:
    return [
        patient("p1", "male", "1990-01-01"),
        condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(pain_days)),
        *extra,
    ]


def test_stopped_for_pain_in_this_episode_makes_a_runner(content: Content) -> None:
    result = assess_case(
        record(note("Stopped running because of the back pain.", 5)), content, TODAY
    )
    assert isinstance(result, Suspicion)
    assert result.runner.kind is RunnerKind.STOPPED_FOR_PAIN


def test_stopped_for_pain_long_before_this_episode_does_not(content: Content) -> None:
    """A note from a year before the pain began is about another episode."""
    result = assess_case(
        record(note("Stopped running because of the back pain.", 360)), content, TODAY
    )
    assert result == NoCard("not_a_runner")


def distance(text: str, value: float, unit: str, days: int = 10) -> dict[str, Any]:
    obs = observation(
        "dist",
        "x-local-1",
        system="urn:oid:1.2.3.4",
        value=value,
        unit=unit,
        effective=days_ago(days),
    )
    obs["code"]["text"] = text
    return obs


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("Running distance per week", "mi"),
        ("Weekly running mileage", "[mi_i]"),
        ("Weekly mileage", "km"),
        ("Jogging distance", "km"),
        # any distance unit, per any time, as EHRs spell them (14.6)
        ("Weekly running distance", "km/d"),
        ("Weekly running distance", "km/mo"),
        ("Weekly running distance", "mi/month"),
        ("Weekly running distance", "Miles/Week"),
        ("Weekly running distance", "Km/Wk"),
        ("Weekly running distance", "miles per wk"),
        ("Weekly running distance", "km / wk"),
        ("Weekly running distance", " km "),
        ("Weekly running distance", "[mi_i]/(7.d)"),
        ("Weekly running distance", "[mi_us]"),
        ("Weekly running distance", "m"),
        ("Weekly running distance", "METRES"),
        ("Weekly running distance", "kilometres per week"),
        ("Weekly running distance", "mpw"),
        ("Weekly running distance", "KPW"),
    ],
)
def test_running_distance_value_is_strong_mileage(content: Content, text: str, unit: str) -> None:
    result = assess_case(record(distance(text, 25, unit)), content, TODAY)
    assert isinstance(result, Suspicion)
    assert (result.runner.kind, result.runner.strength) == (RunnerKind.MILEAGE, Strength.STRONG)
    assert result.runner.source == "Observation/dist"


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("Cycling distance per week", 100, "km"),
        ("Walking distance", 3, "mi"),
        ("Weekly mileage driven", 300, "mi"),
        ("Running distance per week", 25, "min"),  # not a distance unit
        ("Running distance per week", 25, "mmol/L"),
        ("Running distance per week", 25, "kg/m"),
        ("Running distance per week", 25, "mile-ish"),
        ("Running distance per week", 0, "mi"),
        ("Body weight", 60, "kg"),
    ],
)
def test_other_distance_values_are_not_runner_evidence(
    content: Content, text: str, value: float, unit: str
) -> None:
    result = assess_case(record(distance(text, value, unit)), content, TODAY)
    assert result == NoCard("not_a_runner")


def test_running_distance_in_a_loinc_coded_observation_is_read_too(content: Content) -> None:
    """A coded observation the rule does not know, with a running-distance text."""
    obs = observation("dist", "55411-3", system=LOINC, value=30, unit="km", effective=days_ago(3))
    obs["code"]["text"] = "Running distance last week"
    result = assess_case(record(obs), content, TODAY)
    assert isinstance(result, Suspicion)


def test_running_distance_with_a_note_is_still_read(content: Content) -> None:
    """A note on the value (a common EHR habit) does not hide the number."""
    obs = distance("Weekly running distance", 40, "km")
    obs["note"] = [{"text": "self-reported"}]
    result = assess_case(record(obs), content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.runner.kind is RunnerKind.MILEAGE
