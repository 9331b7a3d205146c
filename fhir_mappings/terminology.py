"""Code systems and value sets, loaded from ``cards/sacral-bsi/valuesets.toml``.

Matching follows the brief (section 3): ICD-10-CM upper-cased without dots or spaces, ``*`` a
prefix; SNOMED CT and LOINC exact; every coding of a CodeableConcept checked; displays never
matched. A SNOMED CT post-coordinated expression (``focus:attribute=value``) matches on its focus
concept, and its refinements are available to the caller (laterality, finding site).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from fhir_mappings.lean import CodeableConcept, Coding

Mark = Literal["V", "U", "A"]
SYSTEM_LABELS = {"icd10cm": "ICD-10-CM", "snomed": "SNOMED CT", "loinc": "LOINC", "cpt": "CPT"}


class CodeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    code: str
    mark: Mark
    display: str | None = None


class SnomedSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    mark: Mark
    display: str | None = None


class QualifierSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    side: Literal["left", "right", "bilateral", "unilateral"]
    mark: Mark


class LateralitySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    attribute: SnomedSpec
    qualifiers: tuple[QualifierSpec, ...]


class ValueSetSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    codes: tuple[CodeSpec, ...]


class TerminologySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    systems: dict[str, tuple[str, ...]]
    valuesets: dict[str, ValueSetSpec]
    inherent_side: dict[str, Literal["left", "right"]]
    laterality: LateralitySpec
    body_sites: dict[str, SnomedSpec]


@dataclass(frozen=True)
class Match:
    """A coding that matched a value set, with the entry it matched."""

    system: str  # system key: icd10cm | snomed | loinc
    code: str  # the code as sent (expression focus for SNOMED expressions)
    display: str | None  # the sender's display, else the value set's
    refinements: Mapping[str, str]  # SNOMED expression attribute -> value

    @property
    def system_label(self) -> str:
        return SYSTEM_LABELS.get(self.system, self.system)


_TERM = re.compile(r"\|[^|]*\|")
_SPACE = re.compile(r"\s+")


def normalise_icd10(code: str) -> str:
    return code.upper().replace(".", "").replace(" ", "")


def parse_snomed_expression(code: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """``240197007 |Stress fracture|:363698007=54735007``
    -> (("240197007",), {"363698007": "54735007"}).

    Handles terms between pipes, ``+`` between focus concepts, braces around refinement groups
    and commas between refinements. Nested expressions in values keep their first concept.
    """
    text = _SPACE.sub("", _TERM.sub("", code)).replace("===", "").replace("<<<", "")
    focus_part, _, refinement_part = text.partition(":")
    focus = tuple(f for f in focus_part.split("+") if f)
    refinements: dict[str, str] = {}
    for attribute, value in _REFINEMENT.findall(refinement_part):
        refinements.setdefault(attribute, value)
    return focus, refinements


# attribute=value anywhere in the refinement, nested ones included:
# 279039007:363698007=(52612000:272741003=7771000) -> 363698007=52612000, 272741003=7771000
_REFINEMENT = re.compile(r"(\d+)=\(?(\d+)")


@dataclass(frozen=True)
class _Lookup:
    """What one coding is, computed once per (system, code) and cached."""

    system: str | None  # system key
    shown: str  # the code to show (upper-cased ICD-10-CM, or the SNOMED focus concept)
    refinements: Mapping[str, str]
    valuesets: frozenset[str]


_NO_VALUESETS: frozenset[str] = frozenset()
_NO_LOOKUP = _Lookup(None, "", {}, _NO_VALUESETS)
_CACHE_LIMIT = 100_000


class Terminology:
    """Value sets keyed by id, filtered to the accepted provenance marks."""

    def __init__(self, spec: TerminologySpec, accept_marks: Iterable[str]) -> None:
        accepted = frozenset(accept_marks)
        self.spec, self.accept_marks = spec, accepted
        self._system_keys = {uri: key for key, uris in spec.systems.items() for uri in uris}
        self.system_uris = {key: uris[0] for key, uris in spec.systems.items()}
        self._exact: dict[str, dict[tuple[str, str], CodeSpec]] = {}
        self._prefix: dict[str, list[tuple[str, str, CodeSpec]]] = {}
        for vs_id, vs in spec.valuesets.items():
            exact: dict[tuple[str, str], CodeSpec] = {}
            prefix: list[tuple[str, str, CodeSpec]] = []
            for entry in vs.codes:
                if entry.system not in spec.systems:
                    raise ValueError(f"value set {vs_id}: unknown system key {entry.system!r}")
                if entry.mark not in accepted:
                    continue
                norm = self._normalise(entry.system, entry.code.rstrip("*"))
                if entry.code.endswith("*"):
                    prefix.append((entry.system, norm, entry))
                else:
                    exact[(entry.system, norm)] = entry
            self._exact[vs_id] = exact
            self._prefix[vs_id] = prefix
        self._by_code: dict[tuple[str, str], set[str]] = {}
        self._prefixes: dict[str, list[tuple[str, str]]] = {}
        for vs_id, table in self._exact.items():
            for key in table:
                self._by_code.setdefault(key, set()).add(vs_id)
        for vs_id, prefixes in self._prefix.items():
            for system, pre, _ in prefixes:
                self._prefixes.setdefault(system, []).append((pre, vs_id))
        self._cache: dict[tuple[str, str], _Lookup] = {}
        self.inherent_side = {normalise_icd10(k): v for k, v in spec.inherent_side.items()}
        lat = spec.laterality
        self.laterality_attribute = lat.attribute.code
        self.laterality_qualifiers = {q.code: q.side for q in lat.qualifiers if q.mark in accepted}
        self.body_sites = {name: site.code for name, site in spec.body_sites.items()}

    def _normalise(self, system: str, code: str) -> str:
        return normalise_icd10(code) if system == "icd10cm" else code.strip()

    def system_key(self, uri: str | None) -> str | None:
        return self._system_keys.get(uri) if uri else None

    def valueset_ids(self) -> frozenset[str]:
        return frozenset(self._exact)

    def codes(self, vs_id: str, system: str) -> tuple[str, ...]:
        """Exact codes of one system in a value set (for search parameters)."""
        return tuple(sorted(code for (sys, code) in self._exact[vs_id] if sys == system))

    def lookup(self, coding: Coding) -> _Lookup:
        """The value sets a coding belongs to (cached: codes repeat across resources)."""
        if not coding.code or not coding.system:
            return _NO_LOOKUP
        key = (coding.system, coding.code)
        found = self._cache.get(key)
        if found is None:
            found = self._compute(coding.system, coding.code)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _compute(self, uri: str, raw: str) -> _Lookup:
        system = self.system_key(uri)
        if system is None:
            return _NO_LOOKUP
        refinements: dict[str, str] = {}
        if system == "snomed" and not raw.strip().isdigit():
            candidates, refinements = parse_snomed_expression(raw)
        else:
            candidates = (self._normalise(system, raw),)
        valuesets: set[str] = set()
        for code in candidates:
            valuesets |= self._by_code.get((system, code), set())
            valuesets |= {vs for pre, vs in self._prefixes.get(system, ()) if code.startswith(pre)}
        shown = (
            raw.strip().upper() if system == "icd10cm" else (candidates[0] if candidates else raw)
        )
        return _Lookup(system, shown, refinements, frozenset(valuesets))

    def valuesets_of(self, concept: CodeableConcept | None) -> frozenset[str]:
        """Every value set any coding of the concept belongs to."""
        if concept is None or not concept.coding:
            return _NO_VALUESETS
        if len(concept.coding) == 1:
            return self.lookup(concept.coding[0]).valuesets
        return frozenset().union(*(self.lookup(c).valuesets for c in concept.coding))

    def match_coding(self, vs_id: str, coding: Coding) -> Match | None:
        found = self.lookup(coding)
        if vs_id not in found.valuesets or found.system is None:
            return None
        display = coding.display or self._display(vs_id, found)
        return Match(found.system, found.shown, display, found.refinements)

    def _display(self, vs_id: str, found: _Lookup) -> str | None:
        assert found.system is not None
        code = self._normalise(found.system, found.shown)
        entry = self._exact[vs_id].get((found.system, code))
        if entry is None:
            entry = next(
                (
                    e
                    for sys, pre, e in self._prefix[vs_id]
                    if sys == found.system and code.startswith(pre)
                ),
                None,
            )
        return entry.display if entry else None

    def match(self, vs_id: str, concept: CodeableConcept | None) -> Match | None:
        """First coding of ``concept`` in value set ``vs_id`` (every coding is checked)."""
        if concept is None:
            return None
        for coding in concept.coding:
            found = self.match_coding(vs_id, coding)
            if found is not None:
                return found
        return None

    def matches_any(self, vs_id: str, concepts: Iterable[CodeableConcept]) -> Match | None:
        for concept in concepts:
            found = self.match(vs_id, concept)
            if found is not None:
                return found
        return None

    def snomed_codes(self, concept: CodeableConcept) -> Iterable[tuple[str, dict[str, str]]]:
        """Every SNOMED CT coding of a concept as (focus concept, refinements)."""
        for coding in concept.coding:
            if self.system_key(coding.system) == "snomed" and coding.code:
                focus, refinements = parse_snomed_expression(coding.code)
                for concept_id in focus:
                    yield concept_id, refinements
