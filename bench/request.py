"""The benchmark's requests, built from a Synthea patient of the shared data folder: patient-view,
and order-select with a plain X-ray of the pelvis being ordered (issue 10).

The patient is the one whose Bundle holds closest to ``TARGET_OBSERVATIONS`` Observations (ties:
the body closest to ``TARGET_BODY_BYTES``, then the file name), so every run uses the same one.
Prefetch is filled two ways:

- ``patient_view_request``: every key of the service's discovery document, as an EHR that ignores
  code and category filters would fill it: all the patient's Observations under ``observations``
  (the body grows with the record; the in-process sizes scale it);
- ``discovery_request`` (issue 12): each prefetch template of the service's discovery document
  run, as an EHR runs it, against the patient's Bundle: the FHIR search it names, with its search
  parameters applied (``patient``, ``code``, ``category``, ``status``, ``_include``; ``_count``
  is the page size, and the pages are merged into one searchset Bundle, as ``cds-service fire``
  does). What the service itself asks for, so what it receives from a real EHR.
"""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cds_service.platform import wire
from cds_service.platform.prefetch import fill_template
from cds_service.platform.registry import ServiceRegistry
from cds_service.sandbox import service_ids, service_path
from cds_service.services.registry import load_services
from cds_service.services.sacral_bsi.content import load_content
from cds_service.services.sacral_bsi.service import prefetch_keys
from cds_service.settings import CARDS_DIR

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYNTHEA_DIR = SHARED_DATA / "synthea"
SERVICE_PATH = service_path("patient-view")
# The order-select request's draft order: a plain X-ray of the pelvis (CPT), an order the service
# reads in full (card A's rule runs on the record), as the CDS Hooks Sandbox would send it.
XRAY_PELVIS = {
    "resourceType": "ServiceRequest",
    "id": "bench-draft-order",
    "status": "draft",
    "intent": "order",
    "code": {
        "coding": [
            {
                "system": "http://www.ama-assn.org/go/cpt",
                "code": "72170",
                "display": "Radiologic examination, pelvis; 1 or 2 views",
            }
        ]
    },
    "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}],
}
FHIR_BASE = "https://ehr.example.org/fhir"
TARGET_OBSERVATIONS = 150
TARGET_BODY_BYTES = 160_000

Resource = dict[str, Any]


@dataclass(frozen=True)
class Patient:
    file: str
    patient: Resource
    by_type: dict[str, list[Resource]]

    @property
    def id(self) -> str:
        return str(self.patient["id"])

    def of(self, resource_type: str) -> list[Resource]:
        return self.by_type.get(resource_type, [])


@dataclass(frozen=True)
class BenchRequest:
    patient: Patient
    observations: int
    body: bytes
    hook: str = "patient-view"
    # What the request is, in the report: the hook, and how its prefetch was filled.
    name: str = "patient-view"

    @property
    def path(self) -> str:
        return service_path(self.hook)


def require_shared_data() -> None:
    if not SYNTHEA_DIR.is_dir() or not any(SYNTHEA_DIR.glob("*.json")):
        sys.exit(
            f"bench: Synthea patients not found at {SYNTHEA_DIR}.\n"
            "The benchmark builds its request from the shared data folder: clone or copy it to "
            f"{SHARED_DATA} (beside this repository) and run `make bench` again."
        )


