"""The hot path's caches and fast paths (issue 12) give exactly what the uncached code gives.

The texts tried are every string written in the unit tests (the phrases the text rules are tested
on, hundreds of them) and in the example requests, so a cache that answered for the wrong key
would show here.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import msgspec
import msgspec.inspect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.clinical import text_rules
from cds_service.clinical.facts import MeasureKind, Measurement, Measurements
from cds_service.errors import CdsError
from cds_service.platform import wire
from cds_service.platform.fhir_client import ByteBudget
from cds_service.platform.prefetch import PrefetchKey, Resolved, ResolveStats, _unique, resolve
from cds_service.services.sacral_bsi.content import Content, load_content
from fhir_mappings import lean, patient_facts
from fhir_mappings.primitives import _calendar_date, normalise_reference, parse_date
from fhir_mappings.terminology import Terminology
from tests.builders import SNOMED, coding, condition, observation, patient
from tests.conftest import facts_of, shared

ROOT = Path(__file__).resolve().parents[2]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _corpus() -> list[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    for path in sorted((ROOT / "examples").glob("*.json")):
        found.update(_strings(json.loads(path.read_bytes())))
    # Each side of the length limit of what is kept.
    limit = patient_facts.CONCEPT_TEXT_CHARS
    padded = {
        f"{text} {'.' * (limit - len(text) - 1 + extra)}"
        for text in sorted(found)[:50]
        for extra in (0, 1)
        if len(text) < limit - 1
    }
    return sorted(found | padded)


CORPUS = _corpus()


def test_the_corpus_exercises_the_rules() -> None:
    assert len(CORPUS) > 500
    assert sum(1 for t in CORPUS if text_rules.runner_mentions(t)) > 50
    assert sum(1 for t in CORPUS if text_rules.topic_mentions(t)) > 20
    assert any(len(t) == patient_facts.CONCEPT_TEXT_CHARS for t in CORPUS)
    assert any(len(t) == patient_facts.CONCEPT_TEXT_CHARS + 1 for t in CORPUS)


def _record(texts: list[str]) -> list[dict[str, Any]]:
    """Each text as a diagnosis's text, a visit's reason and a note; low back pain coded on
    every other Condition, so coded and uncoded ones are read."""
    resources: list[dict[str, Any]] = [patient()]
    for n, text in enumerate(texts):
        codings = [coding(SNOMED, "279039007", "Low back pain")] if n % 2 else []
        resources.append(
            condition(
                f"c{n}",
                *codings,
                text=text,
                recorded="2026-10-01",
                notes=[text],
                encounter=f"Encounter/e{n}",
            )
        )
        resources.append(
            {
                "resourceType": "Encounter",
                "id": f"e{n}",
                "period": {"start": "2026-10-01"},
                "reasonCode": [{"text": text}],
            }
        )
    return resources


def test_kept_concept_readings_give_the_facts_a_fresh_reading_gives(
    content: Content, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [_record(CORPUS[n : n + 100]) for n in range(0, len(CORPUS), 100)]
    patient_facts._concept_reading.cache_clear()
    kept = [[facts_of(r, content) for r in records] for _ in range(2)]  # read, then kept
    monkeypatch.setattr(patient_facts, "_concept_reading", patient_facts._text_reading)
    fresh = [facts_of(r, content) for r in records]
    assert kept[0] == fresh
    assert kept[1] == fresh
    assert sum(len(f.runner) + len(f.texts) + len(f.pregnancy) for f in fresh) > 200


def test_kept_hip_or_groin_answers_give_the_facts_a_fresh_answer_gives(
    content: Content, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every text as a diagnosis's name and as a local coding's display: the hip or groin pain
    the rule counts is the same whether each short text's answer is kept or found afresh."""
    texts = [*CORPUS, "Pain in left hip", "R groin pain", "Hip pain " + "x" * 300]
    records = [
        [
            patient(),
            *(
                condition(
                    f"c{n}",
                    coding("http://ehr.example.org/dx", f"d{n}", text),
                    text=text,
                    recorded="2026-10-01",
                )
                for n, text in enumerate(chunk)
            ),
            *(
                condition(
                    f"d{n}",
                    coding("http://ehr.example.org/dx", f"e{n}", text),
                    recorded="2026-10-01",
                )
                for n, text in enumerate(chunk)
            ),
        ]
        for chunk in (texts[n : n + 100] for n in range(0, len(texts), 100))
    ]
    patient_facts._concept_hip_or_groin.cache_clear()
    kept = [[facts_of(r, content).hip_pain for r in records] for _ in range(2)]
    monkeypatch.setattr(patient_facts, "_concept_hip_or_groin", text_rules.names_hip_or_groin_pain)
    fresh = [facts_of(r, content).hip_pain for r in records]
    assert kept[0] == fresh
    assert kept[1] == fresh
    assert sum(map(len, fresh)) >= 6  # the three above, twice each, and the corpus's own


