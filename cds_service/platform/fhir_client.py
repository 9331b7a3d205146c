"""Async FHIR R4 client for what prefetch did not bring: reads and paged searches.

One ``httpx.AsyncClient`` per app lifespan (connection pooling); this object binds it to one hook
call's ``fhirServer`` and bearer token. Requests go only to the ``fhirServer`` origin: ``next``
links elsewhere are rebased onto it (servers behind proxies) or refused, so the EHR's token never
leaves for another host. Redirects are not followed for the same reason.
"""

from __future__ import annotations

import codecs
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from cds_service import metrics
from cds_service.errors import (
    FhirAuthRejectedError,
    FhirBadResponseError,
    FhirNotFoundError,
    FhirResponseTooLargeError,
    FhirServerError,
    FhirTimeoutError,
    FhirUnreachableError,
)
from fhir_mappings import lean
from fhir_mappings.primitives import normalise_reference

FHIR_JSON = "application/fhir+json"
_T = TypeVar("_T")


@dataclass
class FetchStats:
    requests: int = 0
    pages: int = 0
    outcome_entries: int = 0


@dataclass
class ByteBudget:
    """How much one hook call reads from the FHIR server: each answer at most
    ``per_response`` bytes, all of them together at most ``total`` (the settings
    CDS_FHIR_MAX_RESPONSE_BYTES and CDS_FHIR_MAX_TOTAL_BYTES). Reading stops at the cap."""

    per_response: int
    total: int
    used: int = 0


@dataclass(frozen=True)
class _Answer:
    status: int
    charset: str | None
    body: bytes


class _EntryResponse(msgspec.Struct, frozen=True):
    status: str = ""
    location: str | None = None


class _ResponseEntry(msgspec.Struct, frozen=True):
    response: _EntryResponse | None = None


class _TransactionResponse(msgspec.Struct, frozen=True):
    resourceType: str
    entry: tuple[_ResponseEntry, ...] = ()


@dataclass(frozen=True)
class Page:
    """A prefetch value or FHIR response body, read: the resources the rule reads (others and
    OperationOutcome entries dropped), and its links when it is a Bundle."""

    resource_type: str
    resources: list[msgspec.Struct]
    links: tuple[lean.BundleLink, ...] = ()

    @property
    def next_url(self) -> str | None:
        return next((k.url for k in self.links if k.relation == "next" and k.url), None)


def read_page(
    raw: bytes | msgspec.Raw | lean.TypedBundle | lean.ReadResource, stats: FetchStats
) -> Page:
    """Read a body in one strict pass when possible, else entry by entry, leniently (a value
    already decoded, with the request that carried it, is read as it is). OperationOutcome
    entries are skipped and counted. Raises LeanDecodeError when the body is not FHIR JSON."""
    if not isinstance(raw, bytes | msgspec.Raw):
        return _decoded_page(raw, stats)
    fast = lean.decode_fast(raw)
    if fast is not None:
        return _decoded_page(fast, stats)
    envelope = lean.decode_envelope(raw)
    if envelope.resourceType != "Bundle":
        single = lean.decode_resource(envelope.resourceType, raw)
        return Page(envelope.resourceType, [single] if single is not None else [])
    lenient: list[msgspec.Struct] = []
    for raw_entry in envelope.entry:
        if not raw_entry.has_resource:
            continue
        head = lean.decode_envelope(raw_entry.resource)
        if head.resourceType == "OperationOutcome" or (
            raw_entry.search is not None and raw_entry.search.mode == "outcome"
        ):
            stats.outcome_entries += 1
            continue
        decoded = lean.decode_resource(head.resourceType, raw_entry.resource)
        if decoded is not None:
            lenient.append(decoded)
    return Page("Bundle", lenient, envelope.link)


def _decoded_page(decoded: lean.TypedBundle | lean.ReadResource, stats: FetchStats) -> Page:
    if not isinstance(decoded, lean.TypedBundle):
        return Page(lean.resource_type(decoded), [decoded])
    resources: list[msgspec.Struct] = []
    for entry in decoded.entry:
        resource = entry.resource
        if resource is None:
            continue
        if isinstance(resource, lean.OperationOutcome) or (
            entry.search is not None and entry.search.mode == "outcome"
        ):
            stats.outcome_entries += 1
            continue
        resources.append(resource)
    return Page("Bundle", resources, decoded.link)


