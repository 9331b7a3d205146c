"""Draft ServiceRequest proposals: MRI of the sacrum (card A), referral (card B)."""

from __future__ import annotations

from typing import Any

import msgspec

from fhir_mappings import r4
from fhir_mappings.coding import CodingSpec
from fhir_mappings.primitives import is_literal_reference


class OrderSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    code: CodingSpec | None = None  # none until a code is verified: code.text alone (14.5)
    extra_codes_unverified: tuple[CodingSpec, ...] = ()
    emit_unverified: bool = False
    body_site: CodingSpec | None = None


class OrdersSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mri: OrderSpec
    mri_pelvis: OrderSpec
    referral: OrderSpec


def to_service_request(
    spec: OrderSpec,
    *,
    patient_id: str,
    reasons: tuple[str, ...],
    note: str,
    encounter_id: str | None = None,
) -> dict[str, Any]:
    """A ``draft`` / ``proposal`` ServiceRequest, validated as R4: nothing is ordered until a
    clinician accepts and signs it."""
    codings = [spec.code.to_fhir()] if spec.code is not None else []
    if spec.emit_unverified:
        codings.extend(c.to_fhir() for c in spec.extra_codes_unverified)
    code: dict[str, Any] = (
        {"coding": codings, "text": spec.text} if codings else {"text": spec.text}
    )
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    usable = [ref for ref in reasons if is_literal_reference(ref)]
    if usable:
        resource["reasonReference"] = [{"reference": ref} for ref in usable]
    if spec.body_site is not None:
        resource["bodySite"] = [{"coding": [spec.body_site.to_fhir()]}]
    resource["note"] = [{"text": note}]
    return r4.validate(resource)
