"""Low BMI under 20 (brief 14.9): the CDC 2000 BMI-for-age reference, checked against CDC's own
published percentile columns, and the risk factor it drives."""

from __future__ import annotations

import csv
import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.clinical.facts import RiskCategory
from cds_service.clinical.growth import BmiForAgeReference, LmsPoint, bmi_for_age, value_at
from cds_service.clinical.sacral_bsi import RiskFactor, Suspicion
from cds_service.platform.content import ContentError
from cds_service.services.sacral_bsi.content import BMI_FOR_AGE_FILE, Content, load_bmi_for_age
from cds_service.services.sacral_bsi.render import RenderContext, render
from tests.builders import ICD10CM, coding, condition, observation, patient, running_activity
from tests.conftest import assess_case

CONTENT_DIR = Path(__file__).resolve().parents[2] / "cards" / "sacral-bsi"
TABLE = CONTENT_DIR / BMI_FOR_AGE_FILE
TODAY = date(2026, 11, 30)
Z5 = -1.6448536269514722  # the 5th percentile of the standard normal
Z95 = 1.6448536269514722


def rows() -> list[dict[str, str]]:
    with TABLE.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_growth_table_is_the_file_source_md_names() -> None:
    digest = hashlib.sha256(TABLE.read_bytes()).hexdigest()
    source = (TABLE.parent / "SOURCE.md").read_text()
    assert re.search(rf"sha256 `{digest}`", source)


def test_growth_table_has_every_age_for_both_sexes() -> None:
    table = rows()
    for sex in ("1", "2"):
        ages = [float(r["Agemos"]) for r in table if r["Sex"] == sex]
        assert ages[0] == 24
        assert ages[-1] == 240.5
        assert ages == sorted(set(ages))
        assert len(ages) == 219


@pytest.mark.parametrize(("column", "z"), [("P5", Z5), ("P50", 0.0), ("P95", Z95)])
def test_growth_lms_reproduces_cdc_published_percentiles(column: str, z: float) -> None:
    """CDC publishes P5, P50 and P95 beside L, M and S: the LMS formula must give them back for
    every sex and age (a corrupt copy of L, M or S would not)."""
    worst = 0.0
    for r in rows():
        point = LmsPoint(float(r["Agemos"]), float(r["L"]), float(r["M"]), float(r["S"]))
        worst = max(worst, abs(value_at(z, point) - float(r[column])))
    assert worst < 1e-5


def test_growth_percentile_at_the_published_p5_is_5(content: Content) -> None:
    """Girls at 228.5 months (19 years): CDC's P5 is 17.76515018, its median 21.55082155."""
    ref = content.parameters.bmi_for_age
    birth = date(2000, 1, 1)
    measured = birth + timedelta(days=round(228.5 * 30.4375))
    at_p5 = bmi_for_age(ref, "female", birth, measured, 17.76515018)
    at_median = bmi_for_age(ref, "female", birth, measured, 21.55082155)
    assert at_p5 is not None
    assert at_median is not None
    assert at_p5.percentile == pytest.approx(5.0, abs=0.01)
    assert at_median.percentile == pytest.approx(50.0, abs=0.01)
    assert at_median.percent_of_median == pytest.approx(100.0, abs=0.01)


def test_growth_issue_example_19_year_old_bmi_17_6(content: Content) -> None:
    """The issue: a 19-year-old with BMI 17.6 is about the 4th percentile and 82 % of the
    median. By hand from CDC's row for girls at 228.5 months (L -2.3557, M 21.5508, S 0.14872):
    17.6 / 21.5508 = 81.7 %; z = ((0.81668 ** -2.3557) - 1) / (-2.3557 * 0.14872) = -1.745,
    Phi(-1.745) = 4.05 %."""
    found = bmi_for_age(
        content.parameters.bmi_for_age, "female", date(2007, 10, 17), date(2026, 11, 1), 17.6
    )
    assert found is not None
    assert found.percentile == pytest.approx(4.05, abs=0.05)
    assert found.percent_of_median == pytest.approx(81.67, abs=0.05)


@pytest.mark.parametrize(
    ("sex", "birth", "measured"),
    [
        ("female", date(2025, 1, 1), date(2026, 11, 1)),  # under 2
        ("female", date(2006, 1, 1), date(2026, 11, 1)),  # 20 and over
    ],
)
def test_growth_no_answer_outside_the_table(
    content: Content, sex: str | None, birth: date, measured: date
) -> None:
    assert bmi_for_age(content.parameters.bmi_for_age, sex, birth, measured, 17.0) is None


