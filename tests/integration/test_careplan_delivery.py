"""Direct-write delivery against the real local FHIR server: concurrent hook calls for the same
patient produce exactly one CarePlan, in one process, across service instances that do not share
a database, and across two service processes that do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.main import create_app
from cds_service.sandbox import rename, shift_dates
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, at, settings_for_tests
from tests.integration.conftest import (
    careplans_with_identifier,
    load,
    put_transaction,
    service_process,
)

pytestmark = pytest.mark.integration
CALLS = 12
ROUNDS = 20


def confirmed_patient(
    fhir_server: str, name: str, shift_to_today: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """Load an MRI-confirmed runner under fresh ids; return its id and resources."""
    resources = rename(cases.maya_after_mri(), f"dw-{name}")
    if shift_to_today:
        resources = shift_dates(
            resources, (datetime.now(UTC).date() - cases.MAYA_CONFIRMED_DAY).days
        )
    load(fhir_server, put_transaction(resources))
    return next(r["id"] for r in resources if r["resourceType"] == "Patient"), resources


def plan_identifier_in(body: dict[str, Any]) -> str:
    link = body["cards"][0]["links"][0]["url"]
    plan = httpx.get(link, timeout=10).json()
    assert plan["resourceType"] == "CarePlan", plan
    identifier: str = plan["identifier"][0]["value"]
    return identifier


async def concurrent_calls(
    clients: list[httpx.AsyncClient], body: dict[str, Any]
) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(clients[n % len(clients)].post(SERVICE_URL, json=body) for n in range(CALLS))
        )
    )


async def one_round(
    fhir_server: str, clients: list[httpx.AsyncClient], name: str, *, shift_to_today: bool = False
) -> tuple[int, list[httpx.Response]]:
    """Load a fresh MRI-confirmed patient, make CALLS hook calls for it at once through
    ``clients``; the number of CarePlans the server then holds under the plan's identifier, and
    the responses (every one a 200)."""
    pid, resources = confirmed_patient(fhir_server, name, shift_to_today)
    body = hook_request(resources, pid=pid, fhir_server=fhir_server)
    responses = await concurrent_calls(clients, body)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    plans = careplans_with_identifier(fhir_server, plan_identifier_in(responses[0].json()))
    return len(plans), responses


def in_process_clients(count: int) -> list[httpx.AsyncClient]:
    """``count`` service instances, each with its own (in-memory) database."""
    return [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=create_app(
                    settings_for_tests(careplan_delivery="direct-write"),
                    clock=at(cases.MAYA_CONFIRMED_DAY),
                )
            ),
            base_url="http://cds.test",
        )
        for _ in range(count)
    ]


def test_direct_write_concurrent_calls_one_instance_write_one_plan_every_round(
    fhir_server: str,
) -> None:
    async def run() -> list[int]:
        counts = []
        (client,) = in_process_clients(1)
        async with client:
            for round_number in range(ROUNDS):
                count, responses = await one_round(fhir_server, [client], f"one-{round_number}")
                summaries = {r.json()["cards"][0]["summary"] for r in responses}
                assert summaries == {
                    "Draft rehab plan for the sacral bone stress injury added to the record: review, adjust and activate it."
                }
                counts.append(count)
        return counts

    assert asyncio.run(run()) == [1] * ROUNDS


def test_direct_write_instances_without_a_shared_database_still_write_one_plan(
    fhir_server: str,
) -> None:
    """No claim is shared: the FHIR transaction's ifNoneExist alone must hold."""

    async def run() -> list[int]:
        counts = []
        clients = in_process_clients(CALLS)
        try:
            for round_number in range(5):
                count, _ = await one_round(fhir_server, clients, f"many-{round_number}")
                counts.append(count)
        finally:
            for client in clients:
                await client.aclose()
        return counts

    assert asyncio.run(run()) == [1] * 5


def test_direct_write_then_the_plan_is_in_the_chart_and_the_service_stays_quiet(
    fhir_server: str,
) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        pid, _ = confirmed_patient(fhir_server, "quiet")
        (client,) = in_process_clients(1)
        async with client:
            first = (
                await client.post(SERVICE_URL, json=hook_request(pid=pid, fhir_server=fhir_server))
            ).json()
            second = (
                await client.post(SERVICE_URL, json=hook_request(pid=pid, fhir_server=fhir_server))
            ).json()
        return first, second, careplans_with_identifier(fhir_server, plan_identifier_in(first))

    first, second, plans = asyncio.run(run())
    assert len(first["cards"]) == 1
    assert second == {"cards": []}
    (plan,) = plans
    assert (plan["status"], plan["intent"]) == ("draft", "proposal")
    assert plan["subject"]["reference"].endswith("/dw-quiet")


@pytest.fixture
def two_service_processes(tmp_path: Path) -> Iterator[list[str]]:
    """Two uvicorn processes of the service sharing one SQLite database file."""
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "CDS_CAREPLAN_DELIVERY": "direct-write",
        "CDS_REQUIRE_JWT": "false",
        "CDS_FHIR_TIMEOUT_SECONDS": "5",
    }
    with (
        service_process(tmp_path, env, name="a") as first,
        service_process(tmp_path, env, name="b") as second,
    ):
        yield [first.url, second.url]


def test_direct_write_two_service_processes_write_one_plan(
    fhir_server: str, two_service_processes: list[str]
) -> None:
    async def run() -> list[int]:
        counts = []
        clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in two_service_processes]
        try:
            for round_number in range(5):
                count, _ = await one_round(
                    fhir_server, clients, f"procs-{round_number}", shift_to_today=True
                )
                counts.append(count)
        finally:
            for client in clients:
                await client.aclose()
        return counts

    assert asyncio.run(run()) == [1] * 5


def test_direct_write_a_plan_deleted_from_the_chart_is_written_again(fhir_server: str) -> None:
    """The plan the service wrote is deleted on the server; the service's claim still says
    "written". The next call for the patient (prefetch without the plan, as an EHR would send
    it now) checks the server and writes the plan again: one plan on the server afterwards."""

    async def run() -> tuple[str, str, list[dict[str, Any]]]:
        pid, _ = confirmed_patient(fhir_server, "deleted")
        (client,) = in_process_clients(1)
        async with client:
            body = hook_request(pid=pid, fhir_server=fhir_server)
            first = (await client.post(SERVICE_URL, json=body)).json()
            identifier = plan_identifier_in(first)
            (plan,) = careplans_with_identifier(fhir_server, identifier)
            deleted = await asyncio.to_thread(
                httpx.delete, f"{fhir_server}/CarePlan/{plan['id']}", timeout=10
            )
            assert deleted.status_code in (200, 204), deleted.text
            assert careplans_with_identifier(fhir_server, identifier) == []
            again = (await client.post(SERVICE_URL, json=body)).json()
        return (
            plan["id"],
            again["cards"][0]["links"][0]["url"],
            careplans_with_identifier(fhir_server, identifier),
        )

    old_id, link, plans = asyncio.run(run())
    (plan,) = plans
    assert plan["id"] != old_id
    assert link.endswith(f"/CarePlan/{plan['id']}")
