"""CarePlan delivery modes, and direct-write faults injected with respx (the real-server and
concurrency tests are in tests/integration/test_careplan_delivery.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from cds_service.services.sacral_bsi.delivery import scope_allows_careplan_create
from cds_service.store import ClaimState, ClaimStore, open_engine
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio
FHIR = "http://fhir.test/r4"


def confirmed_request(**kw: Any) -> dict[str, Any]:
    return hook_request(cases.maya_after_mri(), pid="maya", fhir_server=FHIR, **kw)


def hook_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == "hook_call"]  # type: ignore[attr-defined]


async def test_delivery_suggestion_is_the_default(client_at: ClientFactory) -> None:
    response = await client_at(cases.MAYA_CONFIRMED_DAY).post(SERVICE_URL, json=confirmed_request())
    (card,) = response.json()["cards"]
    assert card["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "CarePlan"
    assert "systemActions" not in response.json()


async def test_delivery_system_action_carries_the_create(client_at: ClientFactory) -> None:
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="system-action")
    body = (await client.post(SERVICE_URL, json=confirmed_request())).json()
    assert_spec_response(body)
    (action,) = body["systemActions"]
    assert action["type"] == "create"
    assert action["resource"]["resourceType"] == "CarePlan"
    assert action["resource"]["status"] == "draft"
    (card,) = body["cards"]
    assert "suggestions" not in card
    assert card["summary"].startswith(
        "MRI-confirmed sacral bone stress injury: a draft phased rehab plan"
    )


async def test_delivery_direct_write_posts_a_conditional_create_transaction(
    client_at: ClientFactory,
) -> None:
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    reply = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"response": {"status": "201 Created", "location": "CarePlan/cp-9/_history/1"}}],
    }
    request = confirmed_request(token="tok")
    request["fhirAuthorization"]["scope"] += " user/CarePlan.write"
    with respx.mock() as mock:
        route = mock.post(FHIR).mock(return_value=httpx.Response(200, json=reply))
        body = (await client.post(SERVICE_URL, json=request)).json()
    assert_spec_response(body)
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer tok"
    bundle = json.loads(sent.content)
    assert bundle["type"] == "transaction"
    (entry,) = bundle["entry"]
    plan = entry["resource"]
    assert entry["request"] == {
        "method": "POST",
        "url": "CarePlan",
        "ifNoneExist": f"identifier=urn:ietf:rfc:3986|{plan['identifier'][0]['value']}",
    }
    (card,) = body["cards"]
    assert card["summary"].startswith(
        "Draft rehab plan for the sacral bone stress injury added to the record"
    )
    assert card["links"][0]["url"] == f"{FHIR}/CarePlan/cp-9"
    assert "suggestions" not in card


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(403, json={"resourceType": "OperationOutcome"}), "fhir_auth_rejected"),
        (httpx.Response(500), "fhir_server_error"),
        (httpx.ReadTimeout("slow"), "fhir_timeout"),
        (
            httpx.Response(
                200,
                json={
                    "resourceType": "Bundle",
                    "type": "transaction-response",
                    "entry": [{"response": {"status": "422 Unprocessable Entity"}}],
                },
            ),
            "fhir_bad_response",
        ),
        # An answer with no entry, or two, for the one sent: not the CarePlan's location.
        (httpx.Response(200, json={"resourceType": "Bundle", "entry": []}), "fhir_bad_response"),
        (
            httpx.Response(
                200,
                json={
                    "resourceType": "Bundle",
                    "type": "transaction-response",
                    "entry": [{"response": {"status": "201 Created"}}] * 2,
                },
            ),
            "fhir_bad_response",
        ),
    ],
)
async def test_delivery_write_failure_falls_back_to_the_suggestion_and_releases_the_claim(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture, answer: Any, reason: str
) -> None:
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    with respx.mock() as mock, caplog.at_level(logging.INFO, logger="cds_service"):
        route = mock.post(FHIR)
        route.mock(side_effect=answer) if isinstance(answer, Exception) else route.mock(
            return_value=answer
        )
        first = (await client.post(SERVICE_URL, json=confirmed_request())).json()
        second = (await client.post(SERVICE_URL, json=confirmed_request())).json()
    for body in (first, second):
        (card,) = body["cards"]
        assert card["suggestions"][0]["label"] == "Create draft rehab plan"
    assert route.call_count == 2  # the claim was released: the next call tried again
    assert [line["careplan"] for line in hook_lines(caplog)] == [
        f"suggestion: write failed ({reason})"
    ] * 2


async def test_delivery_slow_write_is_bounded_by_the_time_budget(client_at: ClientFactory) -> None:
    client = client_at(
        cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write", fhir_timeout_seconds=0.2
    )

    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(FHIR).mock(side_effect=slow)
        body = (await client.post(SERVICE_URL, json=confirmed_request())).json()
    assert body["cards"][0]["suggestions"]


async def test_delivery_token_without_careplan_write_scope_falls_back(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    request = confirmed_request(token="tok")
    request["fhirAuthorization"]["scope"] = "user/Patient.read user/Condition.read"
    with (
        respx.mock(assert_all_called=False) as mock,
        caplog.at_level(logging.INFO, logger="cds_service"),
    ):
        route = mock.post(FHIR)
        body = (await client.post(SERVICE_URL, json=request)).json()
    assert route.call_count == 0
    assert body["cards"][0]["suggestions"]
    assert hook_lines(caplog)[0]["careplan"] == "suggestion: token scope has no CarePlan write"


async def test_delivery_without_fhir_server_falls_back(client_at: ClientFactory) -> None:
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    body = (
        await client.post(SERVICE_URL, json=hook_request(cases.maya_after_mri(), pid="maya"))
    ).json()
    assert body["cards"][0]["suggestions"]


async def test_delivery_suspect_card_is_not_affected(client_at: ClientFactory) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY, careplan_delivery="direct-write")
    body = (
        await client.post(SERVICE_URL, json=hook_request(cases.maya_before_mri(), pid="maya"))
    ).json()
    assert (
        body["cards"][0]["suggestions"][0]["actions"][0]["resource"]["resourceType"]
        == "ServiceRequest"
    )


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        (None, True),
        ("user/CarePlan.write", True),
        ("patient/CarePlan.*", True),
        ("user/*.write", True),
        ("system/*.*", True),
        ("user/CarePlan.cud", True),
        ("user/CarePlan.c", True),
        ("user/Patient.read user/CarePlan.rs", False),
        ("user/CarePlan.read", False),
        ("user/Patient.write", False),
        ("", False),
    ],
)
def test_delivery_scope_rules(scope: str | None, allowed: bool) -> None:
    assert scope_allows_careplan_create(scope) is allowed


async def test_delivery_claims_stop_duplicates_on_a_server_whose_conditional_create_is_not_atomic(
    client_at: ClientFactory,
) -> None:
    """A server that checks, then inserts (as plain conditional creates often do): only the
    claim in the service's database keeps concurrent calls from writing twice."""
    stored: list[str] = []

    async def check_then_insert(request: httpx.Request) -> httpx.Response:
        entry = json.loads(request.content)["entry"][0]
        identifier = entry["request"]["ifNoneExist"].split("|", 1)[1]
        exists = identifier in stored
        await asyncio.sleep(0.02)  # the race window
        if not exists:
            stored.append(identifier)
        status = "200 OK" if exists else "201 Created"
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": status, "location": f"CarePlan/{len(stored)}"}}],
            },
        )

    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    with respx.mock() as mock:
        route = mock.post(FHIR).mock(side_effect=check_then_insert)
        # The written claim is checked against the server before it is believed.
        mock.get(url__startswith=f"{FHIR}/CarePlan?identifier=").mock(
            side_effect=lambda _: httpx.Response(200, json=plans_found(len(stored)))
        )
        responses = await asyncio.gather(
            *(client.post(SERVICE_URL, json=confirmed_request()) for _ in range(12))
        )
    assert all(r.status_code == 200 for r in responses)
    assert route.call_count == 1
    assert len(stored) == 1


