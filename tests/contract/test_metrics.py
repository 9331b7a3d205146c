"""``GET /metrics`` (issue 12): each figure moves when, and only when, the thing it counts
happens, and no label or value carries patient data.

Metrics are process-wide counters, so every test reads them before and after its calls and
checks the difference.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

from cds_service import metrics
from cds_service.auth import jwt_verifier
from tests import cases
from tests.builders import hook_request, prefetch_for
from tests.conftest import SERVICE_URL, ClientFactory
from tests.contract.test_jwt import (  # noqa: F401 - fixtures, used by name
    BAD,
    issuers_file,
    jwks_served,
    jwt_client,
    post,
)

pytestmark = pytest.mark.anyio
FEEDBACK_URL = SERVICE_URL + "/feedback"
FHIR = "http://fhir.test/r4"


def value(name: str, **labels: str) -> float:
    """A sample's value now (0 when it has not been written yet)."""
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return found or 0.0


class Delta:
    """Samples read before the calls; ``delta(name, **labels)`` is how much each moved."""

    def __init__(self) -> None:
        self.before = self._all()

    @staticmethod
    def _all() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in metrics.REGISTRY.collect()
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return value(name, **labels) - self.before.get(key, 0.0)

    def moved(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        now = self._all()
        return {k: v - self.before.get(k, 0.0) for k, v in now.items() if v != self.before.get(k)}


async def test_metrics_page_is_prometheus_text_with_every_family(
    client_at: ClientFactory,
) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    expected = {
        "cds_hook_requests",
        "cds_hook_request_duration_seconds",
        "cds_hook_requests_in_flight",
        "cds_hook_outcomes",
        "cds_cards",
        "cds_fhir_requests",
        "cds_fhir_request_duration_seconds",
        "cds_fhir_pages_followed",
        "cds_fhir_budget_exhausted",
        "cds_jwt_refusals",
        "cds_feedback",
        "cds_feedback_override_reasons",
    }
    assert expected <= families


async def test_a_card_counts_the_call_its_latency_its_outcome_and_its_card(
    client_at: ClientFactory,
) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY)
    delta = Delta()
    response = await client.post(
        SERVICE_URL, json=hook_request(cases.maya_before_mri(), pid="maya")
    )
    assert response.status_code == 200
    assert [c["summary"][:30] for c in response.json()["cards"]]  # one suspicion card
    call = {"service": "sacral-bsi", "hook": "patient-view"}
    assert delta("cds_hook_requests_total", **call, status="200") == 1
    assert delta("cds_hook_request_duration_seconds_count", **call) == 1
    assert delta("cds_hook_request_duration_seconds_bucket", **call, le="+Inf") == 1
    assert delta("cds_hook_outcomes_total", service="sacral-bsi", outcome="suspect") == 1
    assert delta("cds_cards_total", service="sacral-bsi", kind="suspect") == 1
    assert value("cds_hook_requests_in_flight") == 0  # back down once answered


async def test_series_kept_between_calls_are_the_registry_s_own(client_at: ClientFactory) -> None:
    """The hook call's series are looked up once (``metrics.series``) and stay the registry's:
    each later call counts in the same series the page shows."""
    client = client_at()
    delta = Delta()
    for _ in range(3):
        response = await client.post(SERVICE_URL, json=hook_request(cases.daniel(), pid="d"))
        assert response.status_code == 200
    call = {"service": "sacral-bsi", "hook": "patient-view"}
    assert delta("cds_hook_requests_total", **call, status="200") == 3
    assert delta("cds_hook_request_duration_seconds_count", **call) == 3
    kept = metrics.series(metrics.HOOK_REQUESTS, "sacral-bsi", "patient-view", "200")
    assert kept is metrics.HOOK_REQUESTS.labels("sacral-bsi", "patient-view", "200")


async def test_no_card_counts_its_reason_and_no_card(client_at: ClientFactory) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY)
    record = [r for r in cases.maya_before_mri() if r["resourceType"] == "Patient"]
    delta = Delta()
    response = await client.post(SERVICE_URL, json=hook_request(record, pid="maya"))
    assert response.json() == {"cards": []}
    assert delta("cds_hook_outcomes_total", service="sacral-bsi", outcome="not_a_runner") == 1
    assert delta("cds_cards_total", service="sacral-bsi", kind="suspect") == 0


async def test_errors_are_counted_by_status_and_unknown_services_by_no_name(
    client_at: ClientFactory,
) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY)
    delta = Delta()
    bad = await client.post(SERVICE_URL, content=b"{not json", headers={"content-type": "a/b"})
    assert bad.status_code == 400
    unknown = await client.post("/cds-services/Patient-maya-2005-03-01", json={})
    assert unknown.status_code == 404
    assert delta("cds_hook_requests_total", service="sacral-bsi", hook="patient-view", status="400")
    assert delta("cds_hook_requests_total", service="unknown", hook="unknown", status="404") == 1
    page = (await client.get("/metrics")).text
    assert "Patient-maya" not in page  # the path's id is never a label


