"""CDS Hooks 2.0.1 wire models (msgspec): discovery, hook request, cards, errors.

Requests tolerate unknown fields (EHRs send ``extension``); responses omit every unset field, so
they never carry null values or empty arrays (``cards: []`` excepted, as the spec requires).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

import httpx
import msgspec

from fhir_mappings import lean

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# A FHIR resource id (R4 "id" datatype): what context.patientId / encounterId must be.
# The very end of the string, in Python's re and in JSON Schema's (ECMA) alike: Python's ``$``
# also matches before a final newline, so "abc\n" would pass for an id.
_END = r"(?![\s\S])"
FhirId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9\-.]{1,64}" + _END)]
# An OAuth bearer token: visible ASCII only (it goes into an HTTP header).
BearerToken = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e]+" + _END, max_length=16384)]
# Text stored in the service's database: bounded, and no NUL (PostgreSQL text cannot hold it).
_NO_NUL = r"^[^\x00]*$"
CardId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_NUL)]
Code = Annotated[str, msgspec.Meta(max_length=100, pattern=_NO_NUL)]
Label = Annotated[str, msgspec.Meta(max_length=300, pattern=_NO_NUL)]
Comment = Annotated[str, msgspec.Meta(max_length=10000, pattern=_NO_NUL)]


# ---------------------------------------------------------------------------- request
class PatientViewContext(msgspec.Struct, frozen=True):
    """``patient-view``: the chart of a patient was opened."""

    patientId: FhirId
    userId: str | None = None
    encounterId: FhirId | None = None


# A draftOrders Bundle, read field by field by the service that uses it (its entries are
# FHIR resources of several types).
DraftOrders = dict[str, Any]
# "ServiceRequest/example-request-id": a reference to an entry of draftOrders.
Selection = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class OrderSelectContext(msgspec.Struct, frozen=True):
    """``order-select``: the clinician is choosing orders. ``selections`` names the newly
    selected ones; ``draftOrders`` holds every draft order of the session."""

    patientId: FhirId
    selections: Annotated[tuple[Selection, ...], msgspec.Meta(min_length=1)]
    draftOrders: DraftOrders
    userId: str | None = None
    encounterId: FhirId | None = None


class OrderSignContext(msgspec.Struct, frozen=True):
    """``order-sign``: the clinician is about to sign ``draftOrders``."""

    patientId: FhirId
    draftOrders: DraftOrders
    userId: str | None = None
    encounterId: FhirId | None = None


HookContext = PatientViewContext | OrderSelectContext | OrderSignContext


class FhirAuthorization(msgspec.Struct, frozen=True):
    access_token: BearerToken
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


# CDS Hooks: "a universally unique identifier (UUID) for this particular hook call".
HookInstance = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
        + _END
    ),
]


def valid_base_url(url: str) -> bool:
    """A base URL (a request's fhirServer, the service's own public one): http(s), a host, a
    port in range, no user info, query or fragment (not even an empty "?" or "#"), no white
    space, nothing unprintable. Paths are appended to it (``{base}/{type}/{id}``, the service
    path), and the result must stay one URL."""
    if any(ch.isspace() or not ch.isprintable() or ch in "?#" for ch in url):
        return False
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    return (
        parsed.scheme in ("http", "https")
        and bool(parsed.host)
        and (parsed.port is None or 0 < parsed.port < 65536)
        and not parsed.userinfo
        and not parsed.query
        and not parsed.fragment
    )


_Prefetched = TypeVar("_Prefetched")


class _Request(msgspec.Struct, Generic[_Prefetched], frozen=True, kw_only=True, tag_field="hook"):
    hookInstance: HookInstance
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    prefetch: dict[str, _Prefetched] | None = None


class _PatientView(_Request[_Prefetched], Generic[_Prefetched], frozen=True, tag="patient-view"):
    context: PatientViewContext


class _OrderSelect(_Request[_Prefetched], Generic[_Prefetched], frozen=True, tag="order-select"):
    context: OrderSelectContext


class _OrderSign(_Request[_Prefetched], Generic[_Prefetched], frozen=True, tag="order-sign"):
    context: OrderSignContext


class PatientViewRequest(_PatientView[msgspec.Raw], frozen=True):
    pass


class OrderSelectRequest(_OrderSelect[msgspec.Raw], frozen=True):
    pass


class OrderSignRequest(_OrderSign[msgspec.Raw], frozen=True):
    pass


# One request type per hook, told apart by "hook": this union is what the service decodes and
# what the OpenAPI request schema is generated from (one source). Its prefetch values stay raw
# JSON, read later, each on its own terms.
WireRequest = PatientViewRequest | OrderSelectRequest | OrderSignRequest
# A prefetch value read in the same pass as the request (issue 12): a Bundle or a resource of the
# types the services read, or null.
DecodedPrefetch = lean.TypedBundle | lean.ReadResource | None
# What a prefetch key holds once the request is decoded: that, or raw JSON.
PrefetchValue = msgspec.Raw | DecodedPrefetch
_Decoded = (
    _PatientView[DecodedPrefetch] | _OrderSelect[DecodedPrefetch] | _OrderSign[DecodedPrefetch]
)
Hook = Literal["patient-view", "order-select", "order-sign"]
HOOKS: tuple[str, ...] = get_args(Hook)
assert tuple(t.__struct_config__.tag for t in get_args(WireRequest)) == HOOKS


@dataclass(frozen=True)
class HookRequest:
    """A decoded hook call. ``context_extra`` keeps the context fields this service does not
    model (an EHR's own, a later spec version's), as raw JSON: kept, not dropped. They are read
    from the request body when first asked for, so a call that does not use them does not pay
    for them."""

    hook: str
    hookInstance: str
    context: HookContext
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    prefetch: Mapping[str, PrefetchValue] | None = None
    body: bytes = field(default=b"", repr=False)

    @functools.cached_property
    def context_extra(self) -> Mapping[str, msgspec.Raw]:
        if not self.body:
            return {}
        known = set(type(self.context).__struct_fields__)
        fields = _CONTEXT_FIELDS.decode(self.body).context
        return {name: raw for name, raw in fields.items() if name not in known}


class _ContextFields(msgspec.Struct, frozen=True):
    context: dict[str, msgspec.Raw] = {}


class _HookOnly(msgspec.Struct, frozen=True):
    hook: Any = None


_REQUEST: msgspec.json.Decoder[WireRequest] = msgspec.json.Decoder(WireRequest)
# One strict pass over the whole request, prefetch values included: the common case, and the
# fast one. Anything it refuses takes the two-step path, which reads each prefetch value on its
# own terms (leniently) and names what is wrong precisely.
_DECODED: msgspec.json.Decoder[_Decoded] = msgspec.json.Decoder(_Decoded)
# Above this size a request is read in two steps from the start: the one pass reads every
# prefetch value (a key no service asks for too), and one that fails late would cost a second
# full pass; a body this large is parsing-bound either way.
ONE_PASS_MAX_BYTES = 1 << 20
_CONTEXT_FIELDS = msgspec.json.Decoder(_ContextFields)
_HOOK_ONLY = msgspec.json.Decoder(_HookOnly)


class RequestError(ValueError):
    """The body is not a CDS Hooks request: ``field`` names where (dotted path) when known."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


