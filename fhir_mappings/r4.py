"""FHIR R4 models (fhir.resources R4B) in one place: what the service emits is validated here.

The R4B models check structure, cardinality and primitive formats. They do not check required
bindings, so the codes this service writes into those elements are checked here too.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

_MODELS: dict[str, Any] = {
    "CarePlan": CarePlan,
    "ServiceRequest": ServiceRequest,
    "Condition": Condition,
}

# Required bindings (R4 4.0.1) of the elements this service fills.
_REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("CarePlan", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("CarePlan", "intent"): frozenset({"proposal", "plan", "order", "option"}),
    ("ServiceRequest", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("ServiceRequest", "intent"): frozenset(
        {
            "proposal",
            "plan",
            "directive",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
}
_ACTIVITY_STATUS = frozenset(
    {
        "not-started",
        "scheduled",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "stopped",
        "unknown",
        "entered-in-error",
    }
)
_ACTIVITY_KIND = frozenset(
    {
        "Appointment",
        "CommunicationRequest",
        "DeviceRequest",
        "MedicationRequest",
        "NutritionOrder",
        "Task",
        "ServiceRequest",
        "VisionPrescription",
    }
)


class InvalidResourceError(ValueError):
    """A resource the service built is not valid FHIR R4: a programming or content error."""


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate ``resource`` with its R4B model and the required bindings; return it unchanged."""
    resource_type = resource.get("resourceType", "")
    model = _MODELS.get(resource_type)
    if model is None:
        raise InvalidResourceError(f"no R4 model registered for {resource_type!r}")
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        raise InvalidResourceError(f"{resource_type} is not valid R4: {exc}") from None
    for (rtype, element), allowed in _REQUIRED_CODES.items():
        if rtype == resource_type and resource.get(element) not in allowed:
            raise InvalidResourceError(f"{rtype}.{element} = {resource.get(element)!r}")
    for activity in resource.get("activity", []) if resource_type == "CarePlan" else []:
        detail = activity.get("detail", {})
        if detail.get("status") not in _ACTIVITY_STATUS:
            raise InvalidResourceError(
                f"CarePlan.activity.detail.status = {detail.get('status')!r}"
            )
        if "kind" in detail and detail["kind"] not in _ACTIVITY_KIND:
            raise InvalidResourceError(f"CarePlan.activity.detail.kind = {detail['kind']!r}")
    return resource
