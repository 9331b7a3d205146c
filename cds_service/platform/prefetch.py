"""Prefetch resolution, as CDS Hooks 2.0.1 defines it.

For every prefetch template of the service:
- key **absent**: not prefetched, so fetch it from ``fhirServer`` (bearer token from
  ``fhirAuthorization``), following ``next`` links;
- key **null**: the EHR says there is no data;
- a **Bundle**: its resources, OperationOutcome entries skipped (and counted); a ``next`` link is
  followed when ``fhirServer`` is there (the public sandbox sends only the first page);
- an **OperationOutcome** in place of the data: the EHR could not fill it, so fetch it.
Data that is neither prefetched nor obtainable ends the call with 412. Independent fetches run
concurrently within one total time budget.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

import httpx
import msgspec

from cds_service import metrics
from cds_service.errors import (
    BadRequestError,
    FhirNotFoundError,
    FhirServerError,
    FhirTimeoutError,
    PreconditionFailedError,
)
from cds_service.platform.fhir_client import ByteBudget, FetchStats, FhirClient, Page, read_page
from cds_service.platform.wire import HookRequest
from fhir_mappings import lean
from fhir_mappings.primitives import normalise_reference


@dataclass(frozen=True)
class PrefetchKey:
    name: str
    template: str
    kind: Literal["read", "search"]
    what: str  # for messages: "the patient", "conditions", ...


@dataclass
class ResolveStats:
    prefetched: int = 0
    null: int = 0
    fetched: int = 0
    other_patient: int = 0
    incomplete: int = 0  # prefetched searches whose next pages could not be fetched
    fetch: FetchStats = field(default_factory=FetchStats)

    def as_log(self) -> dict[str, int]:
        return {
            "prefetched": self.prefetched,
            "prefetchNull": self.null,
            "fetched": self.fetched,
            "fhirRequests": self.fetch.requests,
            "pagesFollowed": self.fetch.pages,
            "outcomeEntriesSkipped": self.fetch.outcome_entries,
            "otherPatientDropped": self.other_patient,
            "prefetchIncomplete": self.incomplete,
        }


@dataclass(frozen=True)
class Resolved:
    """What the prefetch and the fetches gave: each resource once, none about another
    patient; the service groups them as its rule needs."""

    resources: tuple[msgspec.Struct, ...]
    stats: ResolveStats


_TOKEN = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")


def fill_template(template: str, context: Mapping[str, str | None]) -> str:
    """The relative URL a template asks for: ``{{context.x}}`` tokens replaced with URL-encoded
    context values, and the "|" of token searches percent-encoded (strict servers such as
    Tomcat reject it raw)."""

    def value(m: re.Match[str]) -> str:
        found = context.get(m.group(1))
        if not found:
            raise PreconditionFailedError(f"Prefetch template needs context.{m.group(1)}.")
        return quote(found, safe="")

    return _TOKEN.sub(value, template).replace("|", "%7C")


async def resolve(
    request: HookRequest,
    keys: tuple[PrefetchKey, ...],
    http: httpx.AsyncClient,
    *,
    deadline: float,
    max_pages: int,
    budget: ByteBudget,
) -> Resolved:
    """``deadline``: event-loop time by which fetching must be done (the call's time budget);
    ``budget``: how many bytes the call may read from the FHIR server."""
    stats = ResolveStats()
    client = (
        FhirClient(
            http,
            request.fhirServer,
            request.fhirAuthorization.access_token if request.fhirAuthorization else None,
            max_pages,
            stats.fetch,
            budget,
        )
        if request.fhirServer
        else None
    )
    prefetch = request.prefetch or {}
    resources: list[msgspec.Struct] = []
    to_fetch: list[PrefetchKey] = []
    continuations: list[tuple[PrefetchKey, Page]] = []
    for key in keys:
        if key.name not in prefetch:
            to_fetch.append(key)
            continue
        value = prefetch[key.name]
        if value is None or (isinstance(value, msgspec.Raw) and bytes(value) == b"null"):
            stats.null += 1
            continue
        try:
            page = read_page(value, stats.fetch)
        except lean.LeanDecodeError as exc:
            raise BadRequestError(
                f"prefetch.{key.name} is not FHIR JSON: {exc}.", field=f"prefetch.{key.name}"
            ) from None
        if page.resource_type == "OperationOutcome":
            stats.fetch.outcome_entries += 1
            to_fetch.append(key)  # the EHR could not fill it
            continue
        resources.extend(page.resources)
        if page.next_url is not None and client is not None:
            continuations.append((key, page))
        stats.prefetched += 1
    if to_fetch and client is None:
        names = ", ".join(k.name for k in to_fetch)
        raise PreconditionFailedError(
            f"Prefetch key(s) {names} missing and no fhirServer to fetch them from.",
            field="prefetch",
        )
    if client is not None and (to_fetch or continuations):
        context = {
            "patientId": request.context.patientId,
            "userId": request.context.userId,
            "encounterId": request.context.encounterId,
        }
        resources.extend(
            await _fetch_all(client, to_fetch, continuations, context, deadline, stats)
        )
        stats.fetched = len(to_fetch)
    return Resolved(_unique(request.context.patientId, resources, stats), stats)


async def _fetch_all(
    client: FhirClient,
    to_fetch: list[PrefetchKey],
    continuations: list[tuple[PrefetchKey, Page]],
    context: Mapping[str, str | None],
    deadline: float,
    stats: ResolveStats,
) -> list[msgspec.Struct]:
    """Fetch the missing keys and the pages after prefetched ones, all at once, by ``deadline``.

    A missing key that cannot be fetched ends the call (412): the rule would decide blind. The
    next pages of a prefetched search are followed when the server is reachable; when it is not
    (down, slow, refusing, a link off the server), the prefetched page is used as it is, and
    the log counts the searches left incomplete.
    """
    fetches = [asyncio.ensure_future(_fetch(client, key, context)) for key in to_fetch]
    follows = [
        asyncio.ensure_future(client.pages_after(page, what=key.what))
        for key, page in continuations
    ]
    remaining = deadline - asyncio.get_running_loop().time()
    done, pending = await asyncio.wait([*fetches, *follows], timeout=max(remaining, 0.0))
    if pending:
        metrics.count_budget_exhausted("time")
    for task in pending:
        task.cancel()
    failures: list[BaseException] = [
        error for t in done if not t.cancelled() and (error := t.exception()) is not None
    ]
    for task in fetches:
        if task in pending:
            raise FhirTimeoutError("The FHIR server did not return the data in time.")
        error = task.exception()
        if error is not None:
            raise error
    found: list[msgspec.Struct] = []
    for task in fetches:
        found.extend(task.result())
    for task in follows:
        if task in pending or task.exception() is not None:
            stats.incomplete += 1
        else:
            found.extend(task.result())
    unexpected = [f for f in failures if not isinstance(f, FhirServerError)]
    if unexpected:
        raise unexpected[0]
    return found


async def _fetch(
    client: FhirClient, key: PrefetchKey, context: Mapping[str, str | None]
) -> list[msgspec.Struct]:
    relative = fill_template(key.template, context)
    if key.kind == "search":
        return await client.search(relative, what=key.what)
    try:
        return await client.read(relative, what=key.what)
    except FhirNotFoundError:
        raise FhirNotFoundError(
            f"The FHIR server has no {key.what} for this hook call (HTTP 404)."
        ) from None


def _another_patient(reference: str | None, patient: str) -> bool:
    """A subject reference naming a patient other than ``patient`` ("Patient/<id>")."""
    ref = normalise_reference(reference)
    return ref is not None and ref.startswith("Patient/") and ref != patient


def _unique(
    patient_id: str, resources: list[msgspec.Struct], stats: ResolveStats
) -> tuple[msgspec.Struct, ...]:
    """One copy per Type/id (the same resource may come from two keys). A resource whose
    subject is another patient is dropped (and counted): an EHR that mixed up patients must not
    make this patient's card."""
    unique: dict[tuple[type, str], msgspec.Struct] = {}
    patient = f"Patient/{patient_id}"
    # Nearly every resource names the same subject: each reference is read once per call.
    another: dict[str | None, bool] = {}
    # This patient's own reference, as EHRs write it, needs no reading (unless the patient's id
    # would not read back as itself).
    own = patient if normalise_reference(patient) == patient else None
    for number, resource in enumerate(resources):
        subject = getattr(resource, "subject", None)
        if isinstance(subject, lean.Reference) and (reference := subject.reference) != own:
            found = another.get(reference)
            if found is None:
                found = another[reference] = _another_patient(reference, patient)
            if found:
                stats.other_patient += 1
                continue
        resource_id = getattr(resource, "id", None) or f"#anonymous-{number}"
        unique[(type(resource), resource_id)] = resource
    return tuple(unique.values())
