"""Trying the service without an EHR: demo patients, loading them into a FHIR server, and firing
a patient-view hook the way an EHR would (optionally doing the prefetch itself).

Used by the ``cds-service demo-load`` and ``cds-service fire`` commands and by the tests.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from cds_service.platform.fhir_client import FHIR_JSON
from cds_service.platform.prefetch import fill_template
from cds_service.services.registry import load_services
from cds_service.settings import CARDS_DIR

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The examples' dates are written as of this day; demo-load moves them to the current date.
EXAMPLES_DATE = date(2026, 11, 25)
Resource = dict[str, Any]


class SandboxError(Exception):
    """A failure a person can act on; the message says what happened and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------- demo patients
@dataclass(frozen=True)
class DemoPatient:
    key: str  # runner | office-worker | mri-confirmed
    description: str
    example: str  # file under examples/ whose prefetch holds the record


DEMO_PATIENTS = (
    DemoPatient(
        "runner",
        "runner with left SI-joint pain and risk factors (suspicion card)",
        "patient-view-runner.json",
    ),
    DemoPatient(
        "office-worker",
        "non-runner with bilateral low back pain (no card)",
        "patient-view-no-card.json",
    ),
    DemoPatient(
        "mri-confirmed",
        "runner with an MRI-confirmed sacral stress fracture (rehab plan card)",
        "patient-view-mri-confirmed.json",
    ),
)
DEMO_PREFIX = "sacral-bsi-demo"
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def resources_of_request(path: Path) -> list[Resource]:
    """The resources in a patient-view request's prefetch, one copy each."""
    body = json.loads(path.read_text(encoding="utf-8"))
    seen: dict[tuple[str, str], Resource] = {}
    for value in (body.get("prefetch") or {}).values():
        if not value:
            continue
        items = (
            [e["resource"] for e in value.get("entry", [])]
            if value["resourceType"] == "Bundle"
            else [value]
        )
        for resource in items:
            seen[(resource["resourceType"], resource["id"])] = resource
    return list(seen.values())


def shift_dates(value: Any, days: int) -> Any:
    """Every full date and dateTime in a resource moved by ``days``; the rest unchanged."""
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str) and days:
        m = _DATE.match(value)
        if m:
            try:
                moved = date.fromisoformat(m.group(1)) + timedelta(days=days)
            except ValueError:
                return value
            return moved.isoformat() + value[10:]
    return value


