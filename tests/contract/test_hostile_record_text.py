"""Record text written to hurt: long runs that make naive patterns backtrack, values no person
has, and markdown or HTML meant to take over the card. Every call answers 200 with a sane card
or none; nothing from the record reaches the card as markup. (Pathological inputs that made
the reading quadratic or worse would make these tests run for minutes: they run in well under a
second each. Speed itself is measured in bench/, not asserted here.)"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest

from tests.builders import (
    ICD10CM,
    LOINC,
    coding,
    condition,
    hook_request,
    observation,
    patient,
    report,
    running_activity,
    service_request,
)
from tests.conftest import SERVICE_URL, ClientFactory
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio
TODAY = date(2026, 11, 30)
BIG = 100_000


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def runner(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [patient("p1", "female", "1995-01-01"), running_activity("run", days_ago(60)), *extra]


def left_lbp(**kw: Any) -> dict[str, Any]:
    return condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(20), **kw)


async def cards(client_at: ClientFactory, resources: list[dict[str, Any]]) -> list[Any]:
    response = await client_at(TODAY).post(SERVICE_URL, json=hook_request(resources))
    assert response.status_code == 200, response.text
    body = response.json()
    assert_spec_response(body)
    found: list[Any] = body["cards"]
    return found


def mri(conclusion: str) -> dict[str, Any]:
    return report("mri", coding(LOINC, "24867-4"), effective=days_ago(5), conclusion=conclusion)


@pytest.mark.parametrize(
    "conclusion",
    [
        "Impression: sacral stress fracture " + "-" * BIG,
        "Impression: sacral stress fracture " + "," * BIG,
        "sacral stress fracture" + "\n " * (BIG // 2) + "x",
        "sacral " + "stress fracture, " * (BIG // 17),
        "sacral stress fracture tumour " + "-" * BIG,
        "(" * (BIG // 2) + "sacral stress fracture" + ")" * (BIG // 2),
        "sacral stress fracture " + "tumour " * (BIG // 7),
        "left sacral ala marrow oedema " * (BIG // 30),
        "no " * (BIG // 3) + "sacral stress fracture",
        "1. " * (BIG // 3),
    ],
    ids=lambda c: repr(c[:30]),
)
async def test_hostile_conclusion_is_read_in_bounded_time(
    client_at: ClientFactory, conclusion: str
) -> None:
    await cards(client_at, runner(left_lbp(), mri(conclusion)))


@pytest.mark.parametrize(
    "resource",
    [
        condition("lbp", coding(ICD10CM, "M54.42"), onset_string="5" + " " * BIG + "!"),
        condition("lbp", coding(ICD10CM, "M54.42"), onset_string="a" + " " * BIG),
        left_lbp(notes=["left" + " " * BIG + "x"]),
        left_lbp(notes=[" " * BIG + "runner"]),
        left_lbp(notes=[" " * BIG + "osteopenia"]),
        left_lbp(notes=["mother " + "runner " * (BIG // 7)]),
        left_lbp(notes=["no osteopenia " * (BIG // 14)]),
        left_lbp(notes=["Stopped running because of " + "-" * BIG]),
    ],
    ids=[
        "onset digits",
        "onset spaces",
        "side spaces",
        "runner",
        "osteopenia",
        "mother",
        "no",
        "stopped",
    ],
)
async def test_hostile_condition_text_is_read_in_bounded_time(
    client_at: ClientFactory, resource: dict[str, Any]
) -> None:
    await cards(client_at, runner(resource))


async def test_hostile_running_distance_text_is_read_in_bounded_time(
    client_at: ClientFactory,
) -> None:
    obs = observation(
        "d", "x-1", system="urn:oid:1.2.3", value=10, unit="km", effective=days_ago(3)
    )
    obs["code"]["text"] = "run " * (BIG // 4)
    await cards(client_at, [patient("p1", "male", "1990-01-01"), left_lbp(), obs])


@pytest.mark.parametrize("value", ["NaN", "-nan", "inf"])
async def test_hostile_onset_age_not_a_number_is_ignored(
    client_at: ClientFactory, value: str
) -> None:
    pain = condition("lbp", coding(ICD10CM, "M54.42"), recorded=days_ago(5))
    pain["onsetAge"] = {"value": value, "unit": "a"}
    (card,) = await cards(client_at, runner(pain))
    assert "since " + days_ago(5) in card["detail"]  # falls back to the recorded date


@pytest.mark.parametrize("value", [1e-200, 0.001, 0.0, -3, 1e9])
async def test_hostile_bmi_no_person_has_is_not_a_risk_factor(
    client_at: ClientFactory, value: float
) -> None:
    teen = [
        patient("p1", "female", "2010-06-15"),
        running_activity("run", days_ago(60)),
        left_lbp(),
        observation("bmi", "39156-5", value=value, unit="kg/m2", effective=days_ago(5)),
    ]
    (card,) = await cards(client_at, teen)
    assert "Low BMI" not in card["detail"]


async def test_hostile_ids_and_displays_reach_the_card_inert(client_at: ClientFactory) -> None:
    payload = "x)[click](javascript:alert(1))<img src=x onerror=alert(1)>#"
    run = running_activity("run", days_ago(60))
    run["valueCodeableConcept"]["coding"][0]["display"] = (
        "[click](javascript:alert(1))\n# Heading\n---"
    )
    pain = left_lbp()
    pain["code"]["text"] = "~~struck~~ see http://evil.example/login " + "A" * 5_000
    order = service_request("sr", text="MRI pelvis " + "B" * BIG, authored=days_ago(1))
    pending = report(payload, coding(LOINC, "24867-4"), status="preliminary", effective=days_ago(1))
    (card,) = await cards(
        client_at, [patient("p1", "female", "1995-01-01"), run, pain, order, pending]
    )
    detail = card["detail"]
    assert not re.search(r"(?<!\\)\]\(", detail)  # no link: every ] is escaped
    assert "<img" not in detail
    assert "\n#" not in detail
    assert "~~" not in detail
    assert "http://evil" not in detail
    assert len(detail.split()) <= 150
    assert len(detail) < 3_000


async def test_hostile_many_pains_are_counted_not_all_listed(client_at: ClientFactory) -> None:
    pains = [
        condition(f"lbp{n}", coding(ICD10CM, "M54.42"), onset=days_ago(10 + n)) for n in range(40)
    ]
    (card,) = await cards(client_at, runner(*pains))
    assert "and 37 more" in card["detail"]
    assert len(card["detail"].split()) <= 150


async def test_hostile_invisible_characters_do_not_reach_the_card(client_at: ClientFactory) -> None:
    """Bidi controls and zero-width marks in record text could turn the rest of a card line
    around or hide words: they are dropped, the words kept."""
    pain = left_lbp()
    pain["code"]["text"] = "Left \u202eSI joint pain\u202c \u200bsince\u2066 March\u2069\ufeff"
    (card,) = await cards(client_at, runner(pain))
    detail = card["detail"]
    for mark in ("\u202e", "\u202c", "\u2066", "\u2069", "\ufeff"):
        assert mark not in detail
    assert "Left SI joint pain since March" in detail