def test_notes_and_long_texts_are_not_kept() -> None:
    patient_facts._concept_reading.cache_clear()
    note = "Avid marathon runner, 40 mpw; history of stress fracture."
    long_name = "Low back pain " + "x" * patient_facts.CONCEPT_TEXT_CHARS
    facts = facts_of([patient(), condition("c1", text=long_name, notes=[note])], load_content())
    assert facts.runner
    assert facts.texts
    assert patient_facts._concept_reading.cache_info().currsize == 0
    patient_facts._concept_hip_or_groin.cache_clear()
    facts_of([patient(), condition("c2", text="Hip pain " + "x" * 300)], load_content())
    assert patient_facts._concept_hip_or_groin.cache_info().currsize == 0


def _dropped_one_by_one(patient_id: str, resources: list[msgspec.Struct]) -> list[bool]:
    """Prefetch's rule for another patient's resource, applied to each resource afresh."""
    patient = f"Patient/{patient_id}"
    dropped = []
    for resource in resources:
        subject = getattr(resource, "subject", None)
        ref = (
            normalise_reference(subject.reference) if isinstance(subject, lean.Reference) else None
        )
        dropped.append(ref is not None and ref.startswith("Patient/") and ref != patient)
    return dropped


@pytest.mark.parametrize("patient_id", ["p1", "p1\n", "a.b-C9"])
def test_subjects_read_once_per_call_drop_what_reading_each_drops(patient_id: str) -> None:
    subjects = [
        "Patient/p1",
        " Patient/p1 ",
        "Patient/p1\n",
        "https://ehr.example.org/fhir/Patient/p1",
        "https://ehr.example.org/fhir/Patient/p1/_history/3",
        "Patient/p2",
        "https://ehr.example.org/fhir/Patient/p2",
        "Patient/a.b-C9",
        "Group/p1",
        "urn:uuid:0b6f5e9c-1d2e-4f3a-8b7c-9d0e1f2a3b4c",
        "",
        None,
    ]
    resources: list[msgspec.Struct] = [lean.Patient(id="p1")]
    for n, subject in enumerate(subjects * 2):  # each subject twice: the second one is kept
        reference = lean.Reference(reference=subject)
        resources.append(lean.Condition(id=f"c{n}", subject=reference))
        resources.append(lean.Observation(id=f"o{n}", subject=reference))
    resources.append(lean.Observation(id="no-subject"))
    stats = ResolveStats()
    kept = _unique(patient_id, resources, stats)
    dropped = _dropped_one_by_one(patient_id, resources)
    assert kept == tuple(r for r, d in zip(resources, dropped, strict=True) if not d)
    assert stats.other_patient == sum(dropped) > 0