def rename(resources: list[Resource], prefix: str) -> list[Resource]:
    """Give the Patient the id ``<prefix>`` and every other resource ``<prefix>-<id>``, and
    rewrite the references between them."""

    def new_id(r: Resource) -> str:
        return prefix if r["resourceType"] == "Patient" else f"{prefix}-{r['id']}"

    ids = {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{new_id(r)}" for r in resources}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if isinstance(out.get("reference"), str) and out["reference"] in ids:
                out["reference"] = ids[out["reference"]]
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    renamed = [walk(r) for r in resources]
    for old, resource in zip(resources, renamed, strict=True):
        resource["id"] = new_id(old)
    return renamed


def demo_records(today: date) -> dict[str, list[Resource]]:
    """The demo patients' records, ids prefixed, dates moved so the record is as recent today as
    the examples are on the day they were written."""
    shift = (today - EXAMPLES_DATE).days
    records: dict[str, list[Resource]] = {}
    for demo in DEMO_PATIENTS:
        resources = resources_of_request(EXAMPLES / demo.example)
        records[demo.key] = shift_dates(rename(resources, f"{DEMO_PREFIX}-{demo.key}"), shift)
    return records


def patient_id(resources: Iterable[Resource]) -> str:
    return next(str(r["id"]) for r in resources if r["resourceType"] == "Patient")


def transaction(resources: Iterable[Resource]) -> Resource:
    """A transaction Bundle that PUTs every resource at its own id (loading twice is harmless)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# OperationOutcome kinds (issue.diagnostics) meaning the FHIR server could not be reached.
UNREACHABLE = frozenset({"fhir_unreachable", "fhir_timeout"})


def _kind(response: httpx.Response) -> str | None:
    try:
        body = response.json()
        kind = body["issue"][0]["diagnostics"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return kind if isinstance(kind, str) else None


def _diagnostics(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    issues = body.get("issue", []) if isinstance(body, dict) else []
    texts = [_issue_text(i) for i in (issues if isinstance(issues, list) else [])]
    return "; ".join(t for t in texts if t)[:300] or f"HTTP {response.status_code}"


def _issue_text(issue: Any) -> str:
    if not isinstance(issue, dict):
        return ""
    details = issue.get("details")
    text = details.get("text") if isinstance(details, dict) else None
    text = text or issue.get("diagnostics")
    return text if isinstance(text, str) else ""


async def load(
    http: httpx.AsyncClient, fhir_server: str, resources: list[Resource], token: str | None = None
) -> None:
    """POST the resources as one transaction Bundle; raise SandboxError with the server's reason."""
    url = fhir_server.rstrip("/")
    response = await _reach(
        http.post(url, json=transaction(resources), headers=_headers(token)),
        f"the FHIR server at {url}",
    )
    if response.status_code not in (200, 201):
        raise SandboxError(
            f"The FHIR server at {url} refused the transaction "
            f"(HTTP {response.status_code}): {_diagnostics(response)}"
        )


# ---------------------------------------------------------------------------- firing a hook
@functools.cache
def service_ids() -> dict[str, str]:
    """The service of each hook, by its id, as the registry lists them."""
    return {s.definition.hook: s.definition.id for s in load_services(CARDS_DIR)}


_CPT = "http://www.ama-assn.org/go/cpt"
_SNOMED = "http://snomed.info/sct"
# Draft orders as an EHR sends them (CPT, as the CDS Hooks Sandbox's PAMA tab does), with the
# reason the order is placed for.
ORDERS: dict[str, tuple[str, str, str, str]] = {
    # kind: (CPT code, display, SNOMED CT reason code, reason display)
    "xray-lumbar": (
        "72100",
        "Radiologic examination, spine, lumbosacral; 2 or 3 views",
        "279039007",
        "Low back pain",
    ),
    "xray-pelvis": (
        "72170",
        "Radiologic examination, pelvis; 1 or 2 views",
        "202487003",
        "Sacroiliac joint pain",
    ),
    "xray-si-joints": (
        "72202",
        "Radiologic examination, sacroiliac joints; 3 or more views",
        "202487003",
        "Sacroiliac joint pain",
    ),
    "xray-sacrum": (
        "72220",
        "Radiologic examination, sacrum and coccyx, minimum of 2 views",
        "279039007",
        "Low back pain",
    ),
    "ct-lumbar": (
        "72131",
        "Computed tomography, lumbar spine; without contrast material",
        "279039007",
        "Low back pain",
    ),
    "ct-pelvis": (
        "72192",
        "Computed tomography, pelvis; without contrast material",
        "202487003",
        "Sacroiliac joint pain",
    ),
    "si-injection": (
        "27096",
        "Injection procedure for sacroiliac joint, anesthetic/steroid, with image guidance",
        "202487003",
        "Sacroiliac joint pain",
    ),
    "physio-si": (
        "97161",
        "Physical therapy evaluation: low complexity",
        "202487003",
        "Sacroiliac joint pain",
    ),
    "mri-pelvis": (
        "72195",
        "Magnetic resonance (eg, proton) imaging, pelvis; without contrast material(s)",
        "202487003",
        "Sacroiliac joint pain",
    ),
}


def draft_order(kind: str, patient: str, number: int = 1) -> Resource:
    """A draft ServiceRequest of ``kind`` (a key of ORDERS) for ``patient``."""
    code, display, reason, reason_display = ORDERS[kind]
    return {
        "resourceType": "ServiceRequest",
        "id": f"draft-order-{number}",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": _CPT, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "reasonCode": [
            {"coding": [{"system": _SNOMED, "code": reason, "display": reason_display}]}
        ],
    }


def hook_request(
    fhir_server: str,
    patient: str,
    token: str | None = None,
    *,
    hook: str = "patient-view",
    orders: Iterable[str] = (),
) -> Resource:
    """The request an EHR sends for ``hook``; order hooks carry ``orders`` (keys of ORDERS) as
    draft orders, all of them selected for order-select."""
    context: Resource = {"userId": "Practitioner/cds-service-sandbox", "patientId": patient}
    if hook != "patient-view":
        drafts = [draft_order(kind, patient, n) for n, kind in enumerate(orders, start=1)]
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
        if hook == "order-select":
            context["selections"] = [f"ServiceRequest/{d['id']}" for d in drafts]
    body: Resource = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "fhirServer": fhir_server.rstrip("/"),
        "context": context,
    }
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Condition.read user/Observation.read "
            "user/DiagnosticReport.read user/CarePlan.read user/CarePlan.write "
            "user/ServiceRequest.read",
            "subject": "cds-service-sandbox",
        }
    return body


