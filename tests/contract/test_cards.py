"""Every kind of card the service renders, over HTTP, checked against the spec's response rules
and for what the clinician must read in it."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import cases
from tests.builders import ICD10CM, LOINC, SNOMED, coding, condition, hook_request, report
from tests.conftest import SERVICE_URL, ClientFactory
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio
TODAY = date(2025, 9, 30)


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


async def cards_for(
    client_at: ClientFactory,
    resources: list[dict[str, Any]],
    day: date = TODAY,
    pid: str = "p1",
    **settings: Any,
) -> list[dict[str, Any]]:
    response = await client_at(day, **settings).post(
        SERVICE_URL, json=hook_request(resources, pid=pid)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_spec_response(body)
    cards: list[dict[str, Any]] = body["cards"]
    return cards


async def test_cards_suspect_detail_says_what_it_is_based_on(client_at: ClientFactory) -> None:
    (card,) = await cards_for(client_at, cases.maya_before_mri(), cases.MAYA_SUSPECT_DAY, "maya")
    detail = card["detail"]
    assert (
        "Sacroiliitis, not elsewhere classified (ICD-10-CM M46.1), left (side from the body site), since 2025-09-02"
        in detail
    )
    assert "Exercise activity = Running (LOINC 73985-4 = LA11836-6), 2025-08-15" in detail
    assert "BMI 18.1 kg/m2, 2025-09-02" in detail
    assert "Secondary amenorrhea (ICD-10-CM N91.1)" in detail
    assert "Features of the Female Athlete Triad / RED-S are present." in detail
    assert "X-ray is often normal early" in detail
    assert "MRI" in detail
    assert "**Based on:**" in detail
    assert "**References:**" in detail
    assert "Not a diagnosis" in detail
    codes = {r["code"] for r in card["overrideReasons"]}
    assert codes == {
        "already-imaged",
        "not-a-runner",
        "alternative-diagnosis",
        "pain-bilateral-or-resolved",
        "patient-declined",
    }
    assert all(link["type"] == "absolute" for link in card["links"])


async def test_cards_suspect_info_without_risks_uses_the_plain_summary(
    client_at: ClientFactory,
) -> None:
    record = cases.runner_with(
        condition(
            "lbp",
            coding(SNOMED, "279043006", "Buttock pain"),
            text="right buttock pain",
            onset=days_ago(10),
        )
    )
    (card,) = await cards_for(client_at, record)
    assert card["indicator"] == "info"
    assert (
        card["summary"]
        == "Runner with right buttock pain: consider sacral bone stress injury; MRI of sacrum if suspected (X-ray often normal early)."
    )
    assert "none found (missing data is not absence)" in card["detail"]


@pytest.fixture
def with_risk_content(tmp_path: Path) -> Path:
    """A copy of the content with unknown_laterality_policy = "with_risk"."""
    folder = tmp_path / "content"
    shutil.copytree(Path(__file__).resolve().parents[2] / "cards" / "sacral-bsi", folder)
    params = folder / "parameters.toml"
    params.write_text(
        params.read_text().replace(
            'unknown_laterality_policy = "ignore"', 'unknown_laterality_policy = "with_risk"'
        )
    )
    return folder


async def test_cards_suspect_unknown_side_under_with_risk_policy_says_side_not_recorded(
    client_at: ClientFactory, with_risk_content: Path
) -> None:
    record = cases.runner_with(
        condition("lbp", coding(ICD10CM, "M54.50"), onset=days_ago(15)),
        condition("an", coding(ICD10CM, "F50.01"), onset="2019-01-01"),
        condition("vd", coding(ICD10CM, "E55.9"), onset=days_ago(40)),
    )
    (card,) = await cards_for(client_at, record, content_dir=with_risk_content)
    assert card["summary"].startswith(
        "Runner, low back pain, side not recorded + 2 BSI risk factors"
    )


async def test_cards_confirmed_without_report_says_report_not_found(
    client_at: ClientFactory,
) -> None:
    record = cases.runner_with(condition("bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(5)))
    (card,) = await cards_for(client_at, record)
    assert card["summary"].startswith("Confirmed sacral bone stress injury")
    assert "MRI report not found in record" in card["detail"]
    assert [s["label"] for s in card["suggestions"]] == ["Create draft rehab plan"]
    assert card["selectionBehavior"] == "at-most-one"


async def test_cards_confirmed_from_coded_report_suggests_recording_the_diagnosis(
    client_at: ClientFactory,
) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4", "MR Pelvis"),
        effective=days_ago(3),
        conclusion="Left sacral stress reaction. Fredericson grade 2.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    (card,) = await cards_for(client_at, [mri])
    assert card["summary"].startswith("MRI report codes a sacral stress fracture")
    assert "consider recording the diagnosis" in card["detail"]
    plan = card["suggestions"][0]["actions"][0]["resource"]
    assert "addresses" not in plan
    assert plan["description"].startswith(
        "Left sacral bone stress injury (Fredericson grade 2; stress reaction"
    )
    assert len(card["suggestions"]) == 1  # no referral for a stress reaction


async def test_cards_confirm_first_card_has_no_plan(client_at: ClientFactory) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4", "MR Pelvis"),
        effective=days_ago(3),
        conclusion="Impression: right sacral stress fracture.",
    )
    (card,) = await cards_for(client_at, [mri])
    assert (
        card["summary"]
        == "MRI report describes a sacral stress injury: confirm the diagnosis to get a proposed rehab plan."
    )
    assert "suggestions" not in card
    assert "DiagnosticReport/mri" in card["detail"]
