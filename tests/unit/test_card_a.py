"""Card A, shorter and more useful (brief 14.5): ~150 words, risk factors counted apart from
symptoms, no second MRI, the pelvis for buttock or hip pain, adolescents, pregnancy, postpartum
and lactation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cds_service.clinical.facts import RiskCategory
from cds_service.clinical.sacral_bsi import NoCard, Suspicion
from cds_service.platform import wire
from cds_service.services.sacral_bsi.content import Content
from cds_service.services.sacral_bsi.render import RenderContext, render
from tests.builders import (
    ICD10CM,
    LOINC,
    SNOMED,
    coding,
    concept,
    condition,
    observation,
    patient,
    report,
    running_activity,
    service_request,
)
from tests.conftest import assess_case

TODAY = date(2026, 11, 30)
CPT = "http://www.ama-assn.org/go/cpt"


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def left_lbp(**kw: Any) -> dict[str, Any]:
    return condition("lbp", coding(ICD10CM, "M54.42"), onset=kw.pop("onset", days_ago(25)), **kw)


def runner(*extra: dict[str, Any], gender: str = "male", birth: str = "1990-01-01") -> list[Any]:
    return [patient("p1", gender, birth), running_activity("run", days_ago(60)), *extra]


def suspect(records: list[dict[str, Any]], content: Content) -> Suspicion:
    result = assess_case(records, content, TODAY)
    assert isinstance(result, Suspicion), result
    return result


def card(records: list[dict[str, Any]], content: Content) -> wire.Card:
    ctx = RenderContext("p1", None, TODAY, datetime(2026, 11, 30, tzinfo=UTC), lambda: "u")
    (only,) = render(suspect(records, content), content, ctx).cards
    return only


def words(c: wire.Card) -> int:
    return len((c.detail or "").split())


# ---------------------------------------------------------------------------- length and counting
def everything() -> list[dict[str, Any]]:
    """Every risk factor, every feature and every extra line at once: the longest card."""
    return runner(
        condition(
            "si",
            coding(ICD10CM, "M46.1", "Sacroiliitis, not elsewhere classified"),
            text="left sacroiliitis",
            onset=days_ago(40),
            notes=[
                "Pain with hopping, gradual onset, no injury; increased mileage from 20 to 40 mi"
            ],
        ),
        condition("sfx", coding(ICD10CM, "Z87.312"), recorded="2023-01-01"),
        condition("amen", coding(ICD10CM, "N91.1"), onset=days_ago(100)),
        condition("an", coding(ICD10CM, "F50.01"), onset="2020-01-01"),
        condition("op", coding(ICD10CM, "M85.80"), onset="2024-01-01"),
        condition("vd", coding(ICD10CM, "E55.9"), onset=days_ago(50)),
        condition("lact", coding(SNOMED, "169750002"), recorded=days_ago(90)),
        condition("preg", coding(SNOMED, "77386006"), recorded=days_ago(30)),
        observation("bmi", "39156-5", value=16.9, unit="kg/m2", effective=days_ago(20)),
        report(
            "mri",
            coding(LOINC, "24867-4"),
            effective=days_ago(10),
            conclusion="Possible early stress reaction of the left sacral ala.",
        ),
        gender="female",
        birth="2009-06-01",
    )


def test_card_a_detail_is_at_most_about_150_words_even_with_everything(content: Content) -> None:
    c = card(everything(), content)
    assert words(c) <= 150, c.detail
    detail = c.detail or ""
    for line in ("spondylolysis", "pelvic girdle pain", "read as uncertain", "Athlete Triad"):
        assert line in detail, line  # the compact form keeps every line


def test_card_a_lists_symptoms_apart_and_does_not_count_them(content: Content) -> None:
    pain = left_lbp(notes=["Gradual onset, no injury. Pain with hopping on the left."])
    s = suspect(runner(pain), content)
    assert s.counted_risks == 0
    assert s.indicator == "info"  # symptoms alone no longer raise the indicator
    assert {r.category for r in s.features} == {
        RiskCategory.INSIDIOUS_ONSET,
        RiskCategory.PAIN_WITH_IMPACT,
    }
    detail = card(runner(pain), content).detail or ""
    assert "**Risk factors (0):** none found" in detail
    assert "**In the story (not counted):**" in detail


def test_card_a_says_consider_pausing_running_and_impact(content: Content) -> None:
    assert "consider pausing running and impact until assessed" in (
        card(runner(left_lbp()), content).detail or ""
    )


def test_card_a_has_no_reference_list_only_links(content: Content) -> None:
    c = card(runner(left_lbp()), content)
    assert "References" not in (c.detail or "")
    assert "J Orthop Sports Phys Ther" not in (c.detail or "")
    assert any("doi.org/10.2519/jospt.2014.5334" in link.url for link in c.links)


# ---------------------------------------------------------------------------- MRI under way
@pytest.mark.parametrize("status", ["draft", "active", "on-hold"])
def test_card_a_mri_ordered_since_the_pain_is_not_ordered_again(
    content: Content, status: str
) -> None:
    order = service_request(
        "sr", coding(SNOMED, "388321000119101"), status=status, authored=days_ago(2)
    )
    c = card(runner(left_lbp(), order), content)
    assert c.suggestions == ()
    assert c.selectionBehavior is None
    assert c.summary.endswith("MRI ordered, result pending.")
    assert f"**MRI ordered {days_ago(2)}, result pending**" in (c.detail or "")


@pytest.mark.parametrize(
    "code",
    [
        coding(CPT, "72195"),  # MRI pelvis without contrast
        coding(CPT, "72148"),  # MRI lumbar spine without contrast
        coding(LOINC, "24968-0"),  # MR lumbar spine
        coding(SNOMED, "396161000119106"),  # MRI pelvis without contrast
    ],
)
def test_card_a_mri_of_lumbar_spine_sacrum_or_pelvis_counts(
    content: Content, code: dict[str, str]
) -> None:
    order = service_request("sr", code, authored=days_ago(2))
    assert suspect(runner(left_lbp(), order), content).mri_under_way is not None


def test_card_a_our_own_accepted_draft_counts_as_ordered(content: Content) -> None:
    """The suggestion accepted into the chart: status draft, intent proposal."""
    ours = service_request(
        "sr", text="MRI of sacrum", status="draft", intent="proposal", authored=days_ago(1)
    )
    assert suspect(runner(left_lbp(), ours), content).mri_under_way is not None


@pytest.mark.parametrize("text", ["MRI SIJs", "MRI L/S spine", "MR lumbosacral spine w/o"])
def test_card_a_mri_order_written_briefly_counts(content: Content, text: str) -> None:
    order = service_request("sr", text=text, authored=days_ago(1))
    assert suspect(runner(left_lbp(), order), content).mri_under_way is not None


def test_card_a_mri_order_by_text_alone_counts(content: Content) -> None:
    order = service_request("sr", text="MRI sacrum/SI joints w/o contrast", authored=days_ago(1))
    assert suspect(runner(left_lbp(), order), content).mri_under_way is not None


@pytest.mark.parametrize(
    ("order", "why"),
    [
        (service_request("sr", coding(CPT, "72195"), status="completed"), "done"),
        (service_request("sr", coding(CPT, "72195"), status="revoked"), "cancelled"),
        (service_request("sr", coding(CPT, "72195"), authored="2025-01-01"), "before the pain"),
        (service_request("sr", text="MRI knee", authored="2026-11-28"), "another region"),
        (service_request("sr", text="X-ray pelvis", authored="2026-11-28"), "not an MRI"),
    ],
)
def test_card_a_other_orders_do_not_stop_the_proposal(
    content: Content, order: dict[str, Any], why: str
) -> None:
    c = card(runner(left_lbp(), order), content)
    assert len(c.suggestions) == 1, why


@pytest.mark.parametrize("status", ["registered", "partial", "preliminary"])
def test_card_a_mri_read_only_preliminarily_is_under_way(content: Content, status: str) -> None:
    pending = report(
        "mri",
        coding(LOINC, "24867-4"),
        status=status,
        effective=days_ago(1),
        conclusion="Left sacral stress fracture.",
    )
    s = suspect(runner(left_lbp(), pending), content)
    assert s.mri_under_way is not None
    assert s.mri_under_way.status == status


# ---------------------------------------------------------------------------- pelvis or sacrum
@pytest.mark.parametrize(
    "pain",
    [
        condition("bt", coding(SNOMED, "279043006"), text="left buttock pain", onset=days_ago(9)),
        condition(
            "si",
            coding(SNOMED, "202487003"),
            text="left SI joint pain radiating to the groin",
            onset=days_ago(9),
        ),
        condition(
            "lbp",
            coding(ICD10CM, "M54.42"),
            onset=days_ago(9),
            body_sites=[concept(coding(SNOMED, "24136001", "Hip joint structure"))],
        ),
        condition(
            "lbp", coding(ICD10CM, "M54.42"), onset=days_ago(9), notes=["pain in the left hip"]
        ),
    ],
)
def test_card_a_buttock_hip_or_groin_pain_proposes_mri_pelvis(
    content: Content, pain: dict[str, Any]
) -> None:
    s = suspect(runner(pain), content)
    assert s.mri == "pelvis"


@pytest.mark.parametrize(
    "pain",
    [
        condition("lbp", coding(ICD10CM, "M54.42"), onset=days_ago(9)),
        condition("si", coding(SNOMED, "202487003"), text="left SI joint pain", onset=days_ago(9)),
        condition(
            "lbp", coding(ICD10CM, "M54.42"), onset=days_ago(9), notes=["no hip or groin pain"]
        ),
        condition(
            "lbp", coding(ICD10CM, "M54.42"), onset=days_ago(9), notes=["worse with hip hinge"]
        ),
    ],
)
def test_card_a_low_back_or_si_pain_keeps_the_sacrum(
    content: Content, pain: dict[str, Any]
) -> None:
    assert suspect(runner(pain), content).mri == "sacrum"


@pytest.mark.parametrize(
    "hip",
    [
        condition("hip", coding(ICD10CM, "M25.552", "Pain in left hip"), onset=days_ago(15)),
        condition("hip", coding(SNOMED, "49218002"), onset=days_ago(15)),
        condition("groin", text="L groin pain", onset=days_ago(15)),
        # the hip named only in a coding's display, whatever the text or first coding says
        condition(
            "hip",
            coding(SNOMED, "x-hip", "Pain of left hip joint"),
            text="L hip",
            onset=days_ago(15),
        ),
        condition(
            "hip",
            coding("urn:oid:1.2.3", "77", "Pain in right hip"),
            text="Arthralgia",
            onset=days_ago(15),
        ),
        condition(
            "hip",
            coding(ICD10CM, "M25.50", "Pain in unspecified joint"),
            coding(SNOMED, "x-hip", "Pain of left hip joint"),
            onset=days_ago(15),
        ),
    ],
)
def test_card_a_hip_or_groin_pain_recorded_apart_proposes_mri_pelvis(
    content: Content, hip: dict[str, Any]
) -> None:
    assert suspect(runner(left_lbp(), hip), content).mri == "pelvis"


def test_card_a_old_hip_pain_does_not_change_the_proposal(content: Content) -> None:
    hip = condition("hip", coding(ICD10CM, "M25.552"), onset="2024-01-01")
    assert suspect(runner(left_lbp(), hip), content).mri == "sacrum"


# ---------------------------------------------------------------------------- already confirmed
def test_card_a_quiet_when_this_pain_already_has_its_sacral_bsi_diagnosis(
    content: Content,
) -> None:
    """7.5.1: a confirmed sacral BSI recorded after the pain began, too old for a plan (14.3):
    no card suggesting the diagnosis the chart already holds."""
    pain = left_lbp(onset=days_ago(260))
    bsi = condition("bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(250))
    result = assess_case(runner(pain, bsi), content, TODAY)
    assert isinstance(result, NoCard)


def test_card_a_new_pain_after_an_old_confirmed_bsi_still_speaks(content: Content) -> None:
    pain = left_lbp(onset=days_ago(20))
    bsi = condition("bsi", coding(ICD10CM, "M48.48XA"), recorded=days_ago(300))
    result = suspect(runner(pain, bsi), content)
    assert RiskCategory.PRIOR_BSI in {r.category for r in result.risks}


# ---------------------------------------------------------------------------- adolescents
@pytest.mark.parametrize(("birth", "line"), [("2009-01-01", True), ("2008-11-30", False)])
def test_card_a_under_18_mentions_l5_spondylolysis(
    content: Content, birth: str, line: bool
) -> None:
    """17 years 11 months: the line; 18 today: not."""
    c = card(runner(left_lbp(), birth=birth), content)
    assert ("L5 spondylolysis" in (c.detail or "")) is line


# ---------------------------------------------------------------------------- pregnancy
@pytest.mark.parametrize(
    "evidence",
    [
        condition("preg", coding(SNOMED, "77386006"), recorded=days_ago(60)),
        condition("preg", coding(ICD10CM, "Z33.1"), recorded=days_ago(60)),
        condition("preg", coding(ICD10CM, "Z3A.20"), recorded=days_ago(20)),
        condition("preg", coding(ICD10CM, "Z34.82"), recorded=days_ago(20)),
        condition("preg", coding(ICD10CM, "O09.892"), recorded=days_ago(20)),
        condition("preg", coding(SNOMED, "72892002"), recorded=days_ago(20)),
        observation(
            "ps", "82810-3", value_code="LA15173-0", value_display="Pregnant", effective=days_ago(5)
        ),
        observation(
            "note",
            "11348-0",
            value_string="Currently pregnant, 20 weeks gestation.",
            effective=days_ago(5),
        ),
    ],
)
def test_card_a_pregnancy_still_shows_with_its_line(
    content: Content, evidence: dict[str, Any]
) -> None:
    c = card(runner(left_lbp(), evidence, gender="female"), content)
    assert "pelvic girdle pain is common in pregnancy" in (c.detail or "")
    assert "MRI without contrast is the imaging of choice" in (c.detail or "")
    order = c.suggestions[0].actions[0].resource
    assert order is not None
    assert "MRI without contrast" in order["note"][0]["text"]


@pytest.mark.parametrize(
    "evidence",
    [
        condition("preg", coding(SNOMED, "77386006"), recorded=days_ago(400)),  # long over
        condition(
            "preg",
            coding(SNOMED, "77386006"),
            clinical="resolved",
            recorded=days_ago(200),
            abatement=days_ago(20),
        ),
        condition("preg", coding(SNOMED, "77386006"), verification="refuted", recorded=days_ago(5)),
        observation("note", "11348-0", value_string="Not pregnant.", effective=days_ago(5)),
        observation("note", "11348-0", value_string="Wife is pregnant.", effective=days_ago(5)),
    ],
)
def test_card_a_no_pregnancy_line_when_not_pregnant_now(
    content: Content, evidence: dict[str, Any]
) -> None:
    assert suspect(runner(left_lbp(), evidence, gender="female"), content).pregnancy is None


def test_card_a_pregnancy_code_on_a_mans_record_is_a_data_error(content: Content) -> None:
    preg = condition("preg", coding(ICD10CM, "Z33.1"), recorded=days_ago(20))
    assert suspect(runner(left_lbp(), preg, gender="male"), content).pregnancy is None


def test_card_a_newer_not_pregnant_status_wins(content: Content) -> None:
    was = condition("preg", coding(SNOMED, "77386006"), recorded=days_ago(100))
    now = observation("ps", "82810-3", value_code="LA26683-5", effective=days_ago(3))
    assert suspect(runner(left_lbp(), was, now, gender="female"), content).pregnancy is None


# ---------------------------------------------------------------------------- postpartum, lactation
@pytest.mark.parametrize(
    "evidence",
    [
        condition("lact", coding(SNOMED, "169750002"), recorded=days_ago(90)),
        condition("lact", coding(ICD10CM, "Z39.1"), recorded=days_ago(90)),
        condition("pp", coding(ICD10CM, "Z39.2"), recorded=days_ago(200)),
        observation("bf", "63895-7", value_code="LA29252-6", effective=days_ago(30)),
        condition(
            "preg",
            coding(SNOMED, "77386006"),
            clinical="resolved",
            recorded=days_ago(400),
            abatement=days_ago(150),
        ),
        observation(
            "note",
            "11348-0",
            value_string="4 months postpartum, breastfeeding.",
            effective=days_ago(10),
        ),
    ],
)
def test_card_a_postpartum_or_lactation_is_a_counted_risk_factor(
    content: Content, evidence: dict[str, Any]
) -> None:
    s = suspect(runner(left_lbp(), evidence, gender="female"), content)
    assert RiskCategory.POSTPARTUM_LACTATION in {r.category for r in s.risks}
    assert s.counted_risks == 1
    assert s.indicator == "warning"


@pytest.mark.parametrize(
    "evidence",
    [
        condition("pp", coding(ICD10CM, "Z39.2"), clinical="resolved", recorded=days_ago(500)),
        condition(
            "preg",
            coding(SNOMED, "77386006"),
            clinical="resolved",
            recorded=days_ago(700),
            abatement=days_ago(400),
        ),
        observation("bf", "63895-7", value_code="LA29253-4", effective=days_ago(30)),
        observation("note", "11348-0", value_string="Not breastfeeding.", effective=days_ago(10)),
    ],
)
def test_card_a_postpartum_beyond_12_months_or_not_breastfeeding_is_not(
    content: Content, evidence: dict[str, Any]
) -> None:
    s = suspect(runner(left_lbp(), evidence, gender="female"), content)
    assert RiskCategory.POSTPARTUM_LACTATION not in {r.category for r in s.risks}


def test_card_a_previous_bsi_from_a_coded_mri_names_the_study_not_a_quote(
    content: Content,
) -> None:
    """A sacral stress fracture coded on an MRI a year before this pain, its impression silent:
    the card names the study (no quotation marks: nothing was quoted from the report)."""
    old = report(
        "mri-old",
        coding(SNOMED, "388321000119101", "MRI of sacrum"),
        text="MR Sacrum",
        effective=days_ago(400),
        conclusion="See coded findings.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    shown = card(runner(left_lbp(), old), content)
    assert shown.detail is not None
    assert "MR Sacrum, " in shown.detail
    assert "\u201cMR Sacrum\u201d" not in shown.detail
