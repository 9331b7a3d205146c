"""Lean, typed views of the FHIR R4 JSON the rule reads (msgspec).

Only the elements the rule needs are declared; everything else in a resource is skipped while
decoding, so a 160 KB prefetch decodes in well under a millisecond. Full fhir.resources validation
is reserved for what the service emits (see ``r4.py``).

Decoding is lenient where EHRs are known to wobble (numbers sent as strings) and strict about
shape (a CodeableConcept must be an object), so a malformed resource gives a clear error path.

Every view is frozen and holds only immutable values, so none can be part of a reference cycle:
they are not tracked by the cyclic garbage collector (``gc=False``), which then has hundreds fewer
objects to walk for each call (issue 12). A field that could hold a list, a dict or any mutable
object would need that taken back (a test checks).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Coding(msgspec.Struct, frozen=True, gc=False):
    system: str | None = None
    code: str | None = None
    display: str | None = None
    extension: tuple[Extension, ...] = ()


class Extension(msgspec.Struct, frozen=True, gc=False):
    url: str | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueCoding: Coding | None = None
    extension: tuple[Extension, ...] = ()


class CodeableConcept(msgspec.Struct, frozen=True, gc=False):
    coding: tuple[Coding, ...] = ()
    text: str | None = None
    extension: tuple[Extension, ...] = ()


class Reference(msgspec.Struct, frozen=True, gc=False):
    reference: str | None = None
    display: str | None = None


class Period(msgspec.Struct, frozen=True, gc=False):
    start: str | None = None
    end: str | None = None


class Annotation(msgspec.Struct, frozen=True, gc=False):
    text: str | None = None
    time: str | None = None


class Quantity(msgspec.Struct, frozen=True, gc=False):
    value: float | None = None
    comparator: str | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


class Identifier(msgspec.Struct, frozen=True, gc=False):
    system: str | None = None
    value: str | None = None


class Meta(msgspec.Struct, frozen=True, gc=False):
    lastUpdated: str | None = None


class Patient(msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="Patient"):
    id: str | None = None
    gender: str | None = None
    birthDate: str | None = None


class ConditionEvidence(msgspec.Struct, frozen=True, gc=False):
    code: tuple[CodeableConcept, ...] = ()
    detail: tuple[Reference, ...] = ()


class Condition(msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="Condition"):
    id: str | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    category: tuple[CodeableConcept, ...] = ()
    code: CodeableConcept | None = None
    subject: Reference | None = None
    bodySite: tuple[CodeableConcept, ...] = ()
    encounter: Reference | None = None
    onsetDateTime: str | None = None
    onsetPeriod: Period | None = None
    onsetAge: Quantity | None = None
    onsetString: str | None = None
    abatementDateTime: str | None = None
    abatementPeriod: Period | None = None
    abatementString: str | None = None
    recordedDate: str | None = None
    evidence: tuple[ConditionEvidence, ...] = ()
    note: tuple[Annotation, ...] = ()
    extension: tuple[Extension, ...] = ()
    meta: Meta | None = None


class ObservationComponent(msgspec.Struct, frozen=True, gc=False):
    code: CodeableConcept | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueString: str | None = None


class Observation(
    msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="Observation"
):
    id: str | None = None
    status: str | None = None
    category: tuple[CodeableConcept, ...] = ()
    subject: Reference | None = None
    code: CodeableConcept | None = None
    effectiveDateTime: str | None = None
    effectivePeriod: Period | None = None
    effectiveInstant: str | None = None
    issued: str | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueString: str | None = None
    note: tuple[Annotation, ...] = ()
    component: tuple[ObservationComponent, ...] = ()
    focus: tuple[Reference, ...] = ()


class DiagnosticReport(
    msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="DiagnosticReport"
):
    id: str | None = None
    status: str | None = None
    category: tuple[CodeableConcept, ...] = ()
    subject: Reference | None = None
    code: CodeableConcept | None = None
    effectiveDateTime: str | None = None
    effectivePeriod: Period | None = None
    issued: str | None = None
    conclusion: str | None = None
    conclusionCode: tuple[CodeableConcept, ...] = ()


class CarePlan(msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="CarePlan"):
    id: str | None = None
    status: str | None = None
    intent: str | None = None
    identifier: tuple[Identifier, ...] = ()
    instantiatesCanonical: tuple[str, ...] = ()
    instantiatesUri: tuple[str, ...] = ()
    subject: Reference | None = None
    addresses: tuple[Reference, ...] = ()
    supportingInfo: tuple[Reference, ...] = ()


class ServiceRequest(
    msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="ServiceRequest"
):
    id: str | None = None
    status: str | None = None
    intent: str | None = None
    category: tuple[CodeableConcept, ...] = ()
    code: CodeableConcept | None = None
    subject: Reference | None = None
    authoredOn: str | None = None
    occurrenceDateTime: str | None = None
    bodySite: tuple[CodeableConcept, ...] = ()
    reasonCode: tuple[CodeableConcept, ...] = ()
    reasonReference: tuple[Reference, ...] = ()


class Encounter(msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="Encounter"):
    id: str | None = None
    period: Period | None = None
    reasonCode: tuple[CodeableConcept, ...] = ()


class OperationOutcomeIssue(msgspec.Struct, frozen=True, gc=False):
    severity: str | None = None
    code: str | None = None
    diagnostics: str | None = None


class OperationOutcome(
    msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="OperationOutcome"
):
    issue: tuple[OperationOutcomeIssue, ...] = ()


class BundleLink(msgspec.Struct, frozen=True, gc=False):
    relation: str | None = None
    url: str | None = None


class BundleSearch(msgspec.Struct, frozen=True, gc=False):
    mode: str | None = None


NO_RESOURCE = msgspec.Raw(b"null")


class BundleEntry(msgspec.Struct, frozen=True, gc=False):
    fullUrl: str | None = None
    resource: msgspec.Raw = NO_RESOURCE  # undecoded until its resourceType is known
    search: BundleSearch | None = None

    @property
    def has_resource(self) -> bool:
        return self.resource is not NO_RESOURCE and bytes(self.resource) != b"null"


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """What every prefetch value or FHIR response body is at first sight: a resource, perhaps a
    Bundle. The entries stay undecoded until their type is known."""

    resourceType: str
    id: str | None = None
    type: str | None = None
    link: tuple[BundleLink, ...] = ()
    entry: tuple[BundleEntry, ...] = ()


# The resource types the rule reads, by resourceType. Anything else in a Bundle is skipped.
READ_TYPES: dict[str, type[msgspec.Struct]] = {
    "Patient": Patient,
    "Condition": Condition,
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "CarePlan": CarePlan,
    "ServiceRequest": ServiceRequest,
    "Encounter": Encounter,
    "OperationOutcome": OperationOutcome,
}
ReadResource = (
    Patient
    | Condition
    | Observation
    | DiagnosticReport
    | CarePlan
    | ServiceRequest
    | Encounter
    | OperationOutcome
)


class TypedEntry(msgspec.Struct, frozen=True, gc=False):
    resource: ReadResource | None = None
    search: BundleSearch | None = None


class TypedBundle(msgspec.Struct, frozen=True, gc=False, tag_field="resourceType", tag="Bundle"):
    type: str | None = None
    link: tuple[BundleLink, ...] = ()
    entry: tuple[TypedEntry, ...] = ()


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(model, strict=False) for name, model in READ_TYPES.items()
}
_ENVELOPE = msgspec.json.Decoder(Envelope, strict=False)
# One strict pass over a whole Bundle of the types the rule reads: the common case, and the
# fast one. Anything else (another resource type inside, a number sent as a string, a shape
# error) falls back to the lenient two-step path, which also gives the precise error.
_FAST = msgspec.json.Decoder(TypedBundle | ReadResource)


class LeanDecodeError(ValueError):
    """A resource did not have the shape FHIR R4 gives it."""


def resource_type(resource: msgspec.Struct) -> str:
    tag = resource.__struct_config__.tag
    return tag if isinstance(tag, str) else type(resource).__name__


def decode_fast(raw: bytes | msgspec.Raw) -> TypedBundle | ReadResource | None:
    """The value decoded in one strict pass, or None when it needs the lenient path."""
    try:
        decoded: TypedBundle | ReadResource = _FAST.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    return decoded


def decode_envelope(raw: bytes | msgspec.Raw) -> Envelope:
    try:
        return _ENVELOPE.decode(raw)
    except msgspec.DecodeError as exc:
        raise LeanDecodeError(str(exc)) from None
    except UnicodeDecodeError:
        raise LeanDecodeError("not valid UTF-8") from None
    except RecursionError:
        raise LeanDecodeError("JSON nested too deeply") from None


def decode_resource(resource_type: str, raw: bytes | msgspec.Raw) -> msgspec.Struct | None:
    """Decode one resource of a type the rule reads; None for any other type."""
    decoder = _DECODERS.get(resource_type)
    if decoder is None:
        return None
    try:
        decoded: msgspec.Struct = decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise LeanDecodeError(str(exc)) from None
    except UnicodeDecodeError:
        raise LeanDecodeError("not valid UTF-8") from None
    except RecursionError:
        raise LeanDecodeError("JSON nested too deeply") from None
    return decoded