async def prefetch(
    http: httpx.AsyncClient,
    fhir_server: str,
    templates: dict[str, str],
    patient: str,
    token: str | None = None,
    max_pages: int = 20,
) -> dict[str, Any]:
    """Fill every prefetch template from the FHIR server as an EHR would, every page of each
    search merged into one searchset Bundle. A missing patient raises SandboxError."""
    base = fhir_server.rstrip("/")

    async def run(key: str, template: str) -> tuple[str, Any]:
        url = f"{base}/{fill_template(template, {'patientId': patient})}"
        pages: list[Resource] = []
        for _ in range(max_pages):
            response = await _reach(
                http.get(url, headers=_headers(token)), f"the FHIR server for {url}"
            )
            if response.status_code == 404 and key == "patient":
                raise SandboxError(f"Patient {patient} was not found on {base}.")
            if response.status_code != 200:
                raise SandboxError(
                    f"The FHIR server answered HTTP {response.status_code} to {url}: "
                    f"{_diagnostics(response)}"
                )
            page = response.json()
            if page.get("resourceType") != "Bundle":
                return key, page
            pages.append(page)
            url = next((k["url"] for k in page.get("link", []) if k.get("relation") == "next"), "")
            if not url:
                break
        merged = dict(pages[0])
        merged["entry"] = [e for p in pages for e in p.get("entry", [])]
        merged.pop("link", None)
        return key, merged

    results = await asyncio.gather(*(run(k, t) for k, t in templates.items()))
    return dict(results)


async def _reach(call: Awaitable[httpx.Response], where: str) -> httpx.Response:
    """The response, or a SandboxError (exit code 2) saying ``where`` could not be reached."""
    try:
        return await call
    except httpx.TransportError as exc:
        raise SandboxError(
            f"Cannot reach {where} ({type(exc).__name__}). Is it running?", 2
        ) from None


async def discovery(client: httpx.AsyncClient, service_id: str = "sacral-bsi") -> dict[str, str]:
    """A service's prefetch templates, from the discovery endpoint."""
    response = await _reach(client.get("/cds-services"), f"the CDS service at {client.base_url}")
    if response.status_code != 200:
        raise SandboxError(f"The CDS service's discovery answered HTTP {response.status_code}.")
    service = next(
        (s for s in response.json().get("services", []) if s.get("id") == service_id), None
    )
    if service is None:
        raise SandboxError(f"The CDS service does not offer the {service_id} service.")
    templates: dict[str, str] = service.get("prefetch", {})
    return templates


def service_path(hook: str) -> str:
    return f"/cds-services/{service_ids()[hook]}"


async def fire(
    client: httpx.AsyncClient,
    body: Resource,
    bearer: str | None = None,
    unauthorized_hint: str | None = None,
) -> Resource:
    """POST the hook request to the service of its hook (with ``bearer`` as the EHR's JWT, if
    given); return the response body, or raise SandboxError saying why not
    (``unauthorized_hint`` after a 401)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    response = await _reach(
        client.post(service_path(body["hook"]), json=body, headers=headers),
        f"the CDS service at {client.base_url}",
    )
    if response.status_code != 200:
        reason = _diagnostics(response)
        if response.status_code == 412:
            # The service could not reach the FHIR server: "cannot be reached", as the README says.
            code = 2 if _kind(response) in UNREACHABLE else 1
            raise SandboxError(
                f"The service could not get the data it needs (HTTP 412): {reason}", code
            )
        if response.status_code == 401:
            raise SandboxError(
                f"The service refused the call (HTTP 401: {reason}). "
                + (
                    unauthorized_hint
                    or "It verifies a signed JWT on every call: sign the calls with --sign (a "
                    "development key; start the service with the settings `cds-service "
                    "dev-token` prints), or run the service on loopback with "
                    "CDS_REQUIRE_JWT=false."
                )
            )
        raise SandboxError(f"The service answered HTTP {response.status_code}: {reason}")
    result: Resource = response.json()
    return result


def demo_summary(records: dict[str, list[Resource]]) -> Iterator[tuple[str, str, str]]:
    """(key, patient id, description) of each demo patient."""
    for demo in DEMO_PATIENTS:
        yield demo.key, patient_id(records[demo.key]), demo.description