def test_growth_interpolates_between_rows() -> None:
    ref = BmiForAgeReference(
        {"female": (LmsPoint(100.0, -2.0, 16.0, 0.1), LmsPoint(101.0, -1.0, 18.0, 0.2))}
    )
    point = ref.lms("female", 100.5)
    assert point == LmsPoint(100.5, -1.5, 17.0, 0.15000000000000002)


def test_growth_table_that_is_not_cdc_lms_stops_loading(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Sex,Agemos,L,M,S\n1,24,x,16,0.1\n")
    with pytest.raises(ContentError, match="line 2"):
        load_bmi_for_age(bad)


# ---------------------------------------------------------------------------- the risk factor
def teen(
    bmi: float, *, gender: str = "female", birth: str = "2007-10-17"
) -> list[dict[str, object]]:
    """Measured on 2026-11-01, at 228.5 months (19 years) when born 2007-10-17: CDC's rows at
    228.5 months are girls M 21.5508, P5 17.7652; boys M 22.5007, P5 18.7302."""
    return [
        patient("p1", gender, birth),
        running_activity("run", "2026-10-01"),
        condition("lbp", coding(ICD10CM, "M54.42"), onset="2026-11-05"),
        observation("bmi", "39156-5", value=bmi, unit="kg/m2", effective="2026-11-01"),
    ]


def low_bmi(records: list[dict[str, object]], content: Content) -> RiskFactor | None:
    result = assess_case(records, content, TODAY)
    assert isinstance(result, Suspicion)
    return next((r for r in result.risks if r.category is RiskCategory.LOW_BMI), None)


def test_growth_risk_19_year_old_bmi_17_6_counts_and_the_card_shows_both(
    content: Content,
) -> None:
    result = assess_case(teen(17.6), content, TODAY)
    assert isinstance(result, Suspicion)
    assert result.counted_risks == 1
    ctx = RenderContext("p1", None, TODAY, datetime(2026, 11, 30, tzinfo=UTC), lambda: "u")
    (card,) = render(result, content, ctx).cards
    assert "BMI 17.6: 4th percentile for age, 82% of median" in (card.detail or "")


def test_growth_risk_below_90_percent_of_median_counts_above_p5(content: Content) -> None:
    """A girl of 19 with BMI 18.5: above P5 (17.77) but 85.8 % of the median (Triad CRA:
    moderate)."""
    found = low_bmi(teen(18.5), content)
    assert found is not None
    assert found.percentile is not None
    assert found.percent_of_median is not None
    assert found.percentile > 5
    assert found.percent_of_median < 90


def test_growth_risk_normal_bmi_for_age_does_not_count(content: Content) -> None:
    assert low_bmi(teen(19.8), content) is None  # above P10, 91.9 % of the median


def test_growth_risk_boy_uses_the_boys_table(content: Content) -> None:
    """BMI 20.0 at 19 is 92.8 % of a girl's median (21.55) but 88.9 % of a boy's (22.50): low
    for him only; BMI 20.5 is 91.1 % of his: not low."""
    assert low_bmi(teen(20.0, gender="female"), content) is None
    assert low_bmi(teen(20.0, gender="male"), content) is not None
    assert low_bmi(teen(20.5, gender="male"), content) is None


def test_growth_risk_at_20_the_adult_threshold_applies(content: Content) -> None:
    """20 on the day the rule runs: BMI 18.6 is 86 % of a 19-year-old girl's median, but an
    adult's BMI of 18.6 is not under 18.5."""
    assert low_bmi(teen(18.4, birth="2006-11-30"), content) is not None
    assert low_bmi(teen(18.6, birth="2006-11-30"), content) is None


@pytest.mark.parametrize("gender", ["unknown", "other"])
def test_growth_risk_sex_not_recorded_counts_only_when_low_for_both_tables(
    content: Content, gender: str
) -> None:
    """BMI 19.0 at 19 is 88.2 % of a girl's median and 84.4 % of a boy's: low either way.
    BMI 20.0 is 92.8 % of a girl's median: not low for her, so not counted."""
    assert low_bmi(teen(19.0, gender=gender), content) is not None
    assert low_bmi(teen(20.0, gender=gender), content) is None


def test_growth_risk_charted_percentile_and_z68_51_still_count_when_sex_is_unknown(
    content: Content,
) -> None:
    record = teen(20.0, gender="unknown")
    assert low_bmi(record, content) is None  # not low for both tables
    charted = observation("pct", "59576-9", value=3, unit="%", effective="2026-11-01")
    assert low_bmi([*record, charted], content) is not None
    z68 = condition("z", coding(ICD10CM, "Z68.51"), recorded="2026-10-01")
    assert low_bmi([*record, z68], content) is not None