def _rewrite_references(node: Any, targets: dict[str, str]) -> Any:
    """``urn:uuid:<id>`` references (transaction Bundle) become ``Type/<id>``, as an EHR sends."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in targets:
                out[key] = targets[value]
            else:
                out[key] = _rewrite_references(value, targets)
        return out
    if isinstance(node, list):
        return [_rewrite_references(item, targets) for item in node]
    return node


def _load_patient(path: Path) -> Patient:
    bundle = json.loads(path.read_bytes())
    resources: list[Resource] = [e["resource"] for e in bundle.get("entry", [])]
    targets = {f"urn:uuid:{r['id']}": f"{r['resourceType']}/{r['id']}" for r in resources}
    by_type: dict[str, list[Resource]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(
            _rewrite_references(resource, targets)
        )
    patients = by_type.get("Patient", [])
    if len(patients) != 1:
        raise SystemExit(f"bench: {path.name} holds {len(patients)} Patient resources, not 1")
    return Patient(path.name, patients[0], by_type)


def pick_patient() -> Patient:
    """The Synthea patient closest to ~150 Observations and a ~160 KB request body."""
    require_shared_data()
    candidates: list[tuple[int, int, str, Patient]] = []
    for path in sorted(SYNTHEA_DIR.glob("*.json")):
        if path.name == "manifest.json":
            continue
        patient = _load_patient(path)
        size = len(build_body(patient, patient.of("Observation")))
        gap = abs(len(patient.of("Observation")) - TARGET_OBSERVATIONS)
        candidates.append((gap, abs(size - TARGET_BODY_BYTES), path.name, patient))
    if not candidates:
        sys.exit(f"bench: no patient Bundles in {SYNTHEA_DIR}")
    return min(candidates, key=lambda c: c[:3])[3]


def _searchset(resources: Iterable[Resource]) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def _prefetch_fillers(
    patient: Patient, observations: list[Resource]
) -> dict[str, Callable[[], Resource]]:
    return {
        "patient": lambda: patient.patient,
        "conditions": lambda: _searchset(patient.of("Condition")),
        "observations": lambda: _searchset(observations),
        "activityNotes": lambda: _searchset([]),
        "diagnosticReports": lambda: _searchset(patient.of("DiagnosticReport")),
        "carePlans": lambda: _searchset(patient.of("CarePlan")),
        "serviceRequests": lambda: _searchset(patient.of("ServiceRequest")),
    }


@functools.cache
def service_prefetch_keys() -> tuple[str, ...]:
    """The keys of the service's discovery document (generated from its value sets)."""
    return tuple(key.name for key in prefetch_keys(load_content().terminology))


def build_body(patient: Patient, observations: list[Resource], hook: str = "patient-view") -> bytes:
    fillers = _prefetch_fillers(patient, observations)
    prefetch: dict[str, Resource] = {}
    for key in service_prefetch_keys():
        if key not in fillers:
            raise SystemExit(
                f"bench: the service's discovery document has prefetch key {key!r}, which the "
                "benchmark does not know how to fill; add it to bench/request.py"
            )
        prefetch[key] = fillers[key]()
    context: Resource = {"userId": "Practitioner/example", "patientId": patient.id}
    if hook == "order-select":
        order = {**XRAY_PELVIS, "subject": {"reference": f"Patient/{patient.id}"}}
        context["selections"] = [f"ServiceRequest/{order['id']}"]
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": order}]}
    request = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "context": context,
        "prefetch": prefetch,
    }
    return json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()


def scaled_observations(patient: Patient, count: int) -> list[Resource]:
    """``count`` Observations: the patient's own, cycled, the copies under new ids."""
    own = patient.of("Observation")
    if not own:
        raise SystemExit(f"bench: {patient.file} has no Observations to scale")
    out: list[Resource] = []
    for number in range(count):
        source = own[number % len(own)]
        if number < len(own):
            out.append(source)
        else:
            out.append({**source, "id": f"{source['id']}-copy{number // len(own)}"})
    return out


def patient_view_request(patient: Patient, observations: int | None = None) -> BenchRequest:
    chosen = (
        patient.of("Observation")
        if observations is None
        else scaled_observations(patient, observations)
    )
    return BenchRequest(
        patient, len(chosen), build_body(patient, chosen), name="patient-view, every Observation"
    )


def order_select_request(patient: Patient) -> BenchRequest:
    """The same patient and prefetch, as an order-select call while an X-ray is ordered."""
    chosen = patient.of("Observation")
    return BenchRequest(
        patient,
        len(chosen),
        build_body(patient, chosen, "order-select"),
        "order-select",
        "order-select, X-ray of the pelvis",
    )


# ---------------------------------------------------------------------------- as an EHR fills it
def discovery_templates(hook: str = "patient-view") -> dict[str, str]:
    """The prefetch templates of the service of ``hook``, read from the discovery document the
    service serves (``GET /cds-services``, the same bytes), as an EHR reads them."""
    registry = ServiceRegistry(*load_services(CARDS_DIR))
    document = json.loads(wire.encode(registry.discovery()))
    service = next(s for s in document["services"] if s["id"] == service_ids()[hook])
    templates: dict[str, str] = service.get("prefetch", {})
    return templates