async def test_feedback_counts_by_card_kind_outcome_and_offered_reason_only(
    client_at: ClientFactory,
) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY)
    response = await client.post(
        SERVICE_URL, json=hook_request(cases.maya_before_mri(), pid="maya")
    )
    card = response.json()["cards"][0]
    offered = card["overrideReasons"][0]
    delta = Delta()

    def item(outcome: str, **extra: Any) -> dict[str, Any]:
        return {
            "card": card["uuid"],
            "outcome": outcome,
            "outcomeTimestamp": "2025-09-30T11:55:00Z",
        } | extra

    made_up = {"reason": {"code": "patient-name-maya", "system": offered["system"]}}
    body = {
        "feedback": [
            item("accepted"),
            item("overridden", overrideReason={"reason": offered}),
            item("overridden", overrideReason=made_up),
            item("overridden"),
            {**item("accepted"), "card": "a-card-nobody-issued"},
        ]
    }
    assert (await client.post(FEEDBACK_URL, json=body)).status_code == 200
    service = "sacral-bsi"
    assert (
        delta("cds_feedback_total", service=service, card_kind="suspect", outcome="accepted") == 1
    )
    assert (
        delta("cds_feedback_total", service=service, card_kind="suspect", outcome="overridden") == 3
    )
    assert (
        delta("cds_feedback_total", service=service, card_kind="unknown", outcome="accepted") == 1
    )
    reasons = "cds_feedback_override_reasons_total"
    assert delta(reasons, service=service, card_kind="suspect", reason=offered["code"]) == 1
    assert delta(reasons, service=service, card_kind="suspect", reason="other") == 1
    assert delta(reasons, service=service, card_kind="suspect", reason="none") == 1
    assert "patient-name-maya" not in (await client.get("/metrics")).text
    # Refused feedback calls are counted too, by status; an unknown service by one name.
    assert (await client.post(FEEDBACK_URL, content=b"{not json")).status_code == 400
    unknown = "/cds-services/patient-maya/feedback"
    assert (await client.post(unknown, json=body)).status_code == 404
    requests = "cds_feedback_requests_total"
    assert delta(requests, service=service, status="200") == 1
    assert delta(requests, service=service, status="400") == 1
    assert delta(requests, service="unknown", status="404") == 1
    assert "patient-maya" not in (await client.get("/metrics")).text


async def test_every_jwt_refusal_is_counted_by_a_named_reason(
    post: Callable[..., Any],  # noqa: F811
) -> None:
    delta = Delta()
    for name, make in BAD.items():
        assert (await post(make())).status_code == 401, name
    assert (await post(None)).status_code == 401
    refusals = {
        dict(labels)["reason"]: moved
        for (sample, labels), moved in delta.moved().items()
        if sample == "cds_jwt_refusals_total"
    }
    assert sum(refusals.values()) == len(BAD) + 1
    assert "other" not in refusals, refusals
    assert refusals["no_bearer_token"] == 1
    assert refusals["token_expired"] == 1
    assert refusals["audience_is_not_this_service_s_url"] == 1
    assert refusals["issuer_not_trusted"] == 2  # an unknown issuer, and none at all


def test_every_refusal_reason_in_the_verifier_has_a_metric_name() -> None:
    """A new reason added to the verifier must get a name, or it would count as ``other``."""
    source = Path(jwt_verifier.__file__).read_text()
    reasons: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AuthFailure":
            first = node.args[0]
            if isinstance(first, ast.Constant):
                reasons.append(str(first.value))
            elif isinstance(first, ast.JoinedStr):
                reasons.append(
                    "".join(
                        str(p.value) if isinstance(p, ast.Constant) else "x" for p in first.values
                    )
                )
    assert len(reasons) >= 20
    unnamed = [r for r in reasons if metrics.jwt_reason(r) == "other"]
    assert unnamed == []


async def test_fhir_requests_are_counted_by_outcome_and_budgets_by_name(
    client_at: ClientFactory,
) -> None:
    full = prefetch_for(cases.maya_before_mri(), "maya")
    request = hook_request(pid="maya", fhir_server=FHIR)
    client = client_at(cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=10_000)
    delta = Delta()
    with respx.mock(assert_all_called=False) as fhir:
        fhir.get(f"{FHIR}/Patient/maya").mock(
            return_value=httpx.Response(200, json=full["patient"])
        )
        fhir.get(f"{FHIR}/Condition").mock(return_value=httpx.Response(500))
        fhir.get(url__regex=rf"{FHIR}/(Observation|DiagnosticReport|CarePlan|ServiceRequest)").mock(
            return_value=httpx.Response(
                200, content=b" " * 20_000 + json.dumps(full["observations"]).encode()
            )
        )
        response = await client.post(SERVICE_URL, json=request)
    assert response.status_code == 412
    assert delta("cds_fhir_requests_total", method="GET", outcome="ok") >= 1
    assert delta("cds_fhir_requests_total", method="GET", outcome="fhir_server_error") == 1
    assert delta("cds_fhir_budget_exhausted_total", budget="response_bytes") >= 1
    assert delta("cds_fhir_request_duration_seconds_count", method="GET") >= 3
    assert (
        delta("cds_hook_requests_total", service="sacral-bsi", hook="patient-view", status="412")
        == 1
    )


