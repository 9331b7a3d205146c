"""Prometheus metrics, served at ``GET /metrics``: how fast, how often, and what came of it.

No label carries patient data, a token or free text: every label value is a service id from
the registry, a hook name, an HTTP status, a method, or a name from a closed set in the code
(a card kind, a no-card reason, a failure kind, an override reason code the service itself
offers). ``label()`` turns anything else into ``other``.

Several worker processes (``cds-service serve --workers N``) report as one through
prometheus-client's multiprocess mode: each process writes its figures to files in
``PROMETHEUS_MULTIPROC_DIR``, and ``/metrics`` in any worker adds them up. The mode is chosen
when this module is first imported, by whether that variable is set then (``cds-service serve``
sets it before the workers start; see ``cds_service.server.metrics_directory``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TypeVar

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _usable_multiproc_dir() -> tuple[str | None, str | None]:
    """The multiprocess folder when it is one this process can write; else None and the
    problem, and the variable is dropped before prometheus-client reads it (which would fail
    on every metric with a traceback): ``cds-service serve`` refuses to start, naming it."""
    given = os.environ.get(MULTIPROC_DIR_ENV) or None
    if given is None:
        return None, None
    if os.path.isdir(given) and os.access(given, os.W_OK | os.X_OK):
        return given, None
    os.environ.pop(MULTIPROC_DIR_ENV, None)
    why = (
        "does not exist" if not os.path.exists(given) else "is not a folder this process can write"
    )
    return None, f"{MULTIPROC_DIR_ENV} ({given}) {why}"


_MULTIPROC_DIR, MULTIPROC_DIR_PROBLEM = _usable_multiproc_dir()

from prometheus_client import (  # noqa: E402 - after the folder is checked
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The service's own registry: its metrics only, whatever else the process imports.
REGISTRY = CollectorRegistry(auto_describe=True)

# Around CDS Hooks' "on the order of 500 ms" and Da Vinci CRD's 5 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FHIR_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0)

HOOK_REQUESTS = Counter(
    "cds_hook_requests",
    "Hook calls answered, by service, hook and HTTP status.",
    ["service", "hook", "status"],
    registry=REGISTRY,
)
HOOK_LATENCY = Histogram(
    "cds_hook_request_duration_seconds",
    "Time to answer a hook call, from its arrival to its answer, by service and hook.",
    ["service", "hook"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
HOOK_IN_FLIGHT = Gauge(
    "cds_hook_requests_in_flight",
    "Hook calls being answered now (all workers of the instance).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
HOOK_OUTCOMES = Counter(
    "cds_hook_outcomes",
    "Hook calls answered 200, by what the service found: the kind of card issued (kinds "
    "joined by '+' when several), or the reason there is none.",
    ["service", "outcome"],
    registry=REGISTRY,
)
CARDS = Counter(
    "cds_cards",
    "Cards issued, by service and kind.",
    ["service", "kind"],
    registry=REGISTRY,
)
FHIR_REQUESTS = Counter(
    "cds_fhir_requests",
    "Requests to the EHR's FHIR server, by method and outcome: ok, or the kind of failure.",
    ["method", "outcome"],
    registry=REGISTRY,
)
FHIR_LATENCY = Histogram(
    "cds_fhir_request_duration_seconds",
    "Time of one request to the EHR's FHIR server, by method (failures included).",
    ["method"],
    buckets=FHIR_LATENCY_BUCKETS,
    registry=REGISTRY,
)
FHIR_PAGES = Counter(
    "cds_fhir_pages_followed",
    "Search pages after the first fetched from the FHIR server (next links followed).",
    registry=REGISTRY,
)
FHIR_BUDGET_EXHAUSTED = Counter(
    "cds_fhir_budget_exhausted",
    "Times a hook call ran out of a FHIR budget: response_bytes (CDS_FHIR_MAX_RESPONSE_BYTES), "
    "total_bytes (CDS_FHIR_MAX_TOTAL_BYTES), pages (CDS_FHIR_MAX_PAGES), time "
    "(CDS_FHIR_TIMEOUT_SECONDS for the whole call).",
    ["budget"],
    registry=REGISTRY,
)
JWT_REFUSALS = Counter(
    "cds_jwt_refusals",
    "Calls refused 401, by reason.",
    ["reason"],
    registry=REGISTRY,
)
FEEDBACK_REQUESTS = Counter(
    "cds_feedback_requests",
    "Feedback calls answered, by service (unknown: not a service here) and HTTP status.",
    ["service", "status"],
    registry=REGISTRY,
)
FEEDBACK = Counter(
    "cds_feedback",
    "Feedback items received, by service, the kind of the card (unknown: a card this service "
    "did not issue) and outcome.",
    ["service", "card_kind", "outcome"],
    registry=REGISTRY,
)
OVERRIDE_REASONS = Counter(
    "cds_feedback_override_reasons",
    "Overrides, by service, card kind and reason code (none: no reason given; other: a code "
    "the service does not offer).",
    ["service", "card_kind", "reason"],
    registry=REGISTRY,
)

# JWT refusal reasons (cds_service.auth.jwt_verifier.AuthFailure.reason and the route's own),
# by their stable beginning; the rest of a reason may name a claim or an exception type.
JWT_REASONS = (
    "no bearer token",
    "CDS_PUBLIC_BASE_URL not set",
    "malformed token",
    "missing claim",
    "claim not acceptable",
    "algorithm not accepted",
    "algorithm not configured",
    "issuer not trusted",
    "signature not valid",
    "audience is not this service's URL",
    "token expired",
    "token not yet valid",
    "token issued in the future",
    "token lifetime too long",
    "time claims are not finite numbers",
    "jti is not a non-empty string",
    "jti replayed",
    "kid is not a string",
    "no key with this kid",
    "jku not on the issuer's allowlist",
    "token has no jku",
    "too many new JWKS sources",
    "JWKS fetch failed recently",
    "cannot fetch JWKS",
    "cannot read pinned JWKS file",
    "unusable JWKS",
    "JWKS answered HTTP",
    "JWKS is not",
)
_ALG = re.compile(r"algorithm \S+ not configured")
_SAFE = re.compile(r"[a-z0-9_+.\-]{1,80}")


def label(value: str | None, allowed: Iterable[str] | None = None) -> str:
    """``value`` as a label: as is when it is in ``allowed`` (or, with no ``allowed``, when it
    is a short lower-case name), ``none`` when absent, else ``other``."""
    if value is None or value == "":
        return "none"
    if allowed is not None:
        return value if value in allowed else "other"
    return value if _SAFE.fullmatch(value) else "other"


_M = TypeVar("_M", Counter, Gauge, Histogram)


@lru_cache(maxsize=4096)
def series(metric: _M, *values: str) -> _M:
    """``metric.labels(*values)``, kept: about 1 µs less for each series a hook call counts in
    (issue 12). Only for label values from closed sets (a service id of the registry or
    ``unknown``, a hook, an HTTP status, a name passed through ``label``); the cache is bounded
    all the same."""
    return metric.labels(*values)


def jwt_reason(reason: str) -> str:
    """The stable name of a refusal reason: its known beginning, snake_cased; else ``other``."""
    for known in JWT_REASONS:
        if reason.startswith(known) or (known == "algorithm not configured" and _ALG.match(reason)):
            return re.sub(r"[^a-z0-9]+", "_", known.lower()).strip("_")
    return "other"


def count_budget_exhausted(budget: str) -> None:
    FHIR_BUDGET_EXHAUSTED.labels(budget).inc()


def exposition() -> bytes:
    """The metrics page: this process's figures, or every worker's added up."""
    if _MULTIPROC_DIR is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=_MULTIPROC_DIR)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def worker_exited(pid: int, folder: str | None = None) -> None:
    """Forget a worker's live gauges (its counters stay: they are history), in ``folder`` or
    this process's own multiprocess folder (a supervisor that set the folder for its workers
    after it imported this module names it)."""
    folder = folder or _MULTIPROC_DIR
    if folder is not None:
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
