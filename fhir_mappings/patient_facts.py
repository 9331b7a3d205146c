"""FHIR R4 resources (lean views) -> ``PatientFacts``: codes matched, sides resolved, text read.

No thresholds and no dates windows here: those are the rule's parameters. This module only says
what the record contains, in the rule's terms.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache, partial
from typing import TypeVar

import msgspec

from cds_service.clinical import report_text, text_rules
from cds_service.clinical.facts import (
    BsiDiagnosis,
    ClinicalStatus,
    Code,
    ExistingCarePlan,
    ImagingOrder,
    ImagingRegion,
    MeasureKind,
    Measurement,
    Measurements,
    MriReport,
    PainCondition,
    PainGroup,
    PatientFacts,
    Polarity,
    PregnancyEvidence,
    PregnancyState,
    ReportReading,
    RiskCodeKind,
    RiskCondition,
    RunnerEvidence,
    RunnerKind,
    Side,
    SideSource,
    Strength,
    TextFinding,
    TextTopic,
    Verification,
    combine_sides,
)
from cds_service.clinical.growth import PLAUSIBLE_BMI
from fhir_mappings import lean
from fhir_mappings.onset import condition_onset
from fhir_mappings.primitives import normalise_reference, parse_date
from fhir_mappings.terminology import Match, Terminology, normalise_icd10


@dataclass(frozen=True)
class PatientRecord:
    """The resources the rule reads, as decoded from prefetch or the FHIR server."""

    patient_id: str
    patient: lean.Patient | None = None
    conditions: tuple[lean.Condition, ...] = ()
    observations: tuple[lean.Observation, ...] = ()
    reports: tuple[lean.DiagnosticReport, ...] = ()
    care_plans: tuple[lean.CarePlan, ...] = ()
    encounters: tuple[lean.Encounter, ...] = ()
    orders: tuple[lean.ServiceRequest, ...] = ()


_R = TypeVar("_R", bound=msgspec.Struct)


def patient_record(patient_id: str, resources: Iterable[msgspec.Struct]) -> PatientRecord:
    """The resources grouped by type (one pass, whatever the number of types)."""
    by_type: dict[type, list[msgspec.Struct]] = {}
    for resource in resources:
        by_type.setdefault(type(resource), []).append(resource)

    def of(model: type[_R]) -> tuple[_R, ...]:
        found: list[_R] = by_type.get(model, [])  # type: ignore[assignment]
        return tuple(found)

    patients = of(lean.Patient)
    return PatientRecord(
        patient_id=patient_id,
        patient=next((p for p in patients if p.id == patient_id), None),
        conditions=of(lean.Condition),
        observations=of(lean.Observation),
        reports=of(lean.DiagnosticReport),
        care_plans=of(lean.CarePlan),
        orders=of(lean.ServiceRequest),
        encounters=of(lean.Encounter),
    )


_PAIN_VALUESETS = (
    ("pain_low_back", PainGroup.LOW_BACK),
    ("pain_low_back_sciatica", PainGroup.LOW_BACK_SCIATICA),
    ("pain_sciatica", PainGroup.SCIATICA),
    ("pain_buttock", PainGroup.BUTTOCK),
    ("pain_si_joint", PainGroup.SI_JOINT),
)
_RISK_VALUESETS = (
    ("stress_fracture_history", RiskCodeKind.STRESS_FRACTURE_HISTORY),
    ("stress_fracture", RiskCodeKind.STRESS_FRACTURE),
    ("menstrual_dysfunction", RiskCodeKind.MENSTRUAL),
    ("eating_disorder", RiskCodeKind.EATING_DISORDER),
    ("underweight", RiskCodeKind.UNDERWEIGHT),
    ("bmi_band_low_adult", RiskCodeKind.BMI_BAND_LOW_ADULT),
    ("bmi_low_pediatric", RiskCodeKind.BMI_LOW_PEDIATRIC),
    ("low_bone_density", RiskCodeKind.LOW_BMD),
    ("vitamin_d_deficiency", RiskCodeKind.VITAMIN_D_DEFICIENCY),
    ("postpartum", RiskCodeKind.POSTPARTUM),
    ("lactation", RiskCodeKind.LACTATION),
)
_OBSERVATION_OK = frozenset({"final", "amended", "corrected"})
_OBSERVATION_VOID = frozenset({"entered-in-error", "cancelled"})
_REPORT_FINAL = frozenset({"final", "amended", "corrected", "appended"})
_REPORT_VOID = frozenset({"entered-in-error", "cancelled"})
_ORDER_OPEN = frozenset({"draft", "active", "on-hold"})
# Units of distance, for a numeric running-distance Observation (R6, 14.6): any distance unit,
# per any time or none ("km", "mi/wk", "Miles/Week", "[mi_i]/(7.d)", "km per month", "m").
_DISTANCE_UNIT = re.compile(
    r"(mi|mile|miles|\[mi_i\]|\[mi_us\]|km|kms|kilomet(er|re)s?|m|meters?|metres?)"
    r"(\s*(/|per\b).*)?|mpw|kpw",  # miles / km per week, as runners write them
    re.I,
)


@lru_cache(maxsize=512)
def _is_distance_unit(unit: str | None) -> bool:
    return bool(unit and _DISTANCE_UNIT.fullmatch(unit.strip()[:40]))


_SIDES = {s.value: s for s in Side}
_CLINICAL = {s.value: s for s in ClinicalStatus}
_VERIFICATION = {s.value: s for s in Verification}
# ``Verification.excluded``, as a tuple: an Enum property costs ~0.3 µs a Condition.
_EXCLUDED = tuple(v for v in Verification if v.excluded)

# Units: UCUM code or the unit text EHRs send.
_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237}
_CM = {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54, "in": 2.54, "[ft_i]": 30.48}
_NMOL_PER_NG = 2.496  # 25-OH vitamin D: 1 ng/mL = 2.496 nmol/L


def to_patient_facts(record: PatientRecord, terms: Terminology) -> PatientFacts:
    return _Mapper(record, terms).facts()


class _Mapper:
    def __init__(self, record: PatientRecord, terms: Terminology) -> None:
        self.record = record
        self.terms = terms
        self.sacrum = terms.body_sites["sacrum"]
        self.finding_site = terms.body_sites["finding_site_attribute"]
        self.encounter_dates = {
            f"Encounter/{e.id}": parse_date(e.period.start if e.period else None)
            for e in record.encounters
            if e.id
        }
        self.reports_by_ref = {f"DiagnosticReport/{r.id}": r for r in record.reports if r.id}
        self.hip_or_buttock_sites = frozenset(
            terms.body_sites[name] for name in ("buttock", "hip_joint", "hip_region", "groin")
        )
        patient = record.patient
        self.birth = parse_date(patient.birthDate) if patient else None
        self.runner: list[RunnerEvidence] = []
        self.texts: list[TextFinding] = []
        self.pregnancy: list[PregnancyEvidence] = []
        self.extra_risks: list[RiskCondition] = []
        self.hip_pain: list[date] = []

    def facts(self) -> PatientFacts:
        pains: list[PainCondition] = []
        risks: list[RiskCondition] = []
        diagnoses: list[BsiDiagnosis] = []
        for condition in self.record.conditions:
            self._condition(condition, pains, risks, diagnoses)
        # An Observation that can give only a measurement is mapped when the rule first asks
        # for measurements; the others now (they may give runner, pregnancy or text evidence).
        mapped: list[list[Measurement] | lean.Observation] = [
            o if _plain_measurement(o, self.terms) else self._observation(o)
            for o in self.record.observations
        ]
        orders = [o for o in map(self._order, self.record.orders) if o is not None]
        for encounter in self.record.encounters:
            when = parse_date(encounter.period.start if encounter.period else None)
            for reason in encounter.reasonCode:
                self._read_text(reason.text, when, f"Encounter/{encounter.id}", concept=True)
        patient = self.record.patient
        return PatientFacts(
            patient_id=self.record.patient_id,
            gender=patient.gender if patient else None,
            birth_date=self.birth,
            runner=tuple(self.runner),
            pains=tuple(pains),
            risk_conditions=(*risks, *self.extra_risks),
            measurements=Measurements(partial(self._measurements, mapped)),
            texts=tuple(self.texts),
            reports=tuple(r for r in map(self._report, self.record.reports) if r is not None),
            diagnoses=tuple(diagnoses),
            care_plans=tuple(self._care_plan(p) for p in self.record.care_plans),
            orders=tuple(orders),
            pregnancy=tuple(self.pregnancy),
            hip_pain=tuple(self.hip_pain),
        )

    # ------------------------------------------------------------------ conditions
    def _condition(
        self,
        c: lean.Condition,
        pains: list[PainCondition],
        risks: list[RiskCondition],
        diagnoses: list[BsiDiagnosis],
    ) -> None:
        verification = _status(
            c.verificationStatus, _VERIFICATION, Verification.MISSING, Verification.OTHER
        )
        if verification in _EXCLUDED:
            return  # refuted / entered-in-error: never counts for anything
        kinds = self.terms.valuesets_of(c.code)
        code_reading = _reading(c.code.text if c.code else None, concept=True)
        hip_or_groin_text = _names_hip_or_groin_pain(c.code)
        if _nothing_to_read(kinds, c.note, hip_or_groin_text, code_reading):
            return  # most of a record
        source = _source("Condition", c)
        clinical = _status(
            c.clinicalStatus, _CLINICAL, ClinicalStatus.MISSING, ClinicalStatus.OTHER
        )
        recorded = parse_date(c.recordedDate)
        encounter_date = self.encounter_dates.get(
            normalise_reference(c.encounter.reference if c.encounter else None) or ""
        )
        began = condition_onset(c, self.birth, recorded or encounter_date)
        onset = began.when
        when = onset or recorded or encounter_date
        label = _label(c.code)
        for vs_id, group in _PAIN_VALUESETS if kinds else ():
            match = self._match(vs_id, c.code, kinds)
            if match is not None:
                side, side_source = self._pain_side(c)
                pains.append(
                    PainCondition(
                        source=source,
                        group=group,
                        code=_code(match),
                        label=label or _shown(match),
                        clinical=clinical,
                        verification=verification,
                        onset=onset,
                        recorded=recorded,
                        encounter_date=encounter_date,
                        abated=_abated(c),
                        side=side,
                        side_source=side_source,
                        onset_days_ago=began.days_ago,
                        hip_or_buttock=self._hip_or_buttock(c),
                    )
                )
                break
        activity = self._match("activity_code_running", c.code, kinds)
        if activity is not None:
            self.runner.append(
                RunnerEvidence(
                    RunnerKind.ACTIVITY_CODE,
                    Strength.STRONG,
                    Polarity.CURRENT,
                    when,
                    source,
                    f"{activity.system_label} {activity.code}",
                    code=_code(activity),
                )
            )
        sacral_site = self._sacral_site(c) if kinds else False
        for vs_id, kind in _RISK_VALUESETS if kinds else ():
            match = self._match(vs_id, c.code, kinds)
            if match is not None:
                risks.append(
                    RiskCondition(
                        source,
                        kind,
                        _code(match),
                        label or _shown(match),
                        clinical,
                        verification,
                        when,
                        sacral=sacral_site
                        or self._match("bsi_sacral_by_code", c.code, kinds) is not None,
                        abated=_abated(c),
                    )
                )
        if (
            when is not None
            and clinical.is_active
            and ("hip_groin_pain" in kinds or hip_or_groin_text)
        ):
            self.hip_pain.append(when)
        pregnancy = self._match("pregnancy", c.code, kinds)
        if pregnancy is not None:
            self.pregnancy.append(
                PregnancyEvidence(
                    source,
                    PregnancyState.PREGNANT,
                    when,
                    code=_code(pregnancy),
                    label=label or _shown(pregnancy),
                    ended=_abated(c),
                    closed=clinical
                    not in (
                        ClinicalStatus.ACTIVE,
                        ClinicalStatus.RECURRENCE,
                        ClinicalStatus.RELAPSE,
                        ClinicalStatus.MISSING,
                    ),
                )
            )
        by_code = self._match("bsi_sacral_by_code", c.code, kinds)
        needs_site = by_code or self._match("bsi_needs_site", c.code, kinds)
        if needs_site is not None:
            side = combine_sides(
                [
                    self._body_site_side(c)[0],
                    text_rules.side_from_text(c.code.text if c.code else None) or Side.UNKNOWN,
                ]
            )
            diagnoses.append(
                BsiDiagnosis(
                    source=source,
                    code=_code(needs_site),
                    label=label or _shown(needs_site),
                    sacral=by_code is not None or sacral_site,
                    clinical=clinical,
                    verification=verification,
                    recorded=recorded,
                    onset=onset,
                    evidence=tuple(
                        ref
                        for ev in c.evidence
                        for detail in ev.detail
                        if (ref := normalise_reference(detail.reference)) is not None
                    ),
                    side=side,
                )
            )
        insufficient = self._match("insufficiency_fracture", c.code, kinds)
        if insufficient is not None:
            diagnoses.append(
                BsiDiagnosis(
                    source=source,
                    code=_code(insufficient),
                    label=label or _shown(insufficient),
                    sacral=sacral_site,
                    clinical=clinical,
                    verification=verification,
                    recorded=recorded,
                    onset=onset,
                    evidence=(),
                    side=Side.UNKNOWN,
                    insufficiency=True,
                )
            )
        self._record_reading(code_reading, when, source)
        for note in c.note:
            self._read_text(note.text, parse_date(note.time) or when, source)

    def _match(
        self, vs_id: str, concept: lean.CodeableConcept | None, kinds: frozenset[str]
    ) -> Match | None:
        """``terms.match`` for a concept whose value sets are ``kinds`` (``valuesets_of``): a
        concept matches only value sets its codings are in, so the others need no look."""
        return self.terms.match(vs_id, concept) if vs_id in kinds else None

    def _sacral_site(self, c: lean.Condition) -> bool:
        """Sacral site evidence (brief 8.1): bodySite 54735007 (or its text naming the sacrum),
        a finding-site refinement to the sacrum, or code text / note / linked report conclusion
        naming the sacrum. The SI joint is not the sacrum."""
        for site in c.bodySite:
            if any(concept_id == self.sacrum for concept_id, _ in self.terms.snomed_codes(site)):
                return True
            if any(text_rules.names_sacrum(text) for text in _concept_texts(site)):
                return True
        if c.code is not None:
            if any(
                refinements.get(self.finding_site) == self.sacrum
                for _, refinements in self.terms.snomed_codes(c.code)
            ):
                return True
            if text_rules.names_sacrum(c.code.text):
                return True
        if any(text_rules.names_sacrum(n.text) for n in c.note):
            return True
        return any(
            text_rules.names_sacrum(report.conclusion)
            for ev in c.evidence
            for detail in ev.detail
            if (report := self.reports_by_ref.get(normalise_reference(detail.reference) or ""))
        )

    def _pain_side(self, c: lean.Condition) -> tuple[Side, SideSource | None]:
        """Brief 5.2, in order, stopping at the first clear answer. Step 1 looks at every coding
        (an EHR may send SNOMED CT low back pain beside ICD-10-CM M54.42)."""
        for coding in c.code.coding if c.code else ():
            known = self.terms.lookup(coding)
            inherent = (
                self.terms.inherent_side.get(normalise_icd10(known.shown))
                if known.system == "icd10cm"
                else self.terms.laterality_qualifiers.get(
                    known.refinements.get(self.terms.laterality_attribute, "")
                )
            )
            if inherent is not None:
                return _SIDES[inherent], SideSource.CODE
        side, found = self._body_site_side(c)
        if found:
            return side, SideSource.BODY_SITE
        from_code_text = text_rules.side_from_text(
            " ; ".join(t for t in _concept_texts(c.code) if t)
        )
        if from_code_text is not None:
            return from_code_text, SideSource.TEXT
        from_notes = [text_rules.side_from_text(n.text, about_pain=True) for n in c.note]
        noted = combine_sides(s for s in from_notes if s is not None)
        if noted is not Side.UNKNOWN:
            return noted, SideSource.NOTE
        return Side.UNKNOWN, None

    def _body_site_side(self, c: lean.Condition) -> tuple[Side, bool]:
        sides: list[Side] = []
        for concept in c.bodySite:
            for coding in concept.coding:
                if self.terms.system_key(coding.system) == "snomed" and coding.code:
                    for concept_id, refinements in self.terms.snomed_codes(
                        lean.CodeableConcept(coding=(coding,))
                    ):
                        qualifier = self.terms.laterality_qualifiers.get(concept_id) or (
                            self.terms.laterality_qualifiers.get(
                                refinements.get(self.terms.laterality_attribute, "")
                            )
                        )
                        if qualifier:
                            sides.append(_SIDES[qualifier])
                sides.extend(self._extension_sides(coding.extension))
            sides.extend(self._extension_sides(concept.extension))
            for text in _concept_texts(concept):
                side = text_rules.side_from_text(text)
                if side is not None:
                    sides.append(side)
        sides.extend(self._extension_sides(c.extension, laterality_only=True))
        return combine_sides(sides), bool(sides)

    def _extension_sides(
        self, extensions: Iterable[lean.Extension], *, laterality_only: bool = False
    ) -> Iterator[Side]:
        for ext in extensions:
            if laterality_only and "laterality" not in (ext.url or "").lower():
                continue
            codings = (
                *(ext.valueCodeableConcept.coding if ext.valueCodeableConcept else ()),
                *((ext.valueCoding,) if ext.valueCoding else ()),
            )
            for coding in codings:
                if self.terms.system_key(coding.system) == "snomed" and coding.code:
                    qualifier = self.terms.laterality_qualifiers.get(coding.code.strip())
                    if qualifier:
                        yield _SIDES[qualifier]
            yield from self._extension_sides(ext.extension)

    def _hip_or_buttock(self, c: lean.Condition) -> bool:
        """The buttock, hip or groin named in the body site, the code text or a note (14.5)."""
        for site in c.bodySite:
            if any(cid in self.hip_or_buttock_sites for cid, _ in self.terms.snomed_codes(site)):
                return True
            if any(text_rules.names_hip_or_buttock(t) for t in _concept_texts(site)):
                return True
        return any(text_rules.names_hip_or_buttock(t) for t in _concept_texts(c.code)) or any(
            text_rules.names_hip_or_buttock(n.text) for n in c.note
        )

    def _order(self, o: lean.ServiceRequest) -> ImagingOrder | None:
        """An open MRI order of the lumbar spine, sacrum or pelvis (14.5); else None."""
        if (o.status or "") not in _ORDER_OPEN:
            return None
        region = self._mri_region(o.code)
        if region is None or region is ImagingRegion.OTHER:
            return None
        return ImagingOrder(
            source=_source("ServiceRequest", o),
            label=self._mri_label(o.code),
            status=o.status or "",
            region=region,
            authored=parse_date(o.authoredOn) or parse_date(o.occurrenceDateTime),
        )

    def _mri_label(self, code: lean.CodeableConcept | None) -> str:
        """How an MRI order or report is called in a card: its text, else a display."""
        for vs_id in ("mri_covers_sacrum", "mri_lumbar_only", "mri_generic"):
            match = self.terms.match(vs_id, code)
            if match is not None:
                return _label(code) or _shown(match)
        return _label(code) or "MRI"

    def _mri_region(self, code: lean.CodeableConcept | None) -> ImagingRegion | None:
        """What an MRI code covers (8.1b): by code, else by its text; None if not an MRI."""
        kinds = self.terms.valuesets_of(code)
        if "mri_covers_sacrum" in kinds:
            return ImagingRegion.SACRUM
        if "mri_lumbar_only" in kinds:
            return ImagingRegion.LUMBAR
        generic = "mri_generic" in kinds
        for text in _concept_texts(code):
            found = text_rules.mri_region_from_text(text)
            if found is None and generic:
                found = text_rules.mri_region_from_text(f"MRI {text}")
            if found is not None:
                return ImagingRegion(found)
        return ImagingRegion.OTHER if generic else None

    # ------------------------------------------------------------------ observations
    def _measurements(
        self, mapped: list[list[Measurement] | lean.Observation]
    ) -> Iterator[Measurement]:
        for item in mapped:
            yield from self._observation(item) if isinstance(item, lean.Observation) else item

    def _observation(self, o: lean.Observation) -> list[Measurement]:
        kinds = self.terms.valuesets_of(o.code)
        if o.status in _OBSERVATION_VOID:
            return []
        q = o.valueQuantity
        if not kinds and q is not None and (_is_distance_unit(q.code) or _is_distance_unit(q.unit)):
            self._running_distance(o)
        if not (kinds or o.valueString or o.note or o.component):
            return []  # a vital sign or lab the rule does not read: most of a record
        source = _source("Observation", o)
        when = (
            parse_date(o.effectiveDateTime)
            or parse_date(o.effectivePeriod.start if o.effectivePeriod else None)
            or parse_date(o.effectiveInstant)
            or parse_date(o.issued)
        )
        usable = o.status is None or o.status in _OBSERVATION_OK
        activity = "exercise_activity" in kinds
        if usable and ("pregnancy_status" in kinds or "breastfeeding_status" in kinds):
            self._reproductive_status(kinds, o.valueCodeableConcept, when, source)
        if usable and activity:
            self._exercise_activity(o.valueCodeableConcept, o.valueString, when, source)
        if not activity and o.valueString:
            self._read_text(o.valueString, when, source)
        for note in o.note:
            self._read_text(note.text, parse_date(note.time) or when, source)
        out: list[Measurement] = []
        if usable and when is not None and o.valueQuantity is not None:
            measured = self._measure(kinds, o.valueQuantity, when, source)
            if measured is not None:
                out.append(measured)
        for component in o.component if usable else ():
            component_kinds = self.terms.valuesets_of(component.code)
            if "exercise_activity" in component_kinds:
                self._exercise_activity(
                    component.valueCodeableConcept, component.valueString, when, source
                )
            elif when is not None and component.valueQuantity is not None:
                measured = self._measure(component_kinds, component.valueQuantity, when, source)
                if measured is not None:
                    out.append(measured)
        return out

    def _reproductive_status(
        self,
        kinds: frozenset[str],
        value: lean.CodeableConcept | None,
        when: date | None,
        source: str,
    ) -> None:
        """Pregnancy status (LOINC 82810-3) and breastfeeding status (63895-7), 14.5."""
        if "pregnancy_status" in kinds:
            if self.terms.match("pregnancy_answer_pregnant", value):
                self.pregnancy.append(PregnancyEvidence(source, PregnancyState.PREGNANT, when))
            elif self.terms.match("pregnancy_answer_not_pregnant", value):
                self.pregnancy.append(PregnancyEvidence(source, PregnancyState.NOT_PREGNANT, when))
        answer = self.terms.match("breastfeeding_answer_yes", value)
        if "breastfeeding_status" in kinds and answer is not None:
            self.extra_risks.append(
                RiskCondition(
                    source,
                    RiskCodeKind.LACTATION,
                    _code(answer),
                    _shown(answer),
                    ClinicalStatus.ACTIVE,
                    Verification.MISSING,
                    when,
                )
            )

    def _running_distance(self, o: lean.Observation) -> None:
        """A numeric Observation whose code text names running distance or mileage, with a
        distance unit (a site-specific code): weekly mileage, R6 STRONG (14.6)."""
        quantity = o.valueQuantity
        if quantity is None or not quantity.value or quantity.value <= 0:
            return
        unit = quantity.unit or quantity.code or ""
        texts = _concept_texts(o.code)
        if not any(text_rules.names_running_distance(t) for t in texts):
            return
        when = (
            parse_date(o.effectiveDateTime)
            or parse_date(o.effectivePeriod.start if o.effectivePeriod else None)
            or parse_date(o.effectiveInstant)
            or parse_date(o.issued)
        )
        self.runner.append(
            RunnerEvidence(
                RunnerKind.MILEAGE,
                Strength.STRONG,
                Polarity.CURRENT,
                when,
                _source("Observation", o),
                "running distance value",
                phrase=f"{texts[0]}: {quantity.value:g} {unit.strip()}",
            )
        )

    def _exercise_activity(
        self,
        value: lean.CodeableConcept | None,
        text: str | None,
        when: date | None,
        source: str,
    ) -> None:
        running = self.terms.match("activity_running", value)
        if running is not None:
            self.runner.append(
                RunnerEvidence(
                    RunnerKind.CODED_ACTIVITY,
                    Strength.STRONG,
                    Polarity.CURRENT,
                    when,
                    source,
                    f"LOINC 73985-4 = {running.code}",
                    code=_code(running),
                )
            )
            return
        for written in (text, value.text if value else None):
            for mention in text_rules.runner_mentions(written or "", activity_context=True):
                self.runner.append(
                    RunnerEvidence(
                        RunnerKind.CODED_ACTIVITY,
                        mention.strength,
                        mention.polarity,
                        when,
                        source,
                        f"LOINC 73985-4 {mention.rule}",
                        phrase=mention.phrase,
                    )
                )

    def _measure(
        self,
        kinds: frozenset[str],
        quantity: lean.Quantity,
        when: date,
        source: str,
    ) -> Measurement | None:
        if quantity.value is None or not kinds or not math.isfinite(quantity.value):
            return None
        value = float(quantity.value)
        unit = (quantity.code or quantity.unit or "").strip()
        kind: MeasureKind | None = None
        if "bmi" in kinds:
            kind = MeasureKind.BMI
        elif "bmi_percentile" in kinds:
            kind = MeasureKind.BMI_PERCENTILE
        elif "body_weight" in kinds:
            kind, value = MeasureKind.WEIGHT_KG, value * _KG.get(unit, 1.0)
        elif "body_height" in kinds:
            kind, value = MeasureKind.HEIGHT_CM, value * _CM.get(unit, 1.0)
        elif "vitamin_d_mass" in kinds or "vitamin_d_molar" in kinds:
            molar = "mol" in unit.lower() or (not unit and "vitamin_d_molar" in kinds)
            kind, value = MeasureKind.VITAMIN_D_NG_ML, value / _NMOL_PER_NG if molar else value
        elif "exercise_minutes_per_week" in kinds:
            kind = MeasureKind.EXERCISE_MIN_PER_WEEK
        if kind is None or (
            kind is MeasureKind.BMI and not PLAUSIBLE_BMI[0] <= value <= PLAUSIBLE_BMI[1]
        ):
            return None  # no person has such a BMI: an entry or unit error, not a risk factor
        return Measurement(source, kind, value, when, quantity.comparator)

    # ------------------------------------------------------------------ reports
    def _report(self, r: lean.DiagnosticReport) -> MriReport | None:
        status = r.status or "unknown"
        if status in _REPORT_VOID:
            return None
        region = self._mri_region(r.code)
        if region is None:
            return None  # not an MRI report
        conclusion = r.conclusion
        sacrum_study = self.terms.match("mri_sacrum_specific", r.code) is not None
        read = report_text.read_impression(conclusion, sacrum_study=sacrum_study)
        coded = self.terms.matches_any("conclusion_stress_fracture", r.conclusionCode)
        # The code stands only where the text does not contradict it (14.1: an impression that
        # says absent, another cause, healed or uncertain outweighs a coded "stress fracture").
        sacral_evidence = (
            coded is not None
            and read.reading in (ReportReading.POSITIVE, ReportReading.SILENT)
            and (
                self.terms.matches_any("bsi_sacral_by_code", r.conclusionCode) is not None
                or coded.refinements.get(self.finding_site) == self.sacrum
                or text_rules.names_sacrum(conclusion)
                or sacrum_study
            )
        )
        grade, grade_text = text_rules.grade_from_text(read.grading)
        return MriReport(
            source=_source("DiagnosticReport", r),
            label=self._mri_label(r.code),
            final=status in _REPORT_FINAL,
            status=status,
            region=region,
            when=parse_date(r.effectiveDateTime)
            or parse_date(r.effectivePeriod.start if r.effectivePeriod else None)
            or parse_date(r.issued),
            conclusion_names_sacrum=text_rules.mentions_sacrum(conclusion),
            reading=read.reading,
            coded_sacral_bsi=bool(sacral_evidence),
            grade=grade,
            grade_text=grade_text,
            side=text_rules.side_from_text(read.positive) or Side.UNKNOWN,
            quote=read.quote,
            history_quote=read.history_quote,
        )

    # ------------------------------------------------------------------ care plans / text
    def _care_plan(self, p: lean.CarePlan) -> ExistingCarePlan:
        return ExistingCarePlan(
            source=_source("CarePlan", p),
            status=p.status or "unknown",
            addresses=_refs(p.addresses),
            supporting=_refs(p.supportingInfo),
            identifiers=tuple((i.system or "", i.value) for i in p.identifier if i.value),
            instantiates=(*p.instantiatesCanonical, *p.instantiatesUri),
        )

    def _read_text(
        self, text: str | None, when: date | None, source: str, *, concept: bool = False
    ) -> None:
        """Runner evidence and risk topics in ``text``; ``concept``: the text of a coded concept
        (see ``_concept_reading``)."""
        self._record_reading(_reading(text, concept=concept), when, source)

    def _record_reading(self, reading: _Reading, when: date | None, source: str) -> None:
        mentions, topics = reading
        for mention in mentions:
            self.runner.append(
                RunnerEvidence(
                    _RUNNER_KIND_BY_RULE.get(mention.rule, RunnerKind.TEXT),
                    mention.strength,
                    mention.polarity,
                    when,
                    source,
                    mention.rule,
                    phrase=mention.phrase,
                )
            )
        for topic, phrase in topics:
            if topic is TextTopic.PREGNANT:
                self.pregnancy.append(PregnancyEvidence(source, PregnancyState.PREGNANT, when))
            else:
                self.texts.append(TextFinding(topic, phrase, when, source))


_Reading = tuple[tuple[text_rules.RunnerMention, ...], tuple[tuple[TextTopic, str], ...]]
# The text of a coded concept (a diagnosis's or a test's name, a visit's reason) repeats from
# record to record: what the runner and topic rules find in one is kept, for up to
# CONCEPT_READINGS_KEPT texts of at most CONCEPT_TEXT_CHARS characters, so each is read once per
# process, not once per resource (their case-insensitive scans cost ~0.5 µs a character: ~28 µs
# for "Viral sinusitis (disorder)"). Notes and values are the patient's own words: read each
# time, never kept.
CONCEPT_TEXT_CHARS = 200
CONCEPT_READINGS_KEPT = 4096


def _text_reading(text: str) -> _Reading:
    return tuple(text_rules.runner_mentions(text)), tuple(text_rules.topic_mentions(text))


_concept_reading = lru_cache(maxsize=CONCEPT_READINGS_KEPT)(_text_reading)
_NOTHING_READ: _Reading = ((), ())
_concept_hip_or_groin = lru_cache(maxsize=CONCEPT_READINGS_KEPT)(text_rules.names_hip_or_groin_pain)


def _names_hip_or_groin_pain(concept: lean.CodeableConcept | None) -> bool:
    """A diagnosis's name or a coding's display names hip or groin pain. Asked of every
    Condition: each short text's answer is kept, as ``_concept_reading`` keeps its reading."""
    return any(
        _concept_hip_or_groin(text)
        if len(text) <= CONCEPT_TEXT_CHARS
        else text_rules.names_hip_or_groin_pain(text)
        for text in _concept_texts(concept)
    )