def plans_found(count: int) -> dict[str, Any]:
    """A searchset of ``count`` CarePlans with ids 1..count."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "CarePlan", "id": str(n), "status": "draft"}}
            for n in range(1, count + 1)
        ],
    }


def created(location: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "201 Created", "location": location}}],
        },
    )


async def test_delivery_a_written_claim_whose_plan_was_deleted_writes_it_again(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11's attack: the plan written a moment ago was deleted from the chart; the claim
    still says "written". The next call searches, finds nothing, and writes the plan again
    instead of announcing a plan that is not there."""
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    on_server: list[str] = []
    with respx.mock() as mock, caplog.at_level(logging.INFO, logger="cds_service"):
        writes = mock.post(FHIR).mock(
            side_effect=[created("CarePlan/first"), created("CarePlan/second")]
        )
        searches = mock.get(url__startswith=f"{FHIR}/CarePlan?identifier=").mock(
            side_effect=lambda _: httpx.Response(200, json=plans_found(len(on_server)))
        )
        first = (await client.post(SERVICE_URL, json=confirmed_request())).json()
        # deleted: the server holds none (on_server stays empty)
        second = (await client.post(SERVICE_URL, json=confirmed_request())).json()
        on_server.append("second")
        third = (await client.post(SERVICE_URL, json=confirmed_request())).json()
    assert writes.call_count == 2
    assert searches.call_count == 2  # the second and third calls checked the claim
    assert first["cards"][0]["links"][0]["url"] == f"{FHIR}/CarePlan/first"
    assert second["cards"][0]["links"][0]["url"] == f"{FHIR}/CarePlan/second"
    assert third["cards"][0]["links"][0]["url"] == f"{FHIR}/CarePlan/1"  # as the search found it
    assert [line["careplan"] for line in hook_lines(caplog)] == [
        "direct-write: written",
        "direct-write: written",
        "direct-write: already written",
    ]