async def test_a_fhir_answer_the_service_cannot_use_is_not_counted_ok(
    client_at: ClientFactory,
) -> None:
    """A 200 that is an HTML page (a proxy's login form) and a 404 are failures of their kind,
    not ``ok`` and not a series per HTTP status."""
    full = prefetch_for(cases.maya_before_mri(), "maya")
    client = client_at(cases.MAYA_SUSPECT_DAY)
    delta = Delta()
    with respx.mock(assert_all_called=False) as fhir:
        fhir.get(f"{FHIR}/Patient/maya").mock(
            return_value=httpx.Response(200, json=full["patient"])
        )
        fhir.get(f"{FHIR}/Condition").mock(
            return_value=httpx.Response(
                200, html="<html><body>Sign in</body></html>", headers={"Content-Type": "text/html"}
            )
        )
        fhir.get(f"{FHIR}/DiagnosticReport").mock(  # a search answered with no Bundle
            return_value=httpx.Response(200, json={"resourceType": "OperationOutcome"})
        )
        fhir.get(url__regex=rf"{FHIR}/(Observation|CarePlan|ServiceRequest)").mock(
            return_value=httpx.Response(404)
        )
        response = await client.post(SERVICE_URL, json=hook_request(pid="maya", fhir_server=FHIR))
    assert response.status_code == 412
    assert delta("cds_fhir_requests_total", method="GET", outcome="ok") == 1  # the Patient
    assert delta("cds_fhir_requests_total", method="GET", outcome="fhir_bad_response") == 2
    assert delta("cds_fhir_requests_total", method="GET", outcome="fhir_not_found") >= 1
    assert delta("cds_fhir_requests_total", method="GET", outcome="http_4xx") == 0


async def test_pages_followed_and_the_page_budget_are_counted(client_at: ClientFactory) -> None:
    full = prefetch_for(cases.maya_before_mri(), "maya")
    client = client_at(cases.MAYA_SUSPECT_DAY, fhir_max_pages=2)
    first = dict(full["observations"])
    first["link"] = [{"relation": "next", "url": f"{FHIR}/Observation?page=2"}]
    endless = {"resourceType": "Bundle", "type": "searchset", "entry": [], "link": first["link"]}
    prefetch = dict(full) | {"observations": first}
    delta = Delta()
    with respx.mock(assert_all_called=False) as fhir:
        fhir.get(url__startswith=f"{FHIR}/Observation").mock(
            return_value=httpx.Response(200, json=endless)
        )
        response = await client.post(
            SERVICE_URL, json=hook_request(pid="maya", prefetch=prefetch, fhir_server=FHIR)
        )
    assert response.status_code == 200  # the prefetched page is used as it is
    assert delta("cds_fhir_pages_followed_total") == 1  # page 2 of at most 2 (the first counts)
    assert delta("cds_fhir_budget_exhausted_total", budget="pages") == 1


async def test_no_patient_data_on_the_metrics_page(client_at: ClientFactory) -> None:
    """Names, ids, birth dates and hookInstances of the calls never reach the page."""
    client = client_at(cases.MAYA_CONFIRMED_DAY)
    record = cases.maya_after_mri()
    record[0] = record[0] | {"name": [{"family": "Zyxwvutsrq", "given": ["Qwertyuiop"]}]}
    request = hook_request(record, pid="maya-0f3c2a")
    for item in request["prefetch"].values():
        for entry in item.get("entry", []) if isinstance(item, dict) else []:
            resource = entry["resource"]
            if resource.get("subject", {}).get("reference") == "Patient/maya":
                resource["subject"]["reference"] = "Patient/maya-0f3c2a"
    if request["prefetch"]["patient"]:
        request["prefetch"]["patient"]["id"] = "maya-0f3c2a"
    response = await client.post(SERVICE_URL, json=request)
    assert response.status_code == 200
    assert response.json()["cards"]
    page = (await client.get("/metrics")).text
    for secret in (
        "Zyxwvutsrq",
        "Qwertyuiop",
        "maya-0f3c2a",
        "2005-03-01",
        request["hookInstance"],
    ):
        assert secret not in page


def test_labels_outside_the_closed_sets_become_other() -> None:
    assert metrics.label("suspect") == "suspect"
    assert metrics.label("order_imaging+si_treatment") == "order_imaging+si_treatment"
    assert metrics.label("Maya Smith") == "other"
    assert metrics.label("x" * 81) == "other"
    assert metrics.label(None) == "none"
    assert metrics.label("code-a", {"code-b"}) == "other"
    assert metrics.label("code-b", {"code-b"}) == "code-b"
