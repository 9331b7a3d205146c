"""Clinical test patients, from the brief's worked examples (section 11) and near misses.

Each builder returns the patient's resources as an EHR would hold them. The expected outcome of
each case is asserted in the tests, not here.
"""

from __future__ import annotations

from datetime import date

from tests.builders import (
    BILATERAL,
    ICD10CM,
    LEFT,
    LOINC,
    LUMBAR,
    SACRUM,
    SI_JOINT,
    SNOMED,
    Resource,
    coding,
    concept,
    condition,
    observation,
    patient,
    report,
    running_activity,
)

# Brief 11.1: card A is evaluated on 2025-09-30, card B after the MRI of 2025-10-03.
MAYA_SUSPECT_DAY = date(2025, 9, 30)
MAYA_CONFIRMED_DAY = date(2025, 10, 5)


def maya_before_mri() -> list[Resource]:
    """20-year-old collegiate cross-country runner, left SI 'sacroiliitis' (brief 11.1)."""
    return [
        patient("maya", "female", "2005-03-01"),
        running_activity("run-1", "2025-08-15", patient_id="maya"),
        condition(
            "si-1",
            coding(ICD10CM, "M46.1", "Sacroiliitis, not elsewhere classified"),
            coding(SNOMED, "55146009", "Sacroiliitis"),
            verification="provisional",
            onset="2025-09-02",
            recorded="2025-09-02",
            body_sites=[
                concept(coding(SNOMED, SI_JOINT, "Sacroiliac joint structure")),
                concept(coding(SNOMED, LEFT, "Left")),
            ],
            notes=[
                "SI dysfunction, pain worse on runs, no injury",
                "SI dysfunction not improving after 4 weeks of PT; pain with hopping on the left",
            ],
            patient_id="maya",
        ),
        observation(
            "bmi-1", "39156-5", value=18.1, unit="kg/m2", effective="2025-09-02", patient_id="maya"
        ),
        condition(
            "amen-1",
            coding(ICD10CM, "N91.1", "Secondary amenorrhea"),
            onset="2025-05-01",
            patient_id="maya",
        ),
        condition(
            "sfx-hx",
            coding(ICD10CM, "Z87.312", "Personal history of (healed) stress fracture"),
            clinical=None,
            verification=None,
            recorded="2023-06-01",
            patient_id="maya",
        ),
    ]


def maya_mri_report() -> Resource:
    return report(
        "mri-2025-10-03",
        coding(LOINC, "24867-4", "MR Pelvis"),
        text="MRI pelvis",
        effective="2025-10-03",
        issued="2025-10-03T16:00:00Z",
        conclusion=(
            "Left sacral ala marrow edema on T1 and fluid-sensitive images with a short vertical "
            "fracture line: sacral stress fracture, Fredericson grade 4"
        ),
        conclusion_codes=[coding(SNOMED, "240197007", "Stress fracture")],
        patient_id="maya",
    )


def maya_confirmed_condition() -> Resource:
    return condition(
        "sacral-bsi-1",
        coding(
            ICD10CM,
            "M48.48XA",
            "Fatigue fracture of vertebra, sacral and sacrococcygeal region, initial encounter",
        ),
        coding(SNOMED, "240197007", "Stress fracture"),
        verification="confirmed",
        onset="2025-09-02",
        recorded="2025-10-03",
        body_sites=[
            concept(coding(SNOMED, SACRUM, "Sacrum")),
            concept(coding(SNOMED, LEFT, "Left")),
        ],
        evidence=["DiagnosticReport/mri-2025-10-03"],
        patient_id="maya",
    )


def maya_after_mri() -> list[Resource]:
    return [*maya_before_mri(), maya_mri_report(), maya_confirmed_condition()]


def daniel() -> list[Resource]:
    """46-year-old office worker: 'running nose', bilateral LBP (brief 11.2)."""
    return [
        patient("daniel", "male", "1979-04-10"),
        observation(
            "note-1",
            "11348-0",
            value_string="running nose and sore throat x3 days; running late for work",
            effective="2025-09-20",
            category="social-history",
            patient_id="daniel",
        ),
        condition(
            "lbp-1",
            coding(ICD10CM, "M54.50", "Low back pain, unspecified"),
            onset="2025-06",
            body_sites=[
                concept(coding(SNOMED, LUMBAR, "Lumbar region")),
                concept(coding(SNOMED, BILATERAL, "Bilateral")),
            ],
            patient_id="daniel",
        ),
    ]


def runner_with(
    *conditions: Resource, pid: str = "p1", runner_date: str = "2025-08-15"
) -> list[Resource]:
    """A male runner (no other risk) with the given conditions."""
    return [
        patient(pid, "male", "1990-01-01"),
        running_activity("run-1", runner_date, patient_id=pid),
        *conditions,
    ]