@dataclass
class FhirClient:
    http: httpx.AsyncClient
    base: str  # fhirServer, without trailing slash
    token: str | None
    max_pages: int
    stats: FetchStats
    budget: ByteBudget

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

    async def _send(
        self,
        method: str,
        url: str,
        read: Callable[[_Answer], _T],
        *,
        what: str,
        body: bytes | None = None,
    ) -> _T:
        """One request to the FHIR server, its answer read up to the byte budget and then by
        ``read``; transport failures, refused tokens, server errors, oversized answers and
        answers ``read`` cannot use become FhirServerErrors naming ``what``. Counted and timed
        in the metrics by method and outcome: ``ok`` only when the answer was usable (a 200 that
        is an HTML page counts as ``fhir_bad_response``), else the failure's kind (a cancelled
        request: ``cancelled``)."""
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            result = read(await self._exchange(method, url, what=what, body=body))
        except FhirServerError as exc:
            outcome = exc.kind
            raise
        else:
            outcome = "ok"
            return result
        finally:
            metrics.FHIR_REQUESTS.labels(method, metrics.label(outcome)).inc()
            metrics.FHIR_LATENCY.labels(method).observe(time.perf_counter() - started)

    async def _exchange(
        self, method: str, url: str, *, what: str, body: bytes | None = None
    ) -> _Answer:
        # Only encodings whose decompression the service bounds itself (see _bounded_read).
        headers = {"Accept": FHIR_JSON, "Accept-Encoding": "gzip, deflate"}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.stats.requests += 1
        try:
            async with self.http.stream(method, url, headers=headers, content=body) as response:
                status = response.status_code
                if status in (401, 403):
                    raise FhirAuthRejectedError(
                        f"The FHIR server refused the access token (HTTP {status}) ({what})."
                    )
                if status >= 500:
                    raise FhirServerError(f"The FHIR server failed (HTTP {status}) ({what}).")
                if status not in (200, 201):
                    return _Answer(status, None, b"")
                content = await self._bounded_read(response, what)
                return _Answer(status, response.charset_encoding, content)
        except httpx.TimeoutException:
            raise FhirTimeoutError(f"The FHIR server did not answer in time ({what}).") from None
        except httpx.TransportError:
            raise FhirUnreachableError(f"The FHIR server could not be reached ({what}).") from None
        except httpx.DecodingError:
            raise FhirBadResponseError(
                f"The FHIR server sent a body that does not decode ({what})."
            ) from None
        except (httpx.InvalidURL, ValueError):
            raise FhirBadResponseError(f"Not a usable FHIR URL ({what}).") from None

    async def _bounded_read(self, response: httpx.Response, what: str) -> bytes:
        """The body, read chunk by chunk (decompressed, so a small gzip bomb counts at its
        real size) and abandoned at the cap: memory stays bounded whatever the server sends."""
        budget = self.budget
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > budget.per_response:
            raise self._too_large(what, budget.per_response, "response_bytes")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            inflate = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            inflate = zlib.decompressobj(wbits=47)  # gzip or zlib header, told apart by itself
        else:
            raise FhirBadResponseError(
                f"The FHIR server sent an encoding the service does not read ({encoding!r}) "
                f"({what})."
            )
        chunks: list[bytes] = []
        size = 0

        def take(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            budget.used += len(chunk)
            if size > budget.per_response:
                raise self._too_large(what, budget.per_response, "response_bytes")
            if budget.used > budget.total:
                raise self._too_large("all answers of this call", budget.total, "total_bytes")
            chunks.append(chunk)

        try:
            async for raw in response.aiter_raw():
                if inflate is None:
                    take(raw)
                    continue
                # Inflated a bounded piece at a time: a bomb never grows past the cap + 64 KB.
                pending = raw
                while pending:
                    take(inflate.decompress(pending, 65536))
                    pending = inflate.unconsumed_tail
            if inflate is not None:
                take(inflate.flush())
        except zlib.error:
            raise FhirBadResponseError(
                f"The FHIR server sent a compressed body that does not decompress ({what})."
            ) from None
        return b"".join(chunks)

    @staticmethod
    def _too_large(what: str, limit: int, budget: str) -> FhirResponseTooLargeError:
        metrics.count_budget_exhausted(budget)
        setting = {
            "response_bytes": "CDS_FHIR_MAX_RESPONSE_BYTES",
            "total_bytes": "CDS_FHIR_MAX_TOTAL_BYTES",
        }[budget]
        return FhirResponseTooLargeError(
            f"The FHIR server sent more than {limit:,} bytes ({what}); reading stopped there "
            f"({setting})."
        )

    async def get_page(self, url: str, *, what: str, bundle: bool = False) -> Page:
        """GET a FHIR JSON body and read it (``bundle``: it must be a Bundle, as a search's
        answer is); every failure becomes a FhirServerError naming ``what``."""

        def page(answer: _Answer) -> Page:
            status = answer.status
            if status in (404, 410):
                raise FhirNotFoundError(f"The FHIR server has no {what} (HTTP {status}).")
            if status != 200:
                raise FhirBadResponseError(f"The FHIR server answered HTTP {status} ({what}).")
            read = self._read(utf8_body(answer.body, answer.charset, what), what)
            if bundle and read.resource_type != "Bundle":
                raise FhirBadResponseError(
                    f"The FHIR server answered a search with a {read.resource_type} ({what})."
                )
            return read

        return await self._send("GET", url, page, what=what)

    async def transaction(self, bundle: dict[str, object], *, what: str) -> list[str]:
        """POST a transaction Bundle; the ``response.location`` of each entry, as absolute URLs.
        The server applies all of it or none of it."""
        entries = bundle.get("entry")
        sent = len(entries) if isinstance(entries, list) else 0
        return await self._send(
            "POST",
            self.base,
            partial(self._locations, sent=sent, what=what),
            what=what,
            body=msgspec.json.encode(bundle),
        )

    def _locations(self, answer: _Answer, *, sent: int, what: str) -> list[str]:
        if answer.status not in (200, 201):
            raise FhirBadResponseError(f"The FHIR server answered HTTP {answer.status} ({what}).")
        try:
            reply = msgspec.json.decode(
                utf8_body(answer.body, answer.charset, what), type=_TransactionResponse
            )
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise FhirBadResponseError(
                f"The FHIR server's answer is not a Bundle ({what})."
            ) from None
        if len(reply.entry) != sent:
            raise FhirBadResponseError(
                f"The FHIR server answered {len(reply.entry)} entries for {sent} ({what})."
            )
        locations = []
        for entry in reply.entry:
            status_line = entry.response.status if entry.response else ""
            if not status_line.startswith(("200", "201")):
                raise FhirBadResponseError(
                    f"The FHIR server refused the entry: {status_line} ({what})."
                )
            location = entry.response.location if entry.response else None
            ref = normalise_reference(location)
            locations.append(self.url(ref) if ref else "")
        return locations

    async def search(self, relative: str, *, what: str) -> list[msgspec.Struct]:
        """Every resource of a search, following ``next`` links up to ``max_pages`` pages."""
        first = await self.get_page(self.url(relative), what=what, bundle=True)
        return first.resources + await self.pages_after(first, what=what)

    async def read(self, relative: str, *, what: str) -> list[msgspec.Struct]:
        """A read: the resource (a Bundle is accepted too)."""
        return (await self.get_page(self.url(relative), what=what)).resources

    async def pages_after(self, page: Page, *, what: str) -> list[msgspec.Struct]:
        """Resources of every page after ``page`` (a fetched or prefetched searchset page)."""
        resources: list[msgspec.Struct] = []
        for number in range(2, self.max_pages + 2):
            next_url = page.next_url
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
            metrics.FHIR_PAGES.inc()
            page = await self.get_page(target, what=f"{what}, page {number}")
            resources.extend(page.resources)
        metrics.count_budget_exhausted("pages")
        raise FhirBadResponseError(
            f"The search for {what} has more than {self.max_pages} pages; narrow it or raise "
            "CDS_FHIR_MAX_PAGES."
        )

    def _read(self, body: bytes, what: str) -> Page:
        try:
            return read_page(body, self.stats)
        except lean.LeanDecodeError as exc:
            because = " (not valid UTF-8)" if "UTF-8" in str(exc) else ""
            raise FhirBadResponseError(
                f"The FHIR server sent a body that is not FHIR JSON{because} ({what})."
            ) from None


def utf8_body(body: bytes, charset: str | None, what: str) -> bytes:
    """The body as UTF-8 bytes: as sent when it declares UTF-8 or no charset (FHIR JSON is
    UTF-8), else decoded by the charset it declares (a server answering ISO-8859-1)."""
    if charset is None:
        return body
    try:
        if codecs.lookup(charset).name == "utf-8":
            return body
        return body.decode(charset).encode("utf-8")
    except (LookupError, UnicodeError):  # unknown charset; bytes, or text, it cannot carry
        raise FhirBadResponseError(
            f"The FHIR server's answer is not readable in the charset it declares ({what})."
        ) from None