def _tokens(value: str) -> list[tuple[str | None, str]]:
    """A token search parameter's values: ``system|code`` (that system), ``|code`` (no system),
    ``code`` (any system, returned as ``None``)."""
    out: list[tuple[str | None, str]] = []
    for token in value.split(","):
        system, bar, code = token.rpartition("|")
        out.append((system if bar else None, code))
    return out


def _concept_matches(concept: Any, tokens: list[tuple[str | None, str]]) -> bool:
    """A CodeableConcept with a coding that one of the tokens names (FHIR token search)."""
    if not isinstance(concept, dict):
        return False
    for coding in concept.get("coding", []):
        for system, code in tokens:
            if coding.get("code") != code:
                continue
            if system is None or (coding.get("system") or "") == system:
                return True
    return False


def _about(resource: Resource, reference: str) -> bool:
    """The ``patient`` search parameter: the resource's subject (or patient) is ``reference``."""
    for element in ("subject", "patient"):
        found = resource.get(element)
        if isinstance(found, dict) and found.get("reference") == reference:
            return True
    return False


def _search(patient: Patient, relative: str) -> Resource:
    """Run one FHIR query of a prefetch template against the patient's Bundle: a read gives the
    resource, a search a searchset Bundle (matches in the Bundle's order, then ``_include``d
    resources once each). A parameter the benchmark does not know stops it: filling a template
    by ignoring part of it would measure another payload than an EHR sends."""
    path, _, query = relative.partition("?")
    resource_type, _, resource_id = path.partition("/")
    if resource_id:
        found = [r for r in patient.of(resource_type) if r.get("id") == resource_id]
        if len(found) != 1:
            raise SystemExit(f"bench: {patient.file} has no {path} for the template {relative!r}")
        return found[0]
    matches = list(patient.of(resource_type))
    includes: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=True):
        if name == "patient":
            reference = value if "/" in value else f"Patient/{value}"
            matches = [r for r in matches if _about(r, reference)]
        elif name in ("code", "category"):
            tokens = _tokens(value)
            matches = [
                r
                for r in matches
                if any(
                    _concept_matches(c, tokens)
                    for c in (r.get(name) if name == "category" else [r.get(name)]) or []
                )
            ]
        elif name == "status":
            matches = [r for r in matches if r.get("status") in value.split(",")]
        elif name == "_include":
            source, _, element = value.partition(":")
            if source != resource_type or ":" in element:
                raise SystemExit(f"bench: cannot fill _include={value} of {relative!r}")
            includes.append(element)
        elif name != "_count":  # the page size: every page is merged into one Bundle
            raise SystemExit(
                f"bench: the prefetch template {relative!r} has the search parameter {name!r}, "
                "which the benchmark does not know how to apply; add it to bench/request.py"
            )
    included: dict[str, Resource] = {}
    for element in includes:
        for resource in matches:
            target = (resource.get(element) or {}).get("reference")
            target_type, _, target_id = str(target).partition("/")
            for candidate in patient.of(target_type):
                if candidate.get("id") == target_id:
                    included.setdefault(f"{target_type}/{target_id}", candidate)
    bundle = _searchset(matches)
    bundle["total"] = len(matches)
    bundle["link"] = [{"relation": "self", "url": f"{FHIR_BASE}/{relative}"}]
    bundle["entry"].extend(
        {"fullUrl": f"{FHIR_BASE}/{ref}", "resource": r, "search": {"mode": "include"}}
        for ref, r in included.items()
    )
    return bundle


def discovery_prefetch(patient: Patient, hook: str = "patient-view") -> dict[str, Resource]:
    """Every prefetch template of the discovery document, filled from the patient's Bundle."""
    return {
        key: _search(patient, fill_template(template, {"patientId": patient.id}))
        for key, template in discovery_templates(hook).items()
    }


def discovery_request(patient: Patient) -> BenchRequest:
    """A patient-view call whose prefetch is what the service's own templates ask for (issue 12:
    the payload a real EHR sends it, ~34 KB for a Synthea patient)."""
    prefetch = discovery_prefetch(patient)
    observations = sum(
        1
        for value in prefetch.values()
        for entry in value.get("entry", [])
        if entry["resource"]["resourceType"] == "Observation"
    )
    request = {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "context": {"userId": "Practitioner/example", "patientId": patient.id},
        "prefetch": prefetch,
    }
    body = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()
    return BenchRequest(patient, observations, body, name="patient-view, as discovery asks")
