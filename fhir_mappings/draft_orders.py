"""The hook's ``draftOrders`` Bundle -> ``DraftOrder`` facts (issue 10), and the MRI order that
replaces an X-ray or CT draft.

Orders are recognised by code (the order value sets of ``cards/sacral-bsi-orders/``: CPT as EHRs
send it, LOINC, SNOMED CT), else by their name. Only ServiceRequests are read; other request
types (MedicationRequest, ...) are not orders this service has anything to say about.
"""

from __future__ import annotations

import copy
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
    reference: str  # "ServiceRequest/<id>", or "" when the EHR sent it without an id


def read_draft_orders(
    bundle: dict[str, Any], terms: Terminology, facts: PatientFacts
) -> list[SessionOrder]:
    entries = bundle.get("entry", [])
    if bundle.get("resourceType") != "Bundle" or not isinstance(entries, list):
        raise DraftOrdersError(
            "context.draftOrders must be a FHIR Bundle of the draft orders.", "context.draftOrders"
        )
    si_conditions = {p.source for p in facts.pains if p.group is PainGroup.SI_JOINT}
    orders: list[SessionOrder] = []
    for n, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{n}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
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
        orders.append(
            SessionOrder(
                _fact(request, terms, si_conditions),
                resource,
                f"ServiceRequest/{request.id}" if request.id else "",
            )
        )
    return orders


def selected(orders: Iterable[SessionOrder], selections: Iterable[str]) -> list[SessionOrder]:
    """The orders ``selections`` names ("ServiceRequest/id"), in the order they were named."""
    by_reference = {o.reference: o for o in orders if o.reference}
    found: list[SessionOrder] = []
    for selection in selections:
        reference = normalise_reference(selection)
        order = by_reference.get(reference or "")
        if order is not None and order not in found:
            found.append(order)
    return found


def _fact(request: lean.ServiceRequest, terms: Terminology, si_conditions: set[str]) -> DraftOrder:
    kinds = terms.valuesets_of(request.code)
    texts = _texts(request.code)
    label = texts[0] if texts else "order"
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
    if kind is OrderKind.PHYSIO and any(kind_from_text(t)[0] is OrderKind.RUNNING for t in texts):
        kind = OrderKind.RUNNING  # a physiotherapy order that is a return-to-running programme
    return DraftOrder(
        source=f"ServiceRequest/{request.id}" if request.id else "ServiceRequest without id",
        kind=kind,
        label=label,
        region=region,
        si_reason=_si_reason(request, terms, si_conditions),
        status=request.status,
    )


def _si_reason(request: lean.ServiceRequest, terms: Terminology, si_conditions: set[str]) -> bool:
    if any(terms.match("pain_si_joint", reason) for reason in request.reasonCode):
        return True
    for reason in request.reasonCode:
        if any(region_of(t) == "si_joint" or "sacroiliitis" in t.lower() for t in _texts(reason)):
            return True
    return any(normalise_reference(r.reference) in si_conditions for r in request.reasonReference)


def _texts(concept: lean.CodeableConcept | None) -> list[str]:
    if concept is None:
        return []
    return [t for t in (concept.text, *(c.display for c in concept.coding)) if t]


def as_mri(resource: dict[str, Any], mri: dict[str, Any]) -> dict[str, Any]:
    """The draft order turned into the MRI ``mri`` (a ServiceRequest built from the content's
    MRI order): same id, status, intent, subject, reasons and the rest; the code, body site and
    note of the MRI; the X-ray's order details and any PAMA appropriate-use rating dropped (the
    rating was for the other study, and this service does not rate appropriate use)."""
    changed = copy.deepcopy(resource)
    changed["code"] = mri["code"]
    for name in ("bodySite", "orderDetail"):
        changed.pop(name, None)
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
