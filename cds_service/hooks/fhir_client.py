"""Async FHIR R4 client for what prefetch did not bring: reads and paged searches.

One ``httpx.AsyncClient`` per app lifespan (connection pooling); this object binds it to one hook
call's ``fhirServer`` and bearer token. Requests go only to the ``fhirServer`` origin: ``next``
links elsewhere are rebased onto it (servers behind proxies) or refused, so the EHR's token never
leaves for another host. Redirects are not followed for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from cds_service.errors import (
    FhirAuthRejectedError,
    FhirBadResponseError,
    FhirNotFoundError,
    FhirServerError,
    FhirTimeoutError,
    FhirUnreachableError,
)
from fhir_mappings import lean

FHIR_JSON = "application/fhir+json"


@dataclass
class FetchStats:
    requests: int = 0
    pages: int = 0
    outcome_entries: int = 0


@dataclass(frozen=True)
class RawResource:
    resource_type: str
    raw: bytes | msgspec.Raw


@dataclass
class FhirClient:
    http: httpx.AsyncClient
    base: str  # fhirServer, without trailing slash
    token: str | None
    max_pages: int
    stats: FetchStats = field(default_factory=FetchStats)

    def __post_init__(self) -> None:
        self.base = self.base.rstrip("/")
        self._origin = urlsplit(self.base)

    def url(self, relative: str) -> str:
        return f"{self.base}/{relative.lstrip('/')}"

    def on_server(self, url: str) -> str | None:
        """``url`` as a URL on this server: as is when on the fhirServer origin, rebased when its
        path sits under the fhirServer path (a proxy rewrote the host), else None."""
        parts = urlsplit(url)
        same_origin = (parts.scheme, parts.netloc) == (self._origin.scheme, self._origin.netloc)
        base_path = self._origin.path.rstrip("/")
        if not parts.path.startswith(base_path):
            return None
        if same_origin:
            return url
        return urlunsplit((self._origin.scheme, self._origin.netloc, parts.path, parts.query, ""))

    async def get(self, url: str, *, what: str) -> bytes:
        """GET a FHIR JSON body; every failure becomes a FhirServerError naming ``what``."""
        headers = {"Accept": FHIR_JSON}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.stats.requests += 1
        try:
            response = await self.http.get(url, headers=headers)
        except httpx.TimeoutException:
            raise FhirTimeoutError(f"The FHIR server did not answer in time ({what}).") from None
        except httpx.TransportError:
            raise FhirUnreachableError(f"The FHIR server could not be reached ({what}).") from None
        status = response.status_code
        if status in (401, 403):
            raise FhirAuthRejectedError(
                f"The FHIR server refused the access token (HTTP {status}) ({what})."
            )
        if status in (404, 410):
            raise FhirNotFoundError(f"The FHIR server has no {what} (HTTP {status}).")
        if status >= 500:
            raise FhirServerError(f"The FHIR server failed (HTTP {status}) ({what}).")
        if status != 200:
            raise FhirBadResponseError(f"The FHIR server answered HTTP {status} ({what}).")
        return response.content

    async def search(self, relative: str, *, what: str) -> list[RawResource]:
        """Every resource of a search, following ``next`` links up to ``max_pages`` pages."""
        first = _fetched(await self.get(self.url(relative), what=what), what)
        if first.resourceType != "Bundle":
            raise FhirBadResponseError(
                f"The FHIR server answered a search with a {first.resourceType} ({what})."
            )
        return _fetched_entries(first, self.stats, what) + await self.pages_after(first, what=what)

    async def pages_after(self, bundle: lean.Envelope, *, what: str) -> list[RawResource]:
        """Resources of every page after ``bundle`` (a fetched or prefetched searchset page)."""
        resources: list[RawResource] = []
        page = bundle
        for number in range(2, self.max_pages + 2):
            next_url = next(
                (link.url for link in page.link if link.relation == "next" and link.url), None
            )
            if next_url is None:
                return resources
            target = self.on_server(next_url)
            if target is None:
                raise FhirBadResponseError(
                    f"The FHIR server's next-page link points outside fhirServer ({what})."
                )
            if number > self.max_pages:
                break
            self.stats.pages += 1
            page = _fetched(await self.get(target, what=f"{what}, page {number}"), what)
            resources.extend(_fetched_entries(page, self.stats, what))
        raise FhirBadResponseError(
            f"The search for {what} has more than {self.max_pages} pages; narrow it or raise "
            "CDS_FHIR_MAX_PAGES."
        )


def split_entries(bundle: lean.Envelope, stats: FetchStats) -> list[RawResource]:
    """A Bundle's resources with their types; OperationOutcome entries are skipped and counted.
    Raises LeanDecodeError for an entry that is not a FHIR resource."""
    out: list[RawResource] = []
    for entry in bundle.entry:
        if not entry.has_resource:
            continue
        head = lean.decode_envelope(entry.resource)
        if head.resourceType == "OperationOutcome" or (
            entry.search is not None and entry.search.mode == "outcome"
        ):
            stats.outcome_entries += 1
            continue
        out.append(RawResource(head.resourceType, entry.resource))
    return out


def _fetched(raw: bytes, what: str) -> lean.Envelope:
    try:
        return lean.decode_envelope(raw)
    except lean.LeanDecodeError:
        raise FhirBadResponseError(
            f"The FHIR server sent a malformed FHIR JSON body ({what})."
        ) from None


def _fetched_entries(bundle: lean.Envelope, stats: FetchStats, what: str) -> list[RawResource]:
    try:
        return split_entries(bundle, stats)
    except lean.LeanDecodeError:
        raise FhirBadResponseError(
            f"The FHIR server sent a malformed Bundle entry ({what})."
        ) from None