async def test_delivery_a_written_claim_is_believed_when_the_server_cannot_be_searched(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_at(cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write")
    with respx.mock() as mock, caplog.at_level(logging.INFO, logger="cds_service"):
        writes = mock.post(FHIR).mock(return_value=created("CarePlan/cp-1"))
        mock.get(url__startswith=f"{FHIR}/CarePlan?identifier=").mock(
            return_value=httpx.Response(503)
        )
        await client.post(SERVICE_URL, json=confirmed_request())
        again = (await client.post(SERVICE_URL, json=confirmed_request())).json()
    assert writes.call_count == 1
    assert again["cards"][0]["links"][0]["url"] == f"{FHIR}/CarePlan/cp-1"
    assert hook_lines(caplog)[-1]["careplan"] == "direct-write: already written (not re-checked)"


def test_delivery_claim_store_gives_one_claim_across_processes_sharing_a_database(
    tmp_path: Path,
) -> None:
    """Two engines on one SQLite file (two service processes) and many threads: one winner."""
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    stores = [ClaimStore(open_engine(url)), ClaimStore(open_engine(url))]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda n: stores[n % 2].claim("urn:uuid:plan"), range(32)))
    assert [r.state for r in results].count(ClaimState.NEW) == 1


async def test_delivery_fetch_and_write_share_one_time_budget(
    client_at: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Fetching takes most of the budget: the write gets only what is left, and is cut."""

    async def slow_search(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    async def slow_write(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": "201 Created", "location": "CarePlan/1"}}],
            },
        )

    body = confirmed_request()
    del body["prefetch"]["activityNotes"]
    client = client_at(
        cases.MAYA_CONFIRMED_DAY, careplan_delivery="direct-write", fhir_timeout_seconds=0.5
    )
    with (
        respx.mock(assert_all_called=False) as mock,
        caplog.at_level(logging.INFO, logger="cds_service"),
    ):
        mock.get(url__startswith=FHIR).mock(side_effect=slow_search)
        mock.post(FHIR).mock(side_effect=slow_write)
        response = await client.post(SERVICE_URL, json=body)
    assert response.json()["cards"][0]["suggestions"]
    assert hook_lines(caplog)[0]["careplan"] == "suggestion: write failed (fhir_timeout)"


def test_delivery_a_written_claim_stays_written_until_its_plan_is_found_gone(
    tmp_path: Path,
) -> None:
    """However old, a written claim is WRITTEN (the caller searches the server before it
    believes it); taking it back for a new write works only for the write the caller saw."""

    store = ClaimStore(open_engine(f"sqlite:///{tmp_path / 'claims.db'}"))
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert store.claim("plan", now=t0).state is ClaimState.NEW
    store.written("plan", "CarePlan/1", now=t0)
    seen = store.claim("plan", now=t0 + timedelta(days=3))  # not taken over after 60 s
    assert (seen.state, seen.location) == (ClaimState.WRITTEN, "CarePlan/1")
    # Two callers found the plan gone: one takes the claim back and writes again...
    assert store.reclaim("plan", seen, now=t0 + timedelta(days=3)).state is ClaimState.NEW
    store.written("plan", "CarePlan/2", now=t0 + timedelta(days=3, seconds=1))
    # ...the other, who saw the old write, gets the new one, and writes nothing.
    late = store.reclaim("plan", seen, now=t0 + timedelta(days=3, seconds=2))
    assert (late.state, late.location) == (ClaimState.WRITTEN, "CarePlan/2")
