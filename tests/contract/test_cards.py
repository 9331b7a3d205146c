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
    # 14.5: risk factors counted, the story's features apart and uncounted.
    assert "**Risk factors (3):**" in detail
    assert "Low BMI: BMI 18.1, 2025-09-02" in detail
    assert "Previous stress fracture or BSI: Personal history of (healed) stress fracture" in detail
    assert "Menstrual dysfunction: Secondary amenorrhea (ICD-10-CM N91.1), 2025-05-01" in detail
    assert "Female sex (listed, not counted)" in detail
    features = detail.split("**In the story (not counted):**")[1].split("\n")[0]
    assert features.strip() == "SI-joint diagnosis not improving; Pain with impact; Gradual onset"
    assert "Features of the Female Athlete Triad / RED-S are present." in detail
    assert "consider pausing running and impact until assessed" in detail
    assert "X-ray is often normal early; MRI of the sacrum is the test" in detail
    assert "Not a diagnosis" in detail
    assert "References" not in detail  # links only (14.5)
    assert len(detail.split()) <= 150
    codes = {r["code"] for r in card["overrideReasons"]}
    assert codes == {
        "already-imaged",
        "not-a-runner",
        "alternative-diagnosis",
        "pain-bilateral-or-resolved",
        "patient-declined",
    }
    assert all(link["type"] == "absolute" for link in card["links"])


async def test_cards_buttock_pain_proposes_an_mri_of_the_pelvis(
    client_at: ClientFactory,
) -> None:
    """14.5: buttock pain, an info card (no risk factor), and the pelvis (femoral necks) as the
    MRI proposed, with code text only until a pelvis MRI code is verified."""
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
        == "Runner with right buttock pain: consider sacral bone stress injury; consider MRI pelvis (X-ray often normal early)."
    )
    assert "**Risk factors (0):** none found (missing data is not absence)" in card["detail"]
    assert "MRI of the pelvis covers the sacrum and both femoral necks" in card["detail"]
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Draft MRI of pelvis (for clinician review)"
    order = suggestion["actions"][0]["resource"]
    assert order["code"] == {"text": "MRI of pelvis (including sacrum and both femoral necks)"}
    assert order["bodySite"][0]["coding"][0]["code"] == "12921003"


@pytest.fixture
def with_risk_content(tmp_path: Path) -> Path:
    """A copy of the content (all services' folders) with unknown_laterality_policy =
    "with_risk"."""
    root = tmp_path / "cards"
    shutil.copytree(Path(__file__).resolve().parents[2] / "cards", root)
    params = root / "sacral-bsi" / "parameters.toml"
    params.write_text(
        params.read_text().replace(
            'unknown_laterality_policy = "ignore"', 'unknown_laterality_policy = "with_risk"'
        )
    )
    return root


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
    """8.2 path 2b, 14.4: one suggestion records the confirmed Condition and creates the plan
    that addresses it (a suggestion's actions are one transaction: the reference resolves)."""
    mri = report(
        "mri",
        coding(LOINC, "24867-4", "MR Pelvis"),
        effective=days_ago(3),
        conclusion="Left sacral stress reaction. Fredericson grade 2.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    (card,) = await cards_for(client_at, [mri])
    assert card["summary"].startswith("MRI report codes a sacral stress fracture: record the")
    assert "the suggestion records the confirmed diagnosis" in card["detail"]
    (suggestion,) = card["suggestions"]  # no referral for a stress reaction
    assert suggestion["label"] == "Record the diagnosis and create the draft rehab plan"
    condition_created, plan_created = (a["resource"] for a in suggestion["actions"])
    assert condition_created["resourceType"] == "Condition"
    assert [c["code"] for c in condition_created["code"]["coding"]] == ["M48.48XA", "240197007"]
    assert condition_created["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert [b["coding"][0]["code"] for b in condition_created["bodySite"]] == [
        "54735007",
        "7771000",
    ]
    assert condition_created["evidence"] == [{"detail": [{"reference": "DiagnosticReport/mri"}]}]
    assert plan_created["addresses"] == [{"reference": f"Condition/{condition_created['id']}"}]
    assert plan_created["description"].startswith(
        "Left sacral bone stress injury (Fredericson grade 2; stress reaction"
    )


async def test_cards_confirm_first_quotes_the_sentence_and_offers_the_diagnosis(
    client_at: ClientFactory,
) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4", "MR Pelvis"),
        effective=days_ago(3),
        conclusion="Findings: see body of report. Impression: right sacral stress fracture.",
    )
    (card,) = await cards_for(client_at, [mri])
    assert (
        card["summary"]
        == "MRI report describes a sacral stress injury: confirm the diagnosis to get a proposed rehab plan."
    )
    assert "> right sacral stress fracture." in card["detail"]
    assert "DiagnosticReport/mri" in card["detail"]
    (suggestion,) = card["suggestions"]
    assert suggestion["isRecommended"] is False
    (action,) = suggestion["actions"]
    assert action["resource"]["resourceType"] == "Condition"  # the diagnosis, not a plan
    assert action["resource"]["bodySite"][1]["coding"][0]["code"] == "24028007"  # right
