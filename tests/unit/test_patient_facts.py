"""FHIR resources -> facts: code systems, laterality encodings, statuses, MRI report recognition."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.clinical.facts import (
    ClinicalStatus,
    ImagingRegion,
    MeasureKind,
    PainGroup,
    Side,
    SideSource,
    Verification,
)
from cds_service.services.sacral_bsi.content import Content
from tests.builders import (
    BILATERAL,
    ICD10CM,
    ICD10CM_OID,
    LEFT,
    LOINC,
    RIGHT,
    SI_JOINT,
    SNOMED,
    UNILATERAL,
    coding,
    concept,
    condition,
    observation,
    report,
)
from tests.conftest import facts_of


def pain_of(
    resource: dict[str, Any], content: Content
) -> tuple[PainGroup, Side, SideSource | None]:
    facts = facts_of([resource], content)
    assert len(facts.pains) == 1, facts.pains
    p = facts.pains[0]
    return p.group, p.side, p.side_source


@pytest.mark.parametrize(
    ("codes", "group"),
    [
        ([coding(ICD10CM, "M54.50")], PainGroup.LOW_BACK),
        ([coding(ICD10CM, "M54.5")], PainGroup.LOW_BACK),
        ([coding(ICD10CM, "M5459")], PainGroup.LOW_BACK),
        ([coding(ICD10CM, "m54.51")], PainGroup.LOW_BACK),
        ([coding(ICD10CM_OID, "M54.50")], PainGroup.LOW_BACK),
        ([coding(SNOMED, "279039007")], PainGroup.LOW_BACK),
        ([coding(SNOMED, "278862001")], PainGroup.LOW_BACK),
        ([coding(SNOMED, "278860009")], PainGroup.LOW_BACK),
        ([coding(SNOMED, "279040009")], PainGroup.LOW_BACK),
        ([coding(SNOMED, "161891005")], PainGroup.LOW_BACK),
        ([coding(ICD10CM, "M54.40")], PainGroup.LOW_BACK_SCIATICA),
        ([coding(ICD10CM, "M54.30")], PainGroup.SCIATICA),
        ([coding(SNOMED, "279043006")], PainGroup.BUTTOCK),
        ([coding(ICD10CM, "M53.3")], PainGroup.SI_JOINT),
        ([coding(ICD10CM, "M46.1")], PainGroup.SI_JOINT),
        ([coding(ICD10CM, "M53.2X8")], PainGroup.SI_JOINT),
        ([coding(ICD10CM, "S33.6XXA")], PainGroup.SI_JOINT),
        ([coding(ICD10CM, "S33.6XXD")], PainGroup.SI_JOINT),
        ([coding(SNOMED, "202487003")], PainGroup.SI_JOINT),
        ([coding(SNOMED, "202805003")], PainGroup.SI_JOINT),
        ([coding(SNOMED, "29885006")], PainGroup.SI_JOINT),
        ([coding(SNOMED, "55146009")], PainGroup.SI_JOINT),
        # every coding is checked: a local code first, then ICD-10-CM
        (
            [coding("http://ehr.example/codes", "LBP1"), coding(ICD10CM, "M54.50")],
            PainGroup.LOW_BACK,
        ),
    ],
)
def test_facts_qualifying_pain_codes(
    content: Content, codes: list[dict[str, str]], group: PainGroup
) -> None:
    assert pain_of(condition("c", *codes, onset="2025-09-01"), content)[0] is group


@pytest.mark.parametrize(
    "codes",
    [
        [coding("http://ehr.example/codes", "M54.50", "Low back pain")],  # right code, wrong system
        [coding(ICD10CM, "M54.2", "Cervicalgia")],
        [coding(ICD10CM, "M51.26", "Other intervertebral disc displacement, lumbar")],
        [coding(SNOMED, "279039007x")],
    ],
)
def test_facts_non_qualifying_codes(content: Content, codes: list[dict[str, str]]) -> None:
    assert facts_of([condition("c", *codes, onset="2025-09-01")], content).pains == ()


def test_facts_display_is_never_matched(content: Content) -> None:
    lbp = condition(
        "c",
        coding("http://ehr.example/codes", "X1", "Low back pain"),
        text="Low back pain",
        onset="2025-09-01",
    )
    assert facts_of([lbp], content).pains == ()


@pytest.mark.parametrize(
    ("codes", "side"),
    [
        ([coding(ICD10CM, "M54.41")], Side.RIGHT),
        ([coding(ICD10CM, "M54.42")], Side.LEFT),
        ([coding(ICD10CM, "M5442")], Side.LEFT),
        ([coding(ICD10CM, "M54.31")], Side.RIGHT),
        ([coding(ICD10CM, "M54.32")], Side.LEFT),
        ([coding(SNOMED, "279039007:272741003=7771000")], Side.LEFT),
        (
            [
                coding(
                    SNOMED, "279043006 |Buttock pain| : 272741003 |Laterality| = 24028007 |Right|"
                )
            ],
            Side.RIGHT,
        ),
    ],
)
def test_facts_side_from_code(content: Content, codes: list[dict[str, str]], side: Side) -> None:
    assert pain_of(condition("c", *codes, onset="2025-09-01"), content)[1:] == (
        side,
        SideSource.CODE,
    )


def test_facts_code_side_wins_over_body_site(content: Content) -> None:
    c = condition(
        "c",
        coding(ICD10CM, "M54.42"),
        onset="2025-09-01",
        body_sites=[concept(coding(SNOMED, RIGHT))],
    )
    assert pain_of(c, content)[1] is Side.LEFT


@pytest.mark.parametrize(
    ("sites", "side"),
    [
        ([concept(coding(SNOMED, SI_JOINT)), concept(coding(SNOMED, LEFT))], Side.LEFT),
        ([concept(coding(SNOMED, SI_JOINT), coding(SNOMED, RIGHT))], Side.RIGHT),
        ([concept(coding(SNOMED, BILATERAL))], Side.BILATERAL),
        ([concept(coding(SNOMED, UNILATERAL))], Side.UNILATERAL),
        ([concept(coding(SNOMED, f"{SI_JOINT}:272741003={LEFT}"))], Side.LEFT),
        ([concept(coding(SNOMED, LEFT)), concept(coding(SNOMED, RIGHT))], Side.BILATERAL),
        ([concept(text="Right sacroiliac joint")], Side.RIGHT),
        ([concept(coding(SNOMED, "123456789", "Structure of left sacroiliac joint"))], Side.LEFT),
        (
            [
                {
                    "coding": [{"system": SNOMED, "code": SI_JOINT}],
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier",
                            "valueCodeableConcept": concept(coding(SNOMED, LEFT)),
                        }
                    ],
                }
            ],
            Side.LEFT,
        ),
    ],
)
def test_facts_side_from_body_site(
    content: Content, sites: list[dict[str, Any]], side: Side
) -> None:
    c = condition("c", coding(SNOMED, "202487003"), onset="2025-09-01", body_sites=sites)
    assert pain_of(c, content)[1:] == (side, SideSource.BODY_SITE)


def test_facts_side_from_code_text_then_note(content: Content) -> None:
    by_text = condition("c", coding(ICD10CM, "M53.3"), text="L SI joint pain", onset="2025-09-01")
    assert pain_of(by_text, content)[1:] == (Side.LEFT, SideSource.TEXT)
    by_display = condition(
        "c", coding(ICD10CM, "M53.3", "Right sacrococcygeal disorder"), onset="2025-09-01"
    )
    assert pain_of(by_display, content)[1:] == (Side.RIGHT, SideSource.TEXT)
    by_note = condition(
        "c",
        coding(ICD10CM, "M54.50"),
        onset="2025-09-01",
        notes=["pain in the R buttock, L5-S1 normal"],
    )
    assert pain_of(by_note, content)[1:] == (Side.RIGHT, SideSource.NOTE)


def test_facts_no_side_anywhere_is_unknown(content: Content) -> None:
    c = condition(
        "c",
        coding(ICD10CM, "M54.50"),
        text="LBP",
        onset="2025-09-01",
        notes=["L4-L5 tender, R/O fracture"],
    )
    assert pain_of(c, content)[1:] == (Side.UNKNOWN, None)


def test_facts_laterality_extension_on_condition(content: Content) -> None:
    c = condition("c", coding(SNOMED, "279043006"), onset="2025-09-01")
    c["extension"] = [
        {
            "url": "http://example.org/fhir/StructureDefinition/laterality",
            "valueCodeableConcept": concept(coding(SNOMED, RIGHT)),
        }
    ]
    assert pain_of(c, content)[1:] == (Side.RIGHT, SideSource.BODY_SITE)


@pytest.mark.parametrize(
    ("clinical", "verification", "expected"),
    [
        ("active", "confirmed", (ClinicalStatus.ACTIVE, Verification.CONFIRMED)),
        ("recurrence", "provisional", (ClinicalStatus.RECURRENCE, Verification.PROVISIONAL)),
        ("relapse", "differential", (ClinicalStatus.RELAPSE, Verification.DIFFERENTIAL)),
        ("remission", "unconfirmed", (ClinicalStatus.REMISSION, Verification.UNCONFIRMED)),
        (None, None, (ClinicalStatus.MISSING, Verification.MISSING)),
    ],
)
def test_facts_statuses(
    content: Content,
    clinical: str | None,
    verification: str | None,
    expected: tuple[ClinicalStatus, Verification],
) -> None:
    p = facts_of(
        [
            condition(
                "c",
                coding(ICD10CM, "M54.42"),
                onset="2025-09-01",
                clinical=clinical,
                verification=verification,
            )
        ],
        content,
    ).pains[0]
    assert (p.clinical, p.verification) == expected


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_facts_refuted_and_entered_in_error_are_dropped_everywhere(
    content: Content, verification: str
) -> None:
    resources = [
        condition("a", coding(ICD10CM, "M54.42"), onset="2025-09-01", verification=verification),
        condition("b", coding(ICD10CM, "N91.1"), onset="2025-09-01", verification=verification),
        condition("c", coding(ICD10CM, "M48.48XA"), onset="2025-09-01", verification=verification),
        condition("d", coding(ICD10CM, "Y93.02"), onset="2025-09-01", verification=verification),
    ]
    facts = facts_of(resources, content)
    assert (facts.pains, facts.risk_conditions, facts.diagnoses, facts.runner) == ((), (), (), ())


@pytest.mark.parametrize(
    ("codes", "text", "region"),
    [
        ([coding(LOINC, "24867-4")], None, ImagingRegion.SACRUM),
        ([coding(LOINC, "36059-4")], None, ImagingRegion.SACRUM),
        ([coding(LOINC, "36031-3")], None, ImagingRegion.SACRUM),
        ([coding(SNOMED, "388321000119101")], None, ImagingRegion.SACRUM),
        ([coding(SNOMED, "433138001")], None, ImagingRegion.SACRUM),
        ([coding(SNOMED, "396161000119106")], None, ImagingRegion.SACRUM),
        ([coding(SNOMED, "433141005")], None, ImagingRegion.SACRUM),
        ([coding(LOINC, "24968-0")], None, ImagingRegion.LUMBAR),
        ([coding(SNOMED, "113091000")], "Sacrum", ImagingRegion.SACRUM),
        ([coding(SNOMED, "113091000")], "Knee", ImagingRegion.OTHER),
        (
            [coding("http://ehr.example/proc", "RAD123", "MRI SI JOINTS W/O CONTRAST")],
            None,
            ImagingRegion.SACRUM,
        ),
        ([], "MR lumbar spine", ImagingRegion.LUMBAR),
    ],
)
def test_facts_mri_report_recognised(
    content: Content, codes: list[dict[str, str]], text: str | None, region: ImagingRegion
) -> None:
    facts = facts_of([report("r", *codes, text=text, effective="2025-09-01")], content)
    assert [r.region for r in facts.reports] == [region]


@pytest.mark.parametrize(
    ("codes", "text"),
    [
        ([coding(LOINC, "24558-9", "US Pelvis")], None),
        ([], "MRA pelvis"),
        ([coding(LOINC, "4548-4")], "Hemoglobin A1c"),
    ],
)
def test_facts_non_mri_reports_ignored(
    content: Content, codes: list[dict[str, str]], text: str | None
) -> None:
    assert facts_of([report("r", *codes, text=text, effective="2025-09-01")], content).reports == ()


@pytest.mark.parametrize(
    ("status", "final"),
    [
        ("final", True),
        ("amended", True),
        ("corrected", True),
        ("appended", True),
        ("preliminary", False),
        ("partial", False),
        ("registered", False),
    ],
)
def test_facts_report_statuses(content: Content, status: str, final: bool) -> None:
    facts = facts_of(
        [report("r", coding(LOINC, "24867-4"), status=status, effective="2025-09-01")], content
    )
    assert facts.reports[0].final is final


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_facts_void_reports_dropped(content: Content, status: str) -> None:
    assert (
        facts_of(
            [report("r", coding(LOINC, "24867-4"), status=status, effective="2025-09-01")], content
        ).reports
        == ()
    )


def test_facts_report_date_falls_back_to_issued(content: Content) -> None:
    facts = facts_of(
        [report("r", coding(LOINC, "24867-4"), issued="2025-09-03T10:00:00Z")], content
    )
    assert facts.reports[0].when is not None
    assert facts.reports[0].when.isoformat() == "2025-09-03"


@pytest.mark.parametrize(
    ("code", "value", "unit", "kind", "expected"),
    [
        ("39156-5", 18.1, "kg/m2", MeasureKind.BMI, 18.1),
        ("29463-7", 55000, "g", MeasureKind.WEIGHT_KG, 55.0),
        ("8302-2", 1.7, "m", MeasureKind.HEIGHT_CM, 170.0),
        ("8302-2", 65, "[in_i]", MeasureKind.HEIGHT_CM, 165.1),
        ("14635-7", 49.92, "nmol/L", MeasureKind.VITAMIN_D_NG_ML, 20.0),
    ],
)
def test_facts_measurement_units(
    content: Content, code: str, value: float, unit: str, kind: MeasureKind, expected: float
) -> None:
    facts = facts_of(
        [observation("o", code, value=value, unit=unit, effective="2025-09-01")], content
    )
    assert [(m.kind, round(m.value, 2)) for m in facts.measurements] == [(kind, expected)]


def test_facts_observation_number_sent_as_string_is_read(content: Content) -> None:
    obs = observation("o", "39156-5", effective="2025-09-01")
    obs["valueQuantity"] = {"value": "17.9", "unit": "kg/m2"}
    assert facts_of([obs], content).measurements[0].value == pytest.approx(17.9)
