"""When a Condition began, however the EHR wrote it (brief 14.7).

In order: ``onsetDateTime``; ``onsetPeriod.start``; ``onsetAge`` (birth date + age);
``onsetString`` with a date or year ("since 2017", "March 2021", "2019-06") or a duration ("for
5 years", "x 3 weeks", "3/52") counted back from the day it was written (the recorded date or the
encounter); only then the caller's fallback (``recordedDate``). A duration with nothing to count
from is returned as days before the day the rule runs.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from cds_service.clinical.text_rules import tidy
from fhir_mappings import lean
from fhir_mappings.primitives import parse_date

_I = re.IGNORECASE
_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name} | {
    name.lower(): n for n, name in enumerate(calendar.month_abbr) if name
}
_MONTH = "|".join(sorted((m for m in _MONTHS if m), key=len, reverse=True)) + r"|sept"
_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "couple of": 2,
    "a couple of": 2,
    "few": 3,
    "a few": 3,
    "several": 3,
    "many": 5,
}
_NUMBER = r"\d+(?:\.\d+)?|" + "|".join(sorted(map(re.escape, _NUMBER_WORDS), key=len, reverse=True))
_UNIT_DAYS = {"d": 1, "w": 7, "m": 30.4375, "y": 365.25}
_UNIT = r"(?P<unit>days?|d|weeks?|wks?|w|months?|mos?|mths?|years?|yrs?|y)\b"
# "x 3 weeks", "for 5 years", "x10y", "10+ years": a number after a space, "x", "~" or "(".
_DURATION = re.compile(rf"(?:^|(?<=[\s~(x\u00d7]))(?P<n>{_NUMBER})\+?\s*-?\s*{_UNIT}", _I)
_NOTATION = re.compile(r"\b(?P<n>\d{1,2})\s*/\s*(?P<per>52|12)\b")  # UK "3/52" weeks, "6/12" months
_ISO = re.compile(r"\b(?P<y>(?:19|20)\d\d)-(?P<m>0[1-9]|1[0-2])(?:-(?P<d>[0-3]\d))?\b")
_MONTH_YEAR = re.compile(rf"\b(?P<m>{_MONTH})\.?\s*(?:of\s+)?(?P<y>(?:19|20)\d\d)\b", _I)
_NUMERIC_MONTH_YEAR = re.compile(r"\b(?P<m>0?[1-9]|1[0-2])/(?P<y>(?:19|20)\d\d)\b")
_DECADE = re.compile(r"\b(?P<y>(?:19|20)\d0)'?s\b")
_YEAR = re.compile(r"\b(?P<y>(?:19|20)\d\d)\b")
_AGE = re.compile(r"\b(?:age|aged)\s+(?:of\s+)?(?P<n>\d{1,2})\b(?!\s*/)", _I)
_LONG_AGO = re.compile(
    r"\b(childhood|since (?:adolescence|high school|school|college|university|(?:her|his|their) "
    r"teens)|teen(?:s|age|aged|ager)?|adolescen\w+|(?:for )?(?:many |several )?years|decades?|"
    r"a decade|lifelong|life-long|long[- ]?standing)\b",
    _I,
)
_LONG_AGO_DAYS = 2 * 365  # "for years": chronic, well beyond any look-back of the rule


@dataclass(frozen=True)
class Onset:
    when: date | None = None
    days_ago: int | None = None  # a duration with nothing to count it from


def condition_onset(c: lean.Condition, birth: date | None, written: date | None) -> Onset:
    """The onset of ``c`` (module docstring); ``written``: the day the record was made (recorded
    date, else encounter date), from which a duration counts back."""
    found = parse_date(c.onsetDateTime) or parse_date(
        c.onsetPeriod.start if c.onsetPeriod else None
    )
    if found is not None:
        return Onset(found)
    if c.onsetAge is not None and birth is not None:
        aged = _add_age(birth, c.onsetAge)
        if aged is not None:
            return Onset(aged)
    if c.onsetString:
        return onset_from_text(c.onsetString, written, birth)
    return Onset()


def _add_age(birth: date, age: lean.Quantity) -> date | None:
    if age.value is None or not math.isfinite(age.value) or age.value < 0:
        return None
    unit = (age.code or age.unit or "a").strip().lower()
    key = _unit_key(unit)
    if key is None:
        return None
    try:
        if key == "y":
            return _add_years(birth, age.value)
        return birth + timedelta(days=round(age.value * _UNIT_DAYS[key]))
    except OverflowError:
        return None


def _add_years(birth: date, years: float) -> date | None:
    whole = int(years)
    year = birth.year + whole
    if not 1 <= year <= 9999:
        return None
    day = min(birth.day, calendar.monthrange(year, birth.month)[1])
    return date(year, birth.month, day) + timedelta(days=round((years - whole) * 365.25))


def _unit_key(unit: str) -> str | None:
    unit = unit.lower().strip(".")
    if unit in ("a", "yr", "yrs", "y", "year", "years", "annum"):
        return "y"
    if unit in ("mo", "mos", "mth", "mths", "month", "months") or unit == "m":
        return "m"
    if unit in ("wk", "wks", "w", "week", "weeks"):
        return "w"
    if unit in ("d", "day", "days"):
        return "d"
    return None


def onset_from_text(text: str, written: date | None, birth: date | None = None) -> Onset:
    """The earliest date or duration in free text ("since 2017", "x 3 weeks", "since childhood,
    worse for 3 weeks": childhood); nothing if it has neither. An onset is a short phrase: the
    first 200 characters are read."""
    text = tidy(text, 200)
    dates = [d for d in _dates_in(text, birth) if d is not None]
    days = _durations_in(text)
    if days and written is not None:
        dates.append(written - timedelta(days=max(days)))
    if dates:
        return Onset(min(dates))
    if days:
        return Onset(days_ago=max(days))
    return Onset()


def _dates_in(text: str, birth: date | None) -> Iterator[date | None]:
    """Every date written in the text, the most precise reading of each span first (the year
    of "3/2019" is not read again on its own)."""
    taken: list[tuple[int, int]] = []

    def fresh(m: re.Match[str]) -> bool:
        if any(m.start() < end and start < m.end() for start, end in taken):
            return False
        taken.append(m.span())
        return True

    for m in _ISO.finditer(text):
        if fresh(m):
            yield parse_date(m.group(0))
    for m in _MONTH_YEAR.finditer(text):
        if fresh(m):
            yield date(int(m.group("y")), _MONTHS.get(m.group("m").lower().rstrip("."), 9), 1)
    for m in _NUMERIC_MONTH_YEAR.finditer(text):
        if fresh(m):
            yield date(int(m.group("y")), int(m.group("m")), 1)
    for m in _DECADE.finditer(text):
        if fresh(m):
            yield date(int(m.group("y")), 1, 1)
    for m in _YEAR.finditer(text):
        if fresh(m):
            yield date(int(m.group("y")), 1, 1)
    if birth is not None:
        for m in _AGE.finditer(text):
            yield _add_years(birth, float(m.group("n")))


def _durations_in(text: str) -> list[int]:
    found: list[int] = []
    for m in _NOTATION.finditer(text):
        per = int(m.group("per"))
        found.append(round(int(m.group("n")) * (7 if per == 52 else 30.4375)))
    for m in _DURATION.finditer(text):
        raw = m.group("n").lower()
        number = _NUMBER_WORDS.get(raw)
        value = float(raw) if number is None else float(number)
        key = _unit_key(m.group("unit"))
        if key is not None and value < 200:
            found.append(round(value * _UNIT_DAYS[key]))
    if _LONG_AGO.search(text):
        found.append(_LONG_AGO_DAYS)
    return found