# Value sets whose Observations give evidence other than a measurement.
_EVIDENCE_KINDS = frozenset({"exercise_activity", "pregnancy_status", "breastfeeding_status"})


def _plain_measurement(o: lean.Observation, terms: Terminology) -> bool:
    """An Observation of which only a measurement can come (``_observation`` would read no
    text and record no other evidence): a coded value with no text, note or component, of a
    value set that is a measurement. Mapping it can wait until a measurement is asked for."""
    if o.valueString or o.note or o.component:
        return False
    kinds = terms.valuesets_of(o.code)
    return bool(kinds) and kinds.isdisjoint(_EVIDENCE_KINDS)


def _nothing_to_read(
    kinds: frozenset[str],
    notes: tuple[lean.Annotation, ...],
    hip_or_groin_text: bool,
    code_reading: _Reading,
) -> bool:
    """A Condition in no value set, without notes, whose name says nothing the rule reads: none
    of the rule's facts can come from it, so it is not mapped further."""
    return not (kinds or notes or hip_or_groin_text or code_reading != _NOTHING_READ)


def _reading(text: str | None, *, concept: bool) -> _Reading:
    if not text:
        return _NOTHING_READ
    if concept and len(text) <= CONCEPT_TEXT_CHARS:
        return _concept_reading(text)
    return _text_reading(text)


