"""Clinical content loaded from ``cards/sacral-bsi/``: card wording, rule parameters, value sets,
rehab protocol. Read once at start-up and checked against typed schemas, so a typo in a TOML file
stops the service at start rather than surfacing in a card."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cds_service.clinical.growth import BmiForAgeReference, LmsPoint
from cds_service.clinical.parameters import (
    ConfirmationParameters,
    IndicatorParameters,
    RuleParameters,
    SuppressionParameters,
    SuspicionParameters,
    ThresholdParameters,
)
from cds_service.platform.content import (
    ContentError,
    Meta,
    OverrideReasons,
    ServiceText,
    SourceText,
    Strict,
    convert,
    read_toml,
)
from fhir_mappings.careplan import RehabProtocol
from fhir_mappings.conditions import DiagnosisSpec
from fhir_mappings.orders import OrdersSpec
from fhir_mappings.terminology import Terminology, TerminologySpec

_T = TypeVar("_T")

DEFAULT_CONTENT_DIR = Path(__file__).resolve().parents[3] / "cards" / "sacral-bsi"


class Words(Strict, frozen=True):
    left: str
    right: str
    unilateral: str
    region_low_back: str
    region_buttock: str
    region_si_joint: str
    region_join: str
    pain_sided: str
    pain_unknown_side: str
    risk_count_one: str
    risk_count_many: str
    side_from_code: str
    side_from_bodySite: str
    side_from_text: str
    side_from_note: str
    since: str
    none_found: str
    female_sex: str
    grade_fracture: str
    grade_reaction: str
    injury_left: str
    injury_right: str
    injury_unknown: str
    basis_report: str
    basis_condition: str
    basis_today: str
    coded: str
    noted: str
    dated: str
    undated: str
    pain_item: str
    pain_item_unknown_side: str
    risk_item: str
    risk_item_bare: str
    item_join: str
    runner_coded: str
    runner_activity_code: str
    measure_bmi: str
    measure_bmi_for_age: str
    measure_bmi_percentile: str
    measure_vitamin_d_ng_ml: str
    measure_exercise_min_per_week: str
    si_duration: str
    si_duration_short: str
    ended: str
    report: str
    date_not_recorded: str
    more: str


class SuspectText(Strict, frozen=True):
    summary_with_risks: str
    summary_si_label: str
    summary_default: str
    summary_short: str
    summary_shortest: str
    next_sacrum: str
    next_pelvis: str
    next_under_way: str
    xray: str
    xray_short: str
    detail_word_limit: int
    detail: str
    why: str
    why_si_label: str
    features: str
    triad_line: str
    adolescent_line: str
    adolescent_line_short: str
    pregnancy_line: str
    pregnancy_line_short: str
    equivocal_line: str
    under_way_line: str
    next_steps_sacrum: str
    next_steps_pelvis: str
    next_steps_under_way: str
    next_steps_sacrum_short: str
    next_steps_pelvis_short: str
    footer: str
    footer_short: str
    suggestion_label_sacrum: str
    suggestion_label_pelvis: str
    action_description_sacrum: str
    action_description_pelvis: str
    order_note: str
    order_note_pregnancy: str


class ConfirmedText(Strict, frozen=True):
    summary_condition_and_report: str
    summary_condition: str
    summary_report: str
    summary_late: str
    summary_short: str
    detail: str
    finding_condition: str
    finding_report_part: str
    finding_no_report: str
    finding_report: str
    finding_report_written: str
    day0_report: str
    day0_condition: str
    day0_today: str
    grade_line: str
    grade_line_plain: str
    late_line: str
    prior_line: str
    phase_line: str
    restriction: str
    summary_written: str
    written_line: str
    written_link_label: str
    summary_system_action: str
    system_action_line: str
    suggestion_label: str
    suggestion_label_with_diagnosis: str
    action_description: str
    diagnosis_label: str
    diagnosis_description: str
    referral_label: str
    referral_description: str
    referral_note: str


class ConfirmFirstText(Strict, frozen=True):
    summary: str
    detail: str
    suggestion_label: str


class LinkText(Strict, frozen=True):
    label: str
    url: str


class AppText(Strict, frozen=True):
    """The cards' links to the SMART app (only when CDS_SMART_LINKS is on)."""

    evidence_link: str
    plan_link: str


