"""BMI-for-age from the CDC 2000 growth reference (LMS method), for patients aged 2-19 (14.9).

Pure arithmetic over a table handed in (``cards/sacral-bsi/reference/cdc-bmiagerev.csv``, loaded
by ``cds_service.services.sacral_bsi.content``): no I/O here.

For a BMI ``X`` at an age with parameters L (power), M (median) and S (coefficient of variation):
``z = ((X / M) ** L - 1) / (L * S)`` (``ln(X / M) / S`` when L is 0), percentile ``100 * Phi(z)``,
and percent of the median ``100 * X / M`` (an expected-weight proxy: the Triad CRA grades
85-90 % moderate and below 85 % high risk).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import date

DAYS_PER_MONTH = 30.4375  # CDC: age in months = age in days / 30.4375
PLAUSIBLE_BMI = (8.0, 100.0)  # kg/m2


@dataclass(frozen=True)
class LmsPoint:
    agemos: float
    l: float  # noqa: E741 - the LMS method's own name
    m: float
    s: float


@dataclass(frozen=True)
class BmiForAgeReference:
    """LMS rows by sex ("male", "female"), each sorted by age in months."""

    rows: dict[str, tuple[LmsPoint, ...]] = field(default_factory=dict)

    def lms(self, sex: str | None, agemos: float) -> LmsPoint | None:
        """L, M and S at ``agemos``, interpolated linearly between rows; None outside the table
        or for a sex the table does not hold."""
        rows = self.rows.get(sex or "")
        if not rows or not rows[0].agemos <= agemos <= rows[-1].agemos:
            return None
        ages = [r.agemos for r in rows]
        i = bisect.bisect_left(ages, agemos)
        if ages[i] == agemos:
            return rows[i]
        lo, hi = rows[i - 1], rows[i]
        t = (agemos - lo.agemos) / (hi.agemos - lo.agemos)
        return LmsPoint(
            agemos,
            lo.l + t * (hi.l - lo.l),
            lo.m + t * (hi.m - lo.m),
            lo.s + t * (hi.s - lo.s),
        )


@dataclass(frozen=True)
class BmiForAge:
    percentile: float  # 0-100
    percent_of_median: float
    z: float


def age_in_months(birth: date, on: date) -> float:
    return (on - birth).days / DAYS_PER_MONTH


def z_score(value: float, p: LmsPoint) -> float:
    if p.l == 0:
        return math.log(value / p.m) / p.s
    return float(((value / p.m) ** p.l - 1) / (p.l * p.s))


def value_at(z: float, p: LmsPoint) -> float:
    """The BMI at ``z`` (the inverse of ``z_score``): how CDC's percentile columns are made."""
    if p.l == 0:
        return p.m * math.exp(p.s * z)
    return float(p.m * (1 + p.l * p.s * z) ** (1 / p.l))


def bmi_for_age(
    reference: BmiForAgeReference, sex: str | None, birth: date, measured: date, bmi: float
) -> BmiForAge | None:
    """Percentile and percent of median of ``bmi`` measured on ``measured``; None when the age
    is outside the table (under 2 or 20 and over) or the value is not a BMI. When the sex is
    neither male nor female, the higher reading of the two tables: low only if low for both."""
    if not PLAUSIBLE_BMI[0] <= bmi <= PLAUSIBLE_BMI[1]:
        return None  # not a BMI a person has: a unit or entry error
    agemos = age_in_months(birth, measured)
    sexes = (sex,) if sex in reference.rows else tuple(reference.rows)
    found = [_for_age(reference.lms(s, agemos), bmi) for s in sexes]
    readings = [f for f in found if f is not None]
    if not readings:
        return None
    return max(readings, key=lambda r: r.z)


def _for_age(p: LmsPoint | None, bmi: float) -> BmiForAge | None:
    if p is None:
        return None
    z = z_score(bmi, p)
    return BmiForAge(
        percentile=100.0 * 0.5 * math.erfc(-z / math.sqrt(2.0)),
        percent_of_median=100.0 * bmi / p.m,
        z=z,
    )
