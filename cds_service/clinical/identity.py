"""Stable identities the service gives what it proposes, so the same finding never yields two plans.

A CarePlan's business identifier is a name-based UUID (RFC 4122 version 5) of the patient and the
finding that confirmed the injury, under the namespace below; it is written with the RFC 3986
identifier system, so any FHIR server can search it (``identifier=urn:ietf:rfc:3986|urn:uuid:...``).
"""

from __future__ import annotations

import uuid

IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"
PLAN_NAMESPACE = uuid.UUID("adb7c764-35e5-4abe-888d-1e1c197a2e47")


def plan_identifier(patient_id: str, finding: str) -> str:
    """``urn:uuid:`` identifier of the rehab plan for ``finding`` ("Condition/1") of a patient."""
    name = f"sacral-bsi-rehab-careplan|Patient/{patient_id}|{finding}"
    return f"urn:uuid:{uuid.uuid5(PLAN_NAMESPACE, name)}"
