"""Text rules (brief 4.3, 5.2, 8.3, 8.5): the brief's positive patterns and its traps."""

from __future__ import annotations

import pytest

from cds_service.clinical import text_rules
from cds_service.clinical.facts import Grade, Polarity, Side


@pytest.mark.parametrize(
    "text",
    [
        "Collegiate cross-country runner",
        "runs 30 mi/week",
        "Runs 5 km most mornings",
        "running 4 days/wk",
        "jogs 3x/week",
        "Training for a half-marathon in May",
        "completed an ultramarathon",
        "Does parkrun every Saturday",
        "enjoys trail running",
        "Cross-country team, fall season",
        "XC runner",
        "track and field athlete",
        "runs track in high school",
        "Running 40 mpw before the injury",
        "60 km/week of running",
        "treadmill running 3x a week",
        "Hobbies: hiking, running",
    ],
)
def test_text_runner_positive(text: str) -> None:
    mentions = text_rules.runner_mentions(text)
    assert any(m.polarity is Polarity.CURRENT for m in mentions), text


@pytest.mark.parametrize(
    "text",
    [
        "running nose and sore throat",
        "Runny nose for 3 days",
        "running a fever since Tuesday",
        "running late for work",
        "running low on insulin",
        "running out of medication",
        "running total of 4 units",
        "IV running at 100 mL/h",
        "back up and running after surgery",
        "run labs today",
        "had the runs after travel",
        "diabetes runs in the family",
        "Lives in Marathon County",
        "dance marathon fundraiser",
        "gaming marathon all weekend",
        "earns $5k a month",
        "drove cross-country last month",
        "cross-country skiing in winter",
        "back on track with diet",
        "fast-track referral",
        "walks 2 miles daily",
        "drives 30 miles to work",
        "cycling 100 km/week",
        "treadmill stress test normal",
        "Dad is a marathon runner",
        "mother runs marathons",
        "son on the XC team",
        "plans to start running",
        "wants to take up jogging",
        "No running for 6 weeks",
    ],
)
def test_text_runner_false_positives_and_other_subjects_do_not_count(text: str) -> None:
    mentions = text_rules.runner_mentions(text)
    assert not any(m.polarity is Polarity.CURRENT for m in mentions), (text, mentions)


@pytest.mark.parametrize(
    "text",
    [
        "Stopped running in 2019",
        "former runner",
        "used to run cross-country",
        "no longer runs",
        "ex-runner",
        "Denies exercise",
        "Not a runner",
    ],
)
def test_text_former_runner_is_negative_evidence(text: str) -> None:
    mentions = text_rules.runner_mentions(text)
    assert mentions, text
    assert all(m.polarity is Polarity.FORMER for m in mentions), (text, mentions)


def test_text_mileage_needs_a_running_word_nearby() -> None:
    assert not text_rules.runner_mentions("40 mpw")
    assert not text_rules.runner_mentions("cycles 100 miles per week")
    assert text_rules.runner_mentions("runs 40 mpw")


def test_text_denial_in_another_clause_does_not_negate() -> None:
    mentions = text_rules.runner_mentions("Denies chest pain, runs 30 mi/week")
    assert any(m.polarity is Polarity.CURRENT for m in mentions)


def test_text_exercise_activity_value_counts_plain_running() -> None:
    assert not text_rules.runner_mentions("running")
    assert text_rules.runner_mentions("running", activity_context=True)


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("left SI joint pain", Side.LEFT),
        ("R buttock pain", Side.RIGHT),
        ("LBP radiating to R leg", Side.RIGHT),
        ("sciatica down the L thigh", Side.LEFT),
        ("L-sided LBP", Side.LEFT),
        ("L SI pain", Side.LEFT),
        ("lt low back pain", Side.LEFT),
        ("Right-sided sacroiliitis", Side.RIGHT),
        ("bilateral LBP", Side.BILATERAL),
        ("pain on both sides", Side.BILATERAL),
        ("B/L SI joint pain", Side.BILATERAL),
        ("left and right buttock pain", Side.BILATERAL),
        ("central low back pain", Side.CENTRAL),
        ("midline LBP", Side.CENTRAL),
        ("unilateral buttock pain", Side.UNILATERAL),
        ("one-sided low back pain", Side.UNILATERAL),
    ],
)
def test_text_side(text: str, side: Side) -> None:
    assert text_rules.side_from_text(text) is side


@pytest.mark.parametrize(
    "text",
    [
        "L4-L5 disc bulge",
        "L5-S1 facet arthropathy",
        "LBP",
        "L-spine pain",
        "R/O sacral fracture",
        "S1 radiculopathy",
        "pain started right after a long run",
        "left work early",
        "low back pain",
    ],
)
def test_text_side_traps_are_not_a_side(text: str) -> None:
    assert text_rules.side_from_text(text) is None


@pytest.mark.parametrize(
    ("conclusion", "grade", "label"),
    [
        ("sacral stress fracture, Fredericson grade 4", Grade.FRACTURE, "Fredericson grade 4"),
        ("Fredericson 2 stress reaction", Grade.REACTION, "Fredericson grade 2"),
        ("Fredericson grade 4b", Grade.FRACTURE, "Fredericson grade 4b"),
        ("Kaeding-Miller grade III", Grade.FRACTURE, "Kaeding-Miller grade III"),
        ("Kaeding grade II", Grade.REACTION, "Kaeding-Miller grade II"),
        ("marrow edema without fracture line", Grade.REACTION, "no fracture line"),
        ("short vertical fracture line", Grade.FRACTURE, "fracture line"),
        ("sacral stress reaction", Grade.REACTION, "stress reaction"),
        ("normal", None, None),
    ],
)
def test_text_grade(conclusion: str, grade: Grade | None, label: str | None) -> None:
    assert text_rules.grade_from_text(conclusion) == (grade, label)


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("MRI sacrum without contrast", "sacrum"),
        ("MR pelvis", "sacrum"),
        ("Magnetic resonance imaging of sacroiliac joints", "sacrum"),
        # white space as EHRs send it: doubled, a line break, a no-break space
        ("Magnetic  resonance imaging pelvis", "sacrum"),
        ("Magnetic\nresonance imaging pelvis", "sacrum"),
        ("Magnetic\u00a0resonance imaging pelvis", "sacrum"),
        ("Magnetic resonance\u00a0imaging of the knee", "other"),
        ("MRI lumbosacral spine", "sacrum"),
        ("MRI lumbar spine", "lumbar"),
        ("MRI knee", "other"),
        ("MRA pelvis", None),
        ("MRCP", None),
        ("CT pelvis", None),
    ],
)
def test_text_mri_region(text: str, region: str | None) -> None:
    assert text_rules.mri_region_from_text(text) == region


def test_text_sacroiliac_is_not_the_sacrum() -> None:
    assert not text_rules.names_sacrum("sacroiliac joint")
    assert text_rules.names_sacrum("left sacral ala")