_MISSING = re.compile(r"missing required field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_AT = re.compile(r" - at `\$\.?([^`]*)`")


def decode_request(body: bytes, service: ServiceDefinition | None = None) -> HookRequest:
    """Decode a hook request; RequestError names the offending field (``context.patientId``).
    A request for another hook than ``service`` answers is named as such, before its context is
    judged by that other hook's rules."""
    _check_utf8(body)
    wire: _Decoded | WireRequest | None = None
    if len(body) <= ONE_PASS_MAX_BYTES:
        with contextlib.suppress(msgspec.DecodeError, RecursionError):
            wire = _DECODED.decode(body)
    if wire is None:
        wire = _two_step(body, service)
    return HookRequest(
        hook=str(type(wire).__struct_config__.tag),
        hookInstance=wire.hookInstance,
        context=wire.context,
        fhirServer=wire.fhirServer,
        fhirAuthorization=wire.fhirAuthorization,
        prefetch=wire.prefetch,
        body=body,
    )


def _two_step(body: bytes, service: ServiceDefinition | None) -> WireRequest:
    try:
        return _decode(_REQUEST, body)
    except RequestError as exc:
        hook = _hook_of(body)
        if service is not None and isinstance(hook, str) and hook != service.hook:
            raise wrong_hook(service, hook) from None
        if exc.field == "hook":
            raise _hook_error(hook) from None
        raise


def _hook_of(body: bytes) -> Any:
    try:
        return _HOOK_ONLY.decode(body).hook
    except (msgspec.DecodeError, ValueError, RecursionError):  # not JSON, not UTF-8, too deep
        return None


def _shown(hook: str) -> str:
    return hook if len(hook) <= 64 and hook.isprintable() else f"{hook[:64]!r}..."


def wrong_hook(service: ServiceDefinition, hook: str) -> RequestError:
    """A request for another hook than ``service`` answers (decoded or not)."""
    return RequestError(
        f"Service '{service.id}' answers the '{service.hook}' hook, not '{_shown(hook)}'.",
        "hook",
    )


def _hook_error(hook: Any) -> RequestError:
    if hook is None:
        return RequestError("Missing required field 'hook'.", "hook")
    if not isinstance(hook, str) or not hook:
        return RequestError("hook must be a non-empty string.", "hook")
    return RequestError(
        f"The hook '{_shown(hook)}' is not one this service answers ({', '.join(HOOKS)}).",
        "hook",
    )


_T = TypeVar("_T")
# What is wrong, in words, for fields whose rule is a pattern.
_PLAIN_WORDS = {
    "hookInstance": "hookInstance must be a UUID (e.g. d1577c69-dfbe-44ad-ba6d-3e05e953b2ea).",
    "context.patientId": "context.patientId must be a FHIR id: 1-64 letters, digits, '-' or '.'.",
    "context.encounterId": "context.encounterId must be a FHIR id: 1-64 letters, digits, '-' "
    "or '.'.",
}


def _check_utf8(body: bytes) -> None:
    try:
        # JSON is UTF-8 (RFC 8259): checked whole, because the prefetch may be kept raw and read
        # later, where a stray Latin-1 byte would otherwise surface as a server error.
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"Request body is not valid UTF-8 (JSON must be): byte 0x{body[exc.start]:02x} at "
            f"offset {exc.start}.",
            None,
        ) from None


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    _check_utf8(body)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        missing = _MISSING.search(text)
        if missing:
            parent, name = missing.group(2), missing.group(1)
            field = f"{parent}.{name}" if parent else name
            raise RequestError(f"Missing required field '{field}'.", field) from None
        at = _AT.search(text)
        field = at.group(1) if at else None
        if field in _PLAIN_WORDS:
            raise RequestError(_PLAIN_WORDS[field], field) from None
        raise RequestError(
            f"Invalid value at '{field or '$'}': {_AT.sub('', text)}.", field
        ) from None
    except msgspec.DecodeError as exc:
        raise RequestError(f"Request body is not valid JSON: {exc}.", None) from None
    except RecursionError:
        raise RequestError("Request body is nested too deeply.", None) from None


# ---------------------------------------------------------------------------- feedback
class FeedbackCoding(msgspec.Struct, frozen=True):
    code: Code | None = None
    system: Label | None = None
    display: Label | None = None


class OverrideReason(msgspec.Struct, frozen=True):
    reason: FeedbackCoding | None = None
    userComment: Comment | None = None


class AcceptedSuggestion(msgspec.Struct, frozen=True):
    id: CardId


class FeedbackItem(msgspec.Struct, frozen=True):
    card: CardId
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: datetime
    acceptedSuggestions: tuple[AcceptedSuggestion, ...] = ()
    overrideReason: OverrideReason | None = None


class FeedbackRequest(msgspec.Struct, frozen=True):
    feedback: Annotated[tuple[FeedbackItem, ...], msgspec.Meta(min_length=1)]


_FEEDBACK = msgspec.json.Decoder(FeedbackRequest)


def decode_feedback(body: bytes) -> FeedbackRequest:
    """Decode a feedback request; RequestError names the offending field."""
    received = _decode(_FEEDBACK, body)
    for n, item in enumerate(received.feedback):
        if not 1900 <= item.outcomeTimestamp.year <= 2200:
            field = f"feedback[{n}].outcomeTimestamp"
            raise RequestError("outcomeTimestamp is not a plausible instant.", field)
    return received


# ---------------------------------------------------------------------------- response
class Coding(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    system: str | None = None
    display: str | None = None


class Source(msgspec.Struct, frozen=True, omit_defaults=True):
    label: str
    url: str | None = None
    topic: Coding | None = None


class Link(msgspec.Struct, frozen=True, omit_defaults=True):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Action(msgspec.Struct, frozen=True, omit_defaults=True):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(msgspec.Struct, frozen=True, omit_defaults=True):
    label: str
    uuid: str
    isRecommended: bool | None = None
    actions: tuple[Action, ...] = ()


class Card(msgspec.Struct, frozen=True, omit_defaults=True):
    uuid: str
    summary: str
    indicator: Literal["info", "warning", "critical"]
    source: Source
    detail: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: tuple[Coding, ...] = ()
    links: tuple[Link, ...] = ()


class CdsResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    cards: tuple[Card, ...]  # always present, even empty
    systemActions: tuple[Action, ...] = ()


class ServiceDefinition(msgspec.Struct, frozen=True, omit_defaults=True):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(msgspec.Struct, frozen=True):
    services: tuple[ServiceDefinition, ...]


_ENCODER = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _ENCODER.encode(value)
