"""The hook's ``draftOrders`` Bundle -> ``DraftOrder`` facts (issue 10), and the MRI order that
replaces an X-ray or CT draft.

Orders are recognised by code (the order value sets of ``cards/sacral-bsi-orders/``: CPT as EHRs
send it, LOINC, SNOMED CT), else by their name. Only ServiceRequests are read; other request
types (MedicationRequest, ...) are not orders this service has anything to say about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from cds_service.clinical.facts import PainGroup, PatientFacts
from cds_service.clinical.orders import DraftOrder, OrderKind, Region, kind_from_text, region_of
from fhir_mappings import lean
from fhir_mappings.primitives import normalise_reference
from fhir_mappings.terminology import Terminology

# Value set id -> (kind, region): the order value sets of cards/sacral-bsi-orders/valuesets.toml,
# then the MRI value sets of card A's content.
_CODED: tuple[tuple[str, OrderKind, Region | None], ...] = (
    ("order_xray_lumbar", OrderKind.XRAY, "lumbar"),
    ("order_xray_pelvis", OrderKind.XRAY, "pelvis"),
    ("order_xray_sacrum", OrderKind.XRAY, "sacrum"),
    ("order_xray_si_joint", OrderKind.XRAY, "si_joint"),
    ("order_ct_lumbar", OrderKind.CT, "lumbar"),
    ("order_ct_pelvis", OrderKind.CT, "pelvis"),
    ("mri_covers_sacrum", OrderKind.MRI, "sacrum"),
    ("mri_lumbar_only", OrderKind.MRI, "lumbar"),
    ("order_si_injection", OrderKind.SI_INJECTION, "si_joint"),
    ("order_physio", OrderKind.PHYSIO, None),
)
# Statuses of an order being chosen or signed: draft (the spec), and active / on-hold for an
# order re-signed after a change (order-sign: "the orders would typically have a status other
# than 'draft'"). Revoked, completed, entered-in-error and unknown orders are not reviewed.
_REVIEWED_STATUSES = frozenset({"draft", "active", "on-hold"})
_PAMA_EXTENSION = "http://fhir.org/argonaut/Extension/pama-rating"


class DraftOrdersError(ValueError):
    """``draftOrders`` is not a Bundle of resources: ``field`` names where."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SessionOrder:
    """One ServiceRequest of the session: the fact the rule reads, and the resource as the EHR
    sent it (an ``update`` suggestion carries it back whole, changed where it must be)."""

    fact: DraftOrder
    resource: dict[str, Any]
    reference: str  # "ServiceRequest/<id>", or "" when it has no usable id
    aliases: tuple[str, ...] = ()  # its entry's fullUrl, when there is one


# More than any ordering session holds: a larger Bundle is refused (400) rather than read.
MAX_DRAFT_ORDERS = 500
# FHIR id characters; longer than R4's 64, as some EHRs send (the spec's own examples do).
_ORDER_ID = re.compile(r"(?=.*[A-Za-z0-9])[A-Za-z0-9\-.]{1,256}")  # not "." or ".."
_HISTORY = re.compile(r"/_history/[^/]*$")


def read_draft_orders(
    bundle: dict[str, Any], terms: Terminology, facts: PatientFacts
) -> list[SessionOrder]:
    """The session's ServiceRequests under review (statuses above), other request types and
    orders for another patient left out; a DraftOrdersError names what is malformed."""
    entries = bundle.get("entry", [])
    if bundle.get("resourceType") != "Bundle" or not isinstance(entries, list):
        raise DraftOrdersError(
            "context.draftOrders must be a FHIR Bundle of the draft orders.", "context.draftOrders"
        )
    if len(entries) > MAX_DRAFT_ORDERS:
        raise DraftOrdersError(
            f"context.draftOrders holds {len(entries)} entries; at most {MAX_DRAFT_ORDERS} are "
            "read.",
            "context.draftOrders",
        )
    si_conditions = {p.source for p in facts.pains if p.group is PainGroup.SI_JOINT}
    patient = f"Patient/{facts.patient_id}"
    orders: list[SessionOrder] = []
    for n, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{n}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(resource, dict):
            raise DraftOrdersError(f"{where} has no resource.", where)
        if resource.get("resourceType") != "ServiceRequest":
            continue
        try:
            request = msgspec.convert(resource, lean.ServiceRequest, strict=False)
        except msgspec.ValidationError as exc:
            raise DraftOrdersError(
                f"{where}.resource is not a FHIR ServiceRequest: {exc}.", f"{where}.resource"
            ) from None
        if (request.status or "draft") not in _REVIEWED_STATUSES:
            continue
        subject = normalise_reference(request.subject.reference if request.subject else None)
        if subject is not None and subject.startswith("Patient/") and subject != patient:
            continue  # an order for another patient: not this patient's card
        usable_id = request.id if request.id and _ORDER_ID.fullmatch(request.id) else None
        full_url = entry.get("fullUrl")
        orders.append(
            SessionOrder(
                _fact(request, terms, si_conditions),
                resource,
                f"ServiceRequest/{usable_id}" if usable_id else "",
                (full_url,) if isinstance(full_url, str) and full_url else (),
            )
        )
    return orders


