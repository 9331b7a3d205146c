"""FHIR primitive values: partial dates and references."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_DATE_CHARS = 10  # what _DATE can read: "YYYY-MM-DD"


def parse_date(value: str | None) -> date | None:
    """The calendar date of a FHIR date, dateTime or instant, as written (no zone shift).

    Partial dates take their first day: "2025" -> 2025-01-01, "2025-06" -> 2025-06-01.
    Anything that is not a FHIR date, or a year outside 1800-2200, gives None.
    """
    if not value:
        return None
    # Only the first ten characters after leading white space can make the date (the pattern
    # reads no further, and no white space is a digit or "-"), and a record holds the same days
    # again and again: each day is read once per process.
    return _calendar_date(value.lstrip()[:_DATE_CHARS])


@lru_cache(maxsize=4096)
def _calendar_date(head: str) -> date | None:
    m = _DATE.match(head)
    if m is None:
        return None
    year = int(m.group(1))
    if not 1800 <= year <= 2200:
        return None  # not a clinical date (and date arithmetic on it could overflow)
    try:
        return date(year, int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


_LITERAL = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def is_literal_reference(reference: str) -> bool:
    """A relative literal reference "Type/id" with a valid FHIR id: safe to emit."""
    return bool(_LITERAL.match(reference))


_ABSOLUTE = re.compile(r"^(?i:https?)://[^\s?#]+/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def is_resource_reference(reference: str) -> bool:
    """A literal reference safe to emit: relative "Type/id", or absolute on a FHIR base."""
    return is_literal_reference(reference) or bool(_ABSOLUTE.match(reference))


_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")


def normalise_reference(reference: str | None) -> str | None:
    """ "Type/id" for relative, absolute and versioned literal references; None otherwise."""
    if not reference:
        return None
    m = _REFERENCE.search(reference.strip())
    return f"{m.group(1)}/{m.group(2)}" if m else None