_S = TypeVar("_S")
_RUNNER_KIND_BY_RULE = {
    text_rules.MILEAGE_RULE: RunnerKind.MILEAGE,
    text_rules.STOPPED_FOR_PAIN_RULE: RunnerKind.STOPPED_FOR_PAIN,
}


def _abated(c: lean.Condition) -> date | None:
    return (
        parse_date(c.abatementDateTime)
        or parse_date(c.abatementPeriod.end if c.abatementPeriod else None)
        or parse_date(c.abatementPeriod.start if c.abatementPeriod else None)
    )


def _status(
    concept: lean.CodeableConcept | None, values: dict[str, _S], missing: _S, other: _S
) -> _S:
    if concept is None:
        return missing
    for coding in concept.coding:
        if coding.code in values:
            return values[coding.code]
    return other if concept.coding or concept.text else missing


def _label(concept: lean.CodeableConcept | None) -> str | None:
    if concept is None:
        return None
    if concept.text:
        return concept.text
    return next((c.display for c in concept.coding if c.display), None)


_Identified = (
    lean.Condition | lean.Observation | lean.DiagnosticReport | lean.CarePlan | lean.ServiceRequest
)


def _source(kind: str, resource: _Identified) -> str:
    """How the rule names a resource: "Type/id". One sent without an id (a malformed prefetch)
    is still read, under a name that no reference is ever built from, stable for its content."""
    if resource.id:
        return f"{kind}/{resource.id}"
    digest = hashlib.sha256(msgspec.json.encode(resource)).hexdigest()[:12]
    return f"{kind} without id {digest}"


def _concept_texts(concept: lean.CodeableConcept | None) -> list[str]:
    if concept is None:
        return []
    return [t for t in (concept.text, *(c.display for c in concept.coding)) if t]


def _shown(match: Match) -> str:
    """What a coded item is called in a card when the record gives no text: its display."""
    return match.display or match.code


def _code(match: Match) -> Code:
    return Code(match.system_label, match.code, match.display)


def _refs(references: Iterable[lean.Reference]) -> tuple[str, ...]:
    return tuple(ref for r in references if (ref := normalise_reference(r.reference)) is not None)