class CardContent(Strict, frozen=True):
    meta: Meta
    service: ServiceText
    source: SourceText
    words: Words
    risk_labels: dict[str, str]
    risk_labels_short: dict[str, str]
    suspect: SuspectText
    confirmed: ConfirmedText
    confirm_first: ConfirmFirstText
    links: tuple[LinkText, ...]
    app: AppText
    override_reasons: OverrideReasons
    orders: OrdersSpec
    diagnosis: DiagnosisSpec


@dataclass(frozen=True)
class Content:
    cards: CardContent
    parameters: RuleParameters
    terminology: Terminology
    protocol: RehabProtocol
    directory: Path

    @property
    def version(self) -> str:
        return self.cards.meta.version


def _dataclass_section(data: dict[str, Any], kind: type[_T], where: str) -> _T:
    assert dataclasses.is_dataclass(kind)
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(data) - known
    if unknown:
        raise ContentError(f"{where}: unknown parameter(s) {sorted(unknown)}")
    return convert(data, kind, where)


BMI_FOR_AGE_FILE = Path("reference") / "cdc-bmiagerev.csv"
_CDC_SEX = {"1": "male", "2": "female"}


def load_bmi_for_age(path: Path) -> BmiForAgeReference:
    """The CDC 2000 BMI-for-age LMS table (``reference/SOURCE.md``), by sex, sorted by age."""
    rows: dict[str, list[LmsPoint]] = {"male": [], "female": []}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for n, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    sex = _CDC_SEX[row["Sex"].strip()]
                    point = LmsPoint(
                        float(row["Agemos"]), float(row["L"]), float(row["M"]), float(row["S"])
                    )
                except (KeyError, ValueError, AttributeError):
                    raise ContentError(f"{path.name}: line {n} is not a CDC LMS row") from None
                rows[sex].append(point)
    except FileNotFoundError:
        raise ContentError(f"content file missing: {path}") from None
    except UnicodeDecodeError:
        raise ContentError(f"{path.name}: not UTF-8") from None
    except OSError as exc:
        raise ContentError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if not rows["male"] or not rows["female"]:
        raise ContentError(f"{path.name}: no LMS rows for one of the sexes")
    return BmiForAgeReference(
        {sex: tuple(sorted(points, key=lambda p: p.agemos)) for sex, points in rows.items()}
    )


def load_content(directory: Path = DEFAULT_CONTENT_DIR) -> Content:
    cards = convert(read_toml(directory / "content.toml"), CardContent, "content.toml")
    params = read_toml(directory / "parameters.toml")
    protocol = convert(
        read_toml(directory / "rehab-protocol.toml"), RehabProtocol, "rehab-protocol.toml"
    )
    terms_spec = convert(read_toml(directory / "valuesets.toml"), TerminologySpec, "valuesets.toml")
    known_sections = {
        "suspicion",
        "indicator",
        "thresholds",
        "confirmation",
        "suppression",
        "terminology",
    }
    if set(params) - known_sections:
        raise ContentError(
            f"parameters.toml: unknown section(s) {sorted(set(params) - known_sections)}"
        )
    parameters = RuleParameters(
        suspicion=_dataclass_section(
            params.get("suspicion", {}), SuspicionParameters, "parameters.toml [suspicion]"
        ),
        indicator=_dataclass_section(
            params.get("indicator", {}), IndicatorParameters, "parameters.toml [indicator]"
        ),
        thresholds=_dataclass_section(
            params.get("thresholds", {}), ThresholdParameters, "parameters.toml [thresholds]"
        ),
        confirmation=_dataclass_section(
            params.get("confirmation", {}), ConfirmationParameters, "parameters.toml [confirmation]"
        ),
        suppression=_dataclass_section(
            params.get("suppression", {}), SuppressionParameters, "parameters.toml [suppression]"
        ),
        protocol_uri=protocol.uri,
        bmi_for_age=load_bmi_for_age(directory / BMI_FOR_AGE_FILE),
    )
    accept = params.get("terminology", {}).get("accept_marks", ["V", "A", "U"])
    try:
        terminology = Terminology(terms_spec, accept)
    except ValueError as exc:
        raise ContentError(f"valuesets.toml: {exc}") from None
    for link in cards.links:
        parts = urlsplit(link.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ContentError(f"content.toml: link {link.label!r} is not an absolute URL")
    return Content(cards, parameters, terminology, protocol, directory)
