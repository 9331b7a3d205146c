"""The rule's tunable parameters. Values live in ``cards/sacral-bsi/parameters.toml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cds_service.clinical.growth import BmiForAgeReference


@dataclass(frozen=True)
class SuspicionParameters:
    lbp_lookback_days: int = 365
    recent_resolution_days: int = 0  # 0: resolved / inactive / remission pain never counts
    runner_lookback_days: int = 730
    risk_lookback_days: int = 365
    menstrual_lookback_days: int = 730
    unknown_laterality_policy: Literal["ignore", "with_risk"] = "ignore"
    unknown_lat_min_risks: int = 2
    si_not_improving_days: int = 28
    include_sciatica_codes: bool = True
    mri_suppress: bool = True
    training_increase_window_days: int = 183
    training_increase_min_ratio: float = 1.25
    # 14.8: an opposite-side pain that began this many days before the newest one (and was not
    # seen at an encounter since) is an earlier, separate episode, not half of a bilateral pain.
    separate_episode_days: int = 180
    # 14.6: "stopped running because of the pain" counts in the current episode only: dated no
    # earlier than this many days before the pain began.
    stopped_for_pain_margin_days: int = 30
    # 14.5: lines for adolescents, and for pregnancy; postpartum / lactation as a risk factor.
    adolescent_age_years: int = 18
    pregnancy_window_days: int = 300
    postpartum_window_days: int = 365


@dataclass(frozen=True)
class IndicatorParameters:
    warning_min_risk_factors: int = 1
    not_counted: tuple[str, ...] = ("female_sex",)
    # Features of the story (symptoms, the course of the pain), shown apart and never counted.
    symptoms: tuple[str, ...] = ("si_not_improving", "pain_with_impact", "insidious_onset")


@dataclass(frozen=True)
class ThresholdParameters:
    bmi_low_adult: float = 18.5
    adult_age_years: int = 20
    bmi_percentile_low: float = 5.0
    bmi_percent_of_median_low: float = 90.0  # under 20: BMI below this % of the median for age
    vitamin_d_low_ng_ml: float = 20.0


@dataclass(frozen=True)
class ConfirmationParameters:
    report_link_window_days: int = 30
    report_max_age_days: int = 182
    # 14.3: from this many days after Day 0 the card says how many weeks ago it was diagnosed.
    late_plan_days: int = 56
    # 14.2: a qualifying pain episode that began more than this many days after an injury's
    # Day 0 is a new episode: no plan for the old injury, which counts as a previous BSI.
    new_pain_episode_days: int = 56
    plan_statuses_in_chart: tuple[str, ...] = ("draft", "active", "on-hold")
    referral_on_fracture_line: bool = True


@dataclass(frozen=True)
class SuppressionParameters:
    # After a clinician overrides the suspicion card, it is not shown again for the patient for
    # this many days, unless the evidence changes (a new qualifying condition or risk factor).
    snooze_after_override_days: int = 30


@dataclass(frozen=True)
class RuleParameters:
    suspicion: SuspicionParameters = SuspicionParameters()
    indicator: IndicatorParameters = IndicatorParameters()
    thresholds: ThresholdParameters = ThresholdParameters()
    confirmation: ConfirmationParameters = ConfirmationParameters()
    suppression: SuppressionParameters = SuppressionParameters()
    protocol_uri: str = ""
    bmi_for_age: BmiForAgeReference = field(default_factory=BmiForAgeReference)