_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def _date_read_afresh(value: str | None) -> date | None:
    """parse_date as it read every value before days were kept."""
    if not value:
        return None
    m = _FHIR_DATE.match(value.strip())
    if m is None:
        return None
    year = int(m.group(1))
    if not 1800 <= year <= 2200:
        return None
    try:
        return date(year, int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


DATES = [
    None,
    "",
    "   ",
    "2025",
    "2025-06",
    "2025-06-30",
    "2025-06-31",
    "2025-02-29",
    "2024-02-29",
    " 2019-03-04T10:00:00-05:00",
    "2019-03-04T10:00:00-05:00\n",
    "\u2003\t2019-03-04",
    "2019 -03-04",
    "2019-3-4",
    "1799-12-31",
    "1800-01-01",
    "2200-12-31",
    "2201-01-01",
    "\u0662\u0660\u0661\u0669-03-04",  # Arabic-Indic digits: \d and int() read them
    "\uff12\uff10\uff11\uff19-03-04",  # full-width digits
    "20190304",
    "2019-03-04junk",
    "2019-13-01",
    "0000-01-01",
    "x2019-03-04",
]


@given(st.one_of(st.sampled_from(DATES), st.text(max_size=30), st.from_regex(_FHIR_DATE)))
@settings(max_examples=500, deadline=None)
def test_kept_days_equal_each_value_read_afresh(value: str | None) -> None:
    assert parse_date(value) == _date_read_afresh(value)
    assert parse_date(value) == _date_read_afresh(value)  # now from what was kept


def test_long_values_keep_only_their_day() -> None:
    _calendar_date.cache_clear()
    assert parse_date("2019-03-04T10:00:00-05:00" + " " * 10_000) == date(2019, 3, 4)
    assert parse_date("2019-03-04T23:59:59Z") == date(2019, 3, 4)
    assert _calendar_date.cache_info().currsize == 1


def _codings_of_every_value_set(terms: Terminology) -> list[dict[str, str]]:
    """A coding for every code of every value set, under each URI of its system; a prefix entry
    ("M54.4*") as two codes under it; a SNOMED CT code as a post-coordinated expression too."""
    found: list[dict[str, str]] = []
    for vs in terms.spec.valuesets.values():
        for entry in vs.codes:
            codes = [entry.code]
            if entry.code.endswith("*"):
                stem = entry.code.rstrip("*")
                codes = [stem, f"{stem}9"]
            elif entry.system == "snomed":
                codes.append(f"{entry.code} |x|:363698007=54735007")
            for uri in terms.spec.systems[entry.system]:
                found.extend(coding(uri, code) for code in codes)
    return found


def test_a_concept_matches_only_value_sets_its_codings_are_in(content: Content) -> None:
    terms = content.terminology
    codings = _codings_of_every_value_set(terms)
    assert len(codings) > 300
    lean_codings = [lean.Coding(system=c["system"], code=c["code"]) for c in codings]
    for n, one in enumerate(lean_codings):
        other = lean_codings[(n * 7 + 3) % len(codings)]
        for concept in (
            lean.CodeableConcept(coding=(one,)),
            lean.CodeableConcept(coding=(other, one)),
        ):
            kinds = terms.valuesets_of(concept)
            for vs_id in terms.valueset_ids():
                if terms.match(vs_id, concept) is not None:
                    assert vs_id in kinds, (vs_id, one)


def test_a_single_coding_s_value_sets_are_the_same_looked_up_or_kept(content: Content) -> None:
    """``valuesets_of`` answers a single coding seen before from the lookup cache: the same
    value sets as a cold lookup, every time, and none for a coding without system or code."""
    terms = content.terminology
    codings = [
        lean.Coding(system=c["system"], code=c["code"]) for c in _codings_of_every_value_set(terms)
    ]
    codings += [lean.Coding(system=None, code=c.code) for c in codings[:20]]
    codings += [lean.Coding(system=c.system, code=None) for c in codings[:20]]
    fresh = Terminology(terms.spec, terms.accept_marks)
    expected = [
        fresh._compute(one.system, one.code).valuesets if one.system and one.code else frozenset()
        for one in codings
    ]
    assert sum(1 for kinds in expected if kinds) > 300
    for _ in range(2):  # cold, then kept
        found = [terms.valuesets_of(lean.CodeableConcept(coding=(one,))) for one in codings]
        assert found == expected


def test_conditions_of_every_code_map_as_with_every_value_set_looked_at(
    content: Content, monkeypatch: pytest.MonkeyPatch
) -> None:
    codings = _codings_of_every_value_set(content.terminology)
    resources: list[dict[str, Any]] = [patient()]
    for n, one in enumerate(codings):
        other = codings[(n * 7 + 3) % len(codings)]
        resources.append(
            condition(
                f"c{n}",
                *([one] if n % 3 else [other, one]),
                recorded="2026-10-01",
                clinical=("active", "resolved", None)[n % 3],
                body_sites=[{"text": "left sacrum"}] if n % 5 == 0 else [],
            )
        )
    fast = facts_of(resources, content)
    monkeypatch.setattr(
        patient_facts._Mapper,
        "_match",
        lambda self, vs_id, concept, kinds: self.terms.match(vs_id, concept),
    )
    assert fast == facts_of(resources, content)
    assert len(fast.pains) > 50
    assert len(fast.risk_conditions) > 50
    assert len(fast.diagnoses) > 10


def _lean_structs() -> list[type[msgspec.Struct]]:
    return [
        value
        for value in vars(lean).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value is not msgspec.Struct
    ]


def test_lean_views_hold_no_container_a_cycle_could_pass_through() -> None:
    """The lean views are not tracked by the cyclic GC (gc=False: fewer objects for each
    collection to walk, a call allocates hundreds of them). That is safe only while no view can
    be part of a reference cycle: frozen, and every field immutable (text, numbers, other views,
    tuples of them, undecoded JSON)."""
    allowed = (msgspec.inspect.StrType, msgspec.inspect.FloatType, msgspec.inspect.NoneType)
    seen: set[type] = set()

    def check(t: msgspec.inspect.Type, where: str) -> None:
        if isinstance(t, msgspec.inspect.UnionType):
            for member in t.types:
                check(member, where)
        elif isinstance(t, msgspec.inspect.VarTupleType):
            check(t.item_type, where)
        elif isinstance(t, msgspec.inspect.StructType):
            if t.cls in seen:
                return
            seen.add(t.cls)
            config = t.cls.__struct_config__
            assert config.frozen, t.cls
            assert config.gc is False, t.cls
            for f in t.fields:
                check(f.type, f"{t.cls.__name__}.{f.name}")
        else:
            assert isinstance(t, (*allowed, msgspec.inspect.RawType)), (where, t)

    structs = _lean_structs()
    for cls in structs:
        check(msgspec.inspect.type_info(cls), cls.__name__)
    assert set(structs) <= seen
    decoded = lean.decode_fast(
        json.dumps(
            {
                "resourceType": "Bundle",
                "entry": [{"resource": condition("c1", coding(SNOMED, "279039007"), notes=["x"])}],
            }
        ).encode()
    )
    assert isinstance(decoded, lean.TypedBundle)
    resource = decoded.entry[0].resource
    assert isinstance(resource, lean.Condition)
    assert not any(gc.is_tracked(x) for x in (decoded, decoded.entry[0], resource, resource.code))


def test_conditions_skipped_as_unread_give_the_facts_mapping_them_gives(
    content: Content, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Condition in no value set, without notes, whose name the text rules find nothing in is
    not mapped (issue 12): tried on every text of the corpus as an uncoded diagnosis's name and
    as a note, on hip and groin pain named in a display only, and on coded diagnoses."""
    resources: list[dict[str, Any]] = [patient()]
    for n, text in enumerate(CORPUS):
        resources.append(condition(f"t{n}", text=text, recorded="2026-10-01"))
        resources.append(
            condition(
                f"n{n}",
                coding(SNOMED, "195662009", "Acute viral pharyngitis"),
                notes=[text],
                onset="2026-09-20",
            )
        )
    resources.append(
        condition("d1", coding(SNOMED, "1234567", "Pain in left hip"), recorded="2026-10-01")
    )
    resources.append(condition("s1", coding(SNOMED, "38341003", "Hypertension")))
    resources.extend(
        condition(f"c{n}", one, recorded="2026-10-01", clinical="active")
        for n, one in enumerate(_codings_of_every_value_set(content.terminology))
    )
    skipping = facts_of(resources, content)
    monkeypatch.setattr(patient_facts, "_nothing_to_read", lambda *_: False)
    assert skipping == facts_of(resources, content)
    assert skipping.hip_pain
    assert len(skipping.runner) > 100
    assert len(skipping.texts) > 50


def _prefetch_values() -> list[Any]:
    """Prefetch values of every shape: the FHIR examples (resources of many types, Bundles of
    every kind), null, and what the one pass refuses but the two steps read: a Bundle holding a
    type the services do not read, a number sent as a string, an OperationOutcome entry."""
    values: list[Any] = [None, patient()]
    for path in sorted(shared("fhir-examples").rglob("*.json")):
        values.append(json.loads(path.read_bytes()))
    subject = {"reference": "Patient/p1"}
    bmi = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": subject,
        "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]},
        "valueQuantity": {"value": "31.5", "unit": "kg/m2"},
    }
    values.append(bmi)
    values.append(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "Provenance", "id": "pr1"}},
                {"resource": condition("c1", text="Left buttock pain", recorded="2026-10-01")},
                {"resource": {"resourceType": "OperationOutcome", "issue": []}},
                {"resource": {**bmi, "valueQuantity": {"value": 31.5}}},
            ],
        }
    )
    return values


class _Refusing:
    def decode(self, body: bytes) -> Any:
        raise msgspec.DecodeError("the one pass is off")


def _hook_body(prefetch: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"patientId": "p1"},
            "prefetch": prefetch,
        }
    ).encode()


_KEYS = tuple(
    PrefetchKey(name, f"{name}?patient={{{{context.patientId}}}}", "search", name)
    for name in ("patient", "value")
)


async def _resolved(value: Any, http: httpx.AsyncClient) -> Resolved | str:
    """What the prefetch resolves to (no fhirServer: nothing fetched), or the error."""
    try:
        request = wire.decode_request(_hook_body({"patient": patient(), "value": value}))
        return await resolve(
            request, _KEYS, http, deadline=1e12, max_pages=1, budget=ByteBudget(1 << 30, 1 << 30)
        )
    except (CdsError, wire.RequestError) as exc:
        return f"{type(exc).__name__}: {exc}"


async def _all_resolved(values: list[Any]) -> list[Resolved | str]:
    async with httpx.AsyncClient() as http:  # never used: no fhirServer
        return [await _resolved(v, http) for v in values]


def test_prefetch_read_with_the_request_resolves_as_read_in_two_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request and its prefetch values are decoded in one pass when every value is of a
    type the services read, strictly typed (issue 12); otherwise each value is read on its own
    terms. Both ways give the same resources, counts and errors."""
    values = _prefetch_values()
    one_pass = asyncio.run(_all_resolved(values))
    taken = []
    for value in values:
        prefetch = wire.decode_request(_hook_body({"value": value})).prefetch
        assert prefetch is not None
        taken.append(not isinstance(prefetch["value"], msgspec.Raw))
    monkeypatch.setattr(wire, "_DECODED", _Refusing())
    assert one_pass == asyncio.run(_all_resolved(values))
    assert sum(taken) > 20  # the one pass read these
    assert len(taken) - sum(taken) >= 4  # and left these to the two steps
    assert sum(isinstance(r, str) for r in one_pass) >= 1  # an error, the same both ways
    assert sum(len(r.resources) for r in one_pass if not isinstance(r, str)) > 50


def _observations_of_every_kind(terms: Terminology) -> list[dict[str, Any]]:
    """An Observation for each LOINC code of every value set (a value, a value and a note, a
    text value, an answer), each status, and the FHIR examples' Observations."""
    found: list[dict[str, Any]] = []
    loinc = sorted(
        {c["code"] for c in _codings_of_every_value_set(terms) if "loinc" in c["system"]}
    )
    statuses = ("final", "amended", "preliminary", "entered-in-error", "cancelled")
    for n, code in enumerate(loinc):
        day = f"2026-{1 + n % 9:02d}-{1 + n % 27:02d}"
        found.append(observation(f"v{n}", code, value=18.0 + n % 30, unit="kg", effective=day))
        found.append(
            observation(
                f"s{n}", code, value=60.0, unit="[lb_av]", effective=day, status=statuses[n % 5]
            )
        )
        found.append(
            observation(
                f"n{n}", code, value=5.0, unit="min/wk", effective=day, notes=["runs 30 mpw"]
            )
        )
        found.append(
            observation(f"t{n}", code, value_string="Running, 5 days a week", effective=day)
        )
        # Coded answers: running, pregnant, breastfeeding (evidence, not measurements).
        for answer in ("LA11836-6", "LA15173-0", "LA29252-6"):
            found.append(observation(f"a{n}-{answer}", code, value_code=answer, effective=day))
    for path in sorted(shared("fhir-examples", "Observation").glob("*.json")):
        example = json.loads(path.read_bytes())
        example["subject"] = {"reference": "Patient/p1"}
        found.append(example)
    return found


def test_measurements_made_when_read_equal_those_made_at_once(
    content: Content, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Observations that can give only a measurement are mapped when the rule first reads the
    measurements (issue 12): the facts, measurements and their order included, are those of
    mapping every Observation at once."""
    resources = [patient(), *_observations_of_every_kind(content.terminology)]
    later = facts_of(resources, content)
    assert isinstance(later.measurements, Measurements)
    monkeypatch.setattr(patient_facts, "_plain_measurement", lambda *_: False)
    at_once = facts_of(resources, content)
    assert later == at_once
    assert list(later.measurements) == list(at_once.measurements)
    assert len(at_once.measurements) > 20
    assert at_once.runner  # the text values, notes and coded answers were read at once
    assert any(r.code for r in at_once.runner)
    assert at_once.pregnancy


def test_measurements_read_as_the_tuple_they_stand_for() -> None:
    one = Measurement("Observation/o1", MeasureKind.BMI, 17.5, date(2026, 10, 1))
    two = Measurement("Observation/o2", MeasureKind.WEIGHT_KG, 50.0, date(2026, 10, 2))
    made: list[int] = []

    def make() -> tuple[Measurement, ...]:
        made.append(1)
        return (one, two)

    lazy = Measurements(make)
    assert made == []
    assert lazy == (one, two)
    assert (one, two) == lazy
    assert lazy == Measurements(lambda: [one, two])
    assert lazy not in ((two, one), ())
    assert hash(lazy) == hash((one, two))
    assert list(lazy) == [one, two]
    assert lazy[1] == two
    assert lazy[:1] == (one,)
    assert len(lazy) == 2
    assert made == [1]  # made once, however often read


def test_a_request_over_the_one_pass_size_is_read_in_two_steps() -> None:
    """Over ONE_PASS_MAX_BYTES the one pass is not tried (a prefetch key no service reads, or a
    value it refuses late, would make a big body cost two full passes): same request, raw
    prefetch."""
    padding = "x" * wire.ONE_PASS_MAX_BYTES
    small = wire.decode_request(_hook_body({"value": patient()}))
    big = wire.decode_request(_hook_body({"value": patient(), "unread": padding}))
    assert small.prefetch is not None
    assert big.prefetch is not None
    assert isinstance(small.prefetch["value"], lean.Patient)
    assert isinstance(big.prefetch["value"], msgspec.Raw)
    assert (big.hookInstance, big.context) == (small.hookInstance, small.context)