def selected(orders: Iterable[SessionOrder], selections: Iterable[str]) -> list[SessionOrder]:
    """The orders ``selections`` names, in the order they were named, each once. A selection
    is "ServiceRequest/<id>" (as the spec shows), an absolute or versioned URL of it, or the
    entry's fullUrl (a urn:uuid: for an order without an id)."""
    by_reference: dict[str, SessionOrder] = {}
    for each in orders:
        for name in (*each.aliases, each.reference):
            if name:
                by_reference.setdefault(name, each)
    found: list[SessionOrder] = []
    seen: set[int] = set()
    for selection in selections:
        order = by_reference.get(selection) or by_reference.get(_type_and_id(selection))
        if order is not None and id(order) not in seen:
            seen.add(id(order))
            found.append(order)
    return found


def _type_and_id(reference: str) -> str:
    """ "ServiceRequest/1" from "https://ehr/fhir/ServiceRequest/1/_history/2"."""
    parts = _HISTORY.sub("", reference.strip()).rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else ""


def _fact(request: lean.ServiceRequest, terms: Terminology, si_conditions: set[str]) -> DraftOrder:
    kinds = terms.valuesets_of(request.code)
    texts = _texts(request.code)
    label = _plain(texts[0]) if texts else "order"
    kind, region = OrderKind.OTHER, None
    for vs_id, coded_kind, coded_region in _CODED:
        if vs_id in kinds:
            kind, region = coded_kind, coded_region
            break
    if kind is OrderKind.OTHER:
        for text in texts:
            kind, region = kind_from_text(text)
            if kind is not OrderKind.OTHER:
                break
    if kind is OrderKind.PHYSIO:
        # A physiotherapy order that is a running or hopping programme, by its name.
        load = (OrderKind.RUNNING, OrderKind.HOPPING)
        kind = next((k for t in texts if (k := kind_from_text(t)[0]) in load), kind)
    return DraftOrder(
        source=f"ServiceRequest/{request.id}" if request.id else "ServiceRequest without id",
        kind=kind,
        label=label,
        region=region,
        si_reason=_si_reason(request, terms, si_conditions),
        status=request.status,
        references_reason=bool(request.reasonReference),
    )


# Reasons read per order: more than any order carries; a longer list is not read further (the
# reasons of an order cost regular-expression time on the event loop).
MAX_REASONS = 20


def _si_reason(request: lean.ServiceRequest, terms: Terminology, si_conditions: set[str]) -> bool:
    reasons = request.reasonCode[:MAX_REASONS]
    if any(terms.match("pain_si_joint", reason) for reason in reasons):
        return True
    for reason in reasons:
        for full in _texts(reason):
            text = full[:300]
            if region_of(text) == "si_joint" or "sacroiliitis" in text.lower():
                return True
    return any(
        normalise_reference(r.reference) in si_conditions
        for r in request.reasonReference[:MAX_REASONS]
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
LABEL_LIMIT = 160


def _plain(text: str) -> str:
    """An order's name as the cards and the MRI order's note show it: one line, no control
    characters (FHIR strings allow none but white space), at most LABEL_LIMIT characters."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= LABEL_LIMIT else text[: LABEL_LIMIT - 1].rstrip() + "\u2026"


def _texts(concept: lean.CodeableConcept | None) -> list[str]:
    if concept is None:
        return []
    return [t for t in (concept.text, *(c.display for c in concept.coding)) if t]


# Elements that describe the X-ray or CT, not the order: dropped when it becomes the MRI (an
# X-ray's "no preparation" instruction is wrong for an MRI, which needs safety screening).
_OF_THE_OTHER_STUDY = (
    "bodySite",
    "orderDetail",
    "text",
    "patientInstruction",
    "performerType",
    "instantiatesCanonical",
    "instantiatesUri",
    "quantityQuantity",
    "quantityRatio",
    "quantityRange",
    "asNeededBoolean",
    "asNeededCodeableConcept",
)


def as_mri(resource: dict[str, Any], mri: dict[str, Any]) -> dict[str, Any]:
    """The draft order turned into the MRI ``mri`` (a ServiceRequest built from the content's
    MRI order): same id, status, intent, subject, reasons, identifiers and the rest; the code,
    body site and note of the MRI. Dropped: what describes the other study (_OF_THE_OTHER_STUDY),
    and any PAMA appropriate-use rating (it rated the other study, and this service does not
    rate appropriate use). A missing status or intent is filled from the MRI order. A shallow
    copy: only top-level elements change, and the EHR's resource is left as it was."""
    changed = dict(resource)
    changed["code"] = mri["code"]
    for name in _OF_THE_OTHER_STUDY:
        changed.pop(name, None)
    for name in ("status", "intent"):  # required in R4: an EHR's draft may leave them out
        if not isinstance(changed.get(name), str):
            changed[name] = mri[name]
    if "bodySite" in mri:
        changed["bodySite"] = mri["bodySite"]
    extensions = [
        e
        for e in _listed(changed.get("extension"))
        if not (isinstance(e, dict) and str(e.get("url", "")).startswith(_PAMA_EXTENSION))
    ]
    if extensions:
        changed["extension"] = extensions
    else:
        changed.pop("extension", None)
    changed["note"] = [*_listed(changed.get("note")), *mri.get("note", [])]
    return changed


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
