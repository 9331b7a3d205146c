"""What the record says, already classified: the input of the rule.

``fhir_mappings.patient_facts`` builds these from FHIR resources (codes, laterality, text rules);
the rule (``sacral_bsi``) decides from them with its parameters and an injected date. Nothing
here knows about FHIR JSON, HTTP or a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import overload


class Side(enum.StrEnum):
    LEFT = "left"
    RIGHT = "right"
    BILATERAL = "bilateral"
    UNILATERAL = "unilateral"
    CENTRAL = "central"
    UNKNOWN = "unknown"


class SideSource(enum.StrEnum):
    CODE = "code"
    BODY_SITE = "bodySite"
    TEXT = "text"
    NOTE = "note"


class PainGroup(enum.StrEnum):
    LOW_BACK = "low_back"
    LOW_BACK_SCIATICA = "low_back_sciatica"
    SCIATICA = "sciatica"
    BUTTOCK = "buttock"
    SI_JOINT = "si_joint"


class ClinicalStatus(enum.StrEnum):
    ACTIVE = "active"
    RECURRENCE = "recurrence"
    RELAPSE = "relapse"
    INACTIVE = "inactive"
    REMISSION = "remission"
    RESOLVED = "resolved"
    MISSING = "missing"
    OTHER = "other"

    @property
    def is_active(self) -> bool:
        """Active for the rule: active, recurrence, relapse, or not recorded at all."""
        return self in _ACTIVE_CLINICAL


_ACTIVE_CLINICAL = frozenset(
    {
        ClinicalStatus.ACTIVE,
        ClinicalStatus.RECURRENCE,
        ClinicalStatus.RELAPSE,
        ClinicalStatus.MISSING,
    }
)


class Verification(enum.StrEnum):
    CONFIRMED = "confirmed"
    PROVISIONAL = "provisional"
    DIFFERENTIAL = "differential"
    UNCONFIRMED = "unconfirmed"
    REFUTED = "refuted"
    ENTERED_IN_ERROR = "entered-in-error"
    MISSING = "missing"
    OTHER = "other"

    @property
    def excluded(self) -> bool:
        """Refuted and entered-in-error conditions never count for anything."""
        return self in (Verification.REFUTED, Verification.ENTERED_IN_ERROR)


@dataclass(frozen=True)
class Code:
    """A code as the clinician should see it in a card: system label, code, display."""

    system: str
    code: str
    display: str | None = None

    def label(self) -> str:
        return (
            f"{self.display} ({self.system} {self.code})"
            if self.display
            else (f"{self.system} {self.code}")
        )


class RunnerKind(enum.StrEnum):
    CODED_ACTIVITY = "coded_activity"  # R1: LOINC 73985-4 = Running / Jogging
    ACTIVITY_CODE = "activity_code"  # R3: ICD-10-CM Y93.02
    TEXT = "text"  # R5: free text
    MILEAGE = "mileage"  # R6: weekly mileage near a running word, or a running-distance value
    STOPPED_FOR_PAIN = "stopped_for_pain"  # 14.6: "stopped running because of the pain"


class Strength(enum.StrEnum):
    STRONG = "strong"
    MODERATE = "moderate"


class Polarity(enum.StrEnum):
    CURRENT = "current"  # evidence that the patient runs
    FORMER = "former"  # evidence that the patient stopped, or denies running


@dataclass(frozen=True)
class RunnerEvidence:
    kind: RunnerKind
    strength: Strength
    polarity: Polarity
    when: date | None
    source: str  # "Observation/123"
    rule: str  # which rule fired, e.g. "LOINC 73985-4 = LA11836-6" or "text:marathon"
    code: Code | None = None  # the coded answer or activity code, when coded
    phrase: str | None = None  # the matched words, when from text


@dataclass(frozen=True)
class PainCondition:
    source: str
    group: PainGroup
    code: Code
    label: str
    clinical: ClinicalStatus
    verification: Verification
    onset: date | None  # onsetDateTime, onsetPeriod.start, onsetAge or a dated onsetString (14.7)
    recorded: date | None
    encounter_date: date | None
    abated: date | None
    side: Side
    side_source: SideSource | None
    # An onsetString that gives only a duration and nothing to count it from ("x 3 weeks", no
    # recorded date): the pain began this many days before the day the rule runs.
    onset_days_ago: int | None = None
    # The buttock, hip or groin is named (code, body site, text): the femoral neck is the
    # dangerous alternative, so the MRI proposed covers the pelvis (14.5).
    hip_or_buttock: bool = False


class RiskCategory(enum.StrEnum):
    """Risk-factor rows of the brief (6). Which ones are features of the story rather than risk
    factors (14.5: listed apart, never counted) is a parameter ([indicator] symptoms)."""

    PRIOR_BSI = "prior_bsi"
    MENSTRUAL = "menstrual"
    LOW_ENERGY = "low_energy"
    LOW_BMI = "low_bmi"
    LOW_BMD = "low_bmd"
    LOW_VITAMIN_D = "low_vitamin_d"
    TRAINING_INCREASE = "training_increase"
    POSTPARTUM_LACTATION = "postpartum_lactation"
    FEMALE_SEX = "female_sex"
    SI_NOT_IMPROVING = "si_not_improving"
    PAIN_WITH_IMPACT = "pain_with_impact"
    INSIDIOUS_ONSET = "insidious_onset"


class RiskCodeKind(enum.StrEnum):
    """What a coded risk Condition says; several map to one risk category."""

    STRESS_FRACTURE_HISTORY = "stress_fracture_history"  # Z87.312
    STRESS_FRACTURE = "stress_fracture"  # M48.4*, M84.3*, 240197007, 430907000
    MENSTRUAL = "menstrual"
    EATING_DISORDER = "eating_disorder"
    UNDERWEIGHT = "underweight"  # R63.6, 248342006
    BMI_BAND_LOW_ADULT = "bmi_band_low_adult"  # Z68.1 (coarse: BMI <= 19.9)
    BMI_LOW_PEDIATRIC = "bmi_low_pediatric"  # Z68.51
    LOW_BMD = "low_bmd"
    VITAMIN_D_DEFICIENCY = "vitamin_d_deficiency"
    POSTPARTUM = "postpartum"  # Z39.2 routine postpartum follow-up
    LACTATION = "lactation"  # 169750002 mother currently breast-feeding, Z39.1


@dataclass(frozen=True)
class RiskCondition:
    source: str
    kind: RiskCodeKind
    code: Code
    label: str
    clinical: ClinicalStatus
    verification: Verification
    when: date | None  # onset, else recorded date
    sacral: bool = False  # for stress fractures: is it at the sacrum?
    abated: date | None = None


class MeasureKind(enum.StrEnum):
    BMI = "bmi"  # kg/m2
    BMI_PERCENTILE = "bmi_percentile"  # %
    WEIGHT_KG = "weight_kg"
    HEIGHT_CM = "height_cm"
    VITAMIN_D_NG_ML = "vitamin_d_ng_ml"
    EXERCISE_MIN_PER_WEEK = "exercise_min_per_week"


@dataclass(frozen=True)
class Measurement:
    source: str
    kind: MeasureKind
    value: float
    when: date
    comparator: str | None = None  # "<", "<=", ">", ">=" as sent


class TextTopic(enum.StrEnum):
    """What a free-text finding is about (risk-factor rows of the brief that come from text)."""

    PRIOR_BSI = "prior_bsi"
    MENSTRUAL = "menstrual"
    LOW_ENERGY = "low_energy"
    LOW_BMD = "low_bmd"
    PAIN_WITH_IMPACT = "pain_with_impact"
    TRAINING_INCREASE = "training_increase"
    INSIDIOUS_ONSET = "insidious_onset"
    NOT_IMPROVING = "not_improving"
    POSTPARTUM = "postpartum"
    LACTATION = "lactation"
    PREGNANT = "pregnant"


@dataclass(frozen=True)
class TextFinding:
    topic: TextTopic
    phrase: str  # the matched words only, never the surrounding note
    when: date | None
    source: str


class ImagingRegion(enum.StrEnum):
    SACRUM = "sacrum"  # sacrum, pelvis, SI joints, lumbosacral: covers the sacrum
    LUMBAR = "lumbar"  # lumbar spine only: covers the sacrum only if the conclusion names it
    OTHER = "other"


class ReportReading(enum.StrEnum):
    """How the conclusion (impression) text reads for a sacral BSI (brief 8.3, 14.1), from the
    strongest to the weakest statement: one clear affirmative sacral sentence, that no other
    sentence about the same side contradicts, makes the whole report POSITIVE; otherwise the
    first of UNCERTAIN, ATTRIBUTED, NEGATED, HISTORY, OTHER_SITE found."""

    POSITIVE = "positive"  # a clear, affirmative sentence: a sacral BSI now
    UNCERTAIN = "uncertain"  # possible, cannot exclude, equivocal, suspicious for, likely ...
    ATTRIBUTED = "attributed"  # the edema or sclerosis is put down to another cause
    NEGATED = "negated"  # absent, not demonstrated, resolved, excluded, ruled out ...
    HISTORY = "history"  # a healed, healing, old or known injury: an earlier episode
    OTHER_SITE = "other_site"  # an injury at another bone (femoral neck, ilium, pubic ramus ...)
    SILENT = "silent"  # says nothing about a sacral BSI

    @property
    def read_as_imaged(self) -> bool:
        """The MRI answered the question (card A is suppressed after it, brief 7.5); an
        uncertain reading leaves card A as if no MRI had been read (14.1)."""
        return self is not ReportReading.UNCERTAIN


class Grade(enum.StrEnum):
    REACTION = "reaction"  # stress reaction, no fracture line
    FRACTURE = "fracture"  # fracture line


@dataclass(frozen=True)
class MriReport:
    source: str
    label: str
    final: bool
    status: str
    region: ImagingRegion
    when: date | None  # effective, else issued
    conclusion_names_sacrum: bool
    reading: ReportReading
    coded_sacral_bsi: bool  # conclusionCode is a stress fracture AND sacral site evidence
    grade: Grade | None = None
    grade_text: str | None = None  # e.g. "Fredericson grade 4"
    side: Side = Side.UNKNOWN
    quote: str | None = None  # the sentence that decided the reading (POSITIVE, UNCERTAIN)
    history_quote: str | None = None  # a sentence describing a healed or earlier injury

    @property
    def pending(self) -> bool:
        """Registered, partial or preliminary: an MRI under way, not yet read (14.5)."""
        return self.status in _PENDING_REPORT


_PENDING_REPORT = frozenset({"registered", "partial", "preliminary"})


@dataclass(frozen=True)
class ImagingOrder:
    """An MRI ServiceRequest of the lumbar spine, sacrum or pelvis (14.5: one under way means
    card A does not offer another)."""

    source: str
    label: str
    status: str  # draft | active | on-hold (others are not mapped)
    region: ImagingRegion
    authored: date | None


class PregnancyState(enum.StrEnum):
    PREGNANT = "pregnant"
    NOT_PREGNANT = "not_pregnant"


@dataclass(frozen=True)
class PregnancyEvidence:
    """A pregnancy Condition or a pregnancy-status Observation (14.5). A pregnancy Condition that
    has ended (resolved, inactive, or abated) is postpartum evidence."""

    source: str
    state: PregnancyState
    when: date | None  # observation date, or the Condition's onset / recorded date
    code: Code | None = None
    label: str | None = None
    ended: date | None = None  # abatement of a pregnancy Condition that is over
    closed: bool = False  # a pregnancy Condition resolved or inactive (maybe without a date)


@dataclass(frozen=True)
class BsiDiagnosis:
    """A Condition coded as a (possibly sacral) stress fracture: candidate for card B; or, with
    ``insufficiency``, an insufficiency fracture (another pathway, brief 8.4)."""

    source: str
    code: Code
    label: str
    sacral: bool
    clinical: ClinicalStatus
    verification: Verification
    recorded: date | None
    onset: date | None
    evidence: tuple[str, ...]  # references from Condition.evidence.detail, normalised
    side: Side
    insufficiency: bool = False


@dataclass(frozen=True)
class ExistingCarePlan:
    source: str
    status: str
    addresses: tuple[str, ...]
    supporting: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]  # (system, value)
    instantiates: tuple[str, ...]


class Measurements(Sequence[Measurement]):
    """The record's measurements, made when first read: most calls are decided before the rule
    asks for a measurement (no runner, no qualifying pain), and a record holds dozens of vital
    signs (issue 12). Equal to any sequence of the same measurements in the same order."""

    __slots__ = ("_items", "_make")

    def __init__(self, make: Callable[[], Iterable[Measurement]]) -> None:
        self._make: Callable[[], Iterable[Measurement]] | None = make
        self._items: tuple[Measurement, ...] = ()

    @property
    def items(self) -> tuple[Measurement, ...]:
        if self._make is not None:
            self._items, self._make = tuple(self._make()), None
        return self._items

    @overload
    def __getitem__(self, index: int) -> Measurement: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Measurement, ...]: ...
    def __getitem__(self, index: int | slice) -> Measurement | tuple[Measurement, ...]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Measurement]:
        return iter(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Measurements):
            return self.items == other.items
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self.items == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return repr(self.items)


@dataclass(frozen=True)
class PatientFacts:
    patient_id: str
    gender: str | None = None
    birth_date: date | None = None
    runner: tuple[RunnerEvidence, ...] = ()
    pains: tuple[PainCondition, ...] = ()
    risk_conditions: tuple[RiskCondition, ...] = ()
    measurements: Sequence[Measurement] = ()  # a tuple, or Measurements (made when read)
    texts: tuple[TextFinding, ...] = ()
    reports: tuple[MriReport, ...] = ()
    diagnoses: tuple[BsiDiagnosis, ...] = ()  # stress fractures and insufficiency fractures
    care_plans: tuple[ExistingCarePlan, ...] = ()
    orders: tuple[ImagingOrder, ...] = ()
    pregnancy: tuple[PregnancyEvidence, ...] = ()
    # Hip or groin pain recorded as its own Condition (not a qualifying pain): when it began.
    hip_pain: tuple[date, ...] = ()


def combine_sides(sides: Iterable[Side]) -> Side:
    """Brief 5.2: all LEFT -> LEFT, all RIGHT -> RIGHT, LEFT and RIGHT or any BILATERAL ->
    BILATERAL, only UNILATERAL -> UNILATERAL; UNKNOWN never contradicts a side that was found."""
    found = set(sides) - {Side.UNKNOWN}
    if Side.BILATERAL in found or {Side.LEFT, Side.RIGHT} <= found:
        return Side.BILATERAL
    for side in (Side.LEFT, Side.RIGHT, Side.UNILATERAL, Side.CENTRAL):
        if side in found:
            return side
    return Side.UNKNOWN
