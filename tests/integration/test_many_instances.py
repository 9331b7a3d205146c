"""Three service instances on one PostgreSQL database behind a round-robin front, mixed traffic
for at least 60 s (``SOAK_SECONDS``; ``make soak`` runs 600), one instance restarted midway with
SIGTERM as Kubernetes does (issue 12). Afterwards:

- no 5xx from any instance, and no connection the front saw reset or closed mid-answer;
- every feedback item answered 200 is in the database (none lost);
- every replayed token was refused, through the front and by each instance directly;
- one CarePlan per MRI-confirmed patient written in direct-write mode (the real FHIR server);
- the restarted instance served again; the figures and each instance's ``/metrics`` page are
  printed (``make soak`` keeps the pages in ``var/soak/``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cds_service.sandbox import rename, shift_dates
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, record_figure
from tests.contract.test_order_services import SELECT_URL, SIGN_URL, draft, order_request
from tests.integration.cluster import (
    Instance,
    Issuer,
    RoundRobinFront,
    Traffic,
    metric_sum,
    running_front,
)
from tests.integration.conftest import free_port, load, put_transaction

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
ISSUER = "https://ehr.cluster.test/fhir"
PUBLIC_BASE = "https://cds.cluster.test"
CPT = "http://www.ama-assn.org/go/cpt"


def today(record: list[dict[str, Any]], day: Any) -> list[dict[str, Any]]:
    moved: list[dict[str, Any]] = shift_dates(record, (datetime.now(UTC).date() - day).days)
    return moved


def new_database(server: str) -> tuple[str, str]:
    """A fresh database on the session's PostgreSQL server: its SQLAlchemy and libpq URLs."""
    name = f"cluster_{int(time.time() * 1000)}"
    libpq = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}", libpq.rsplit("/", 1)[0] + f"/{name}"


def calls(fhir_server: str) -> dict[str, Callable[[], tuple[str, dict[str, Any]]]]:
    """Each kind of call: a function giving the path and a fresh body."""
    suspects = [
        today(rename(cases.maya_before_mri(), f"sus-{n}"), cases.MAYA_SUSPECT_DAY)
        for n in range(12)
    ]
    confirmed_local = [
        today(rename(cases.maya_after_mri(), f"conf-{n}"), cases.MAYA_CONFIRMED_DAY)
        for n in range(6)
    ]
    written = [f"dw-{n}" for n in range(5)]
    for pid in written:  # direct-write patients live on the real FHIR server
        record = today(rename(cases.maya_after_mri(), pid), cases.MAYA_CONFIRMED_DAY)
        load(fhir_server, put_transaction(record))
    turn = itertools.count()

    def pick(pool: list[Any]) -> Any:
        return pool[next(turn) % len(pool)]

    def suspect() -> tuple[str, dict[str, Any]]:
        record = pick(suspects)
        return SERVICE_URL, hook_request(record, pid=record[0]["id"])

    def xray() -> tuple[str, dict[str, Any]]:
        record = pick(suspects)
        pid = record[0]["id"]
        order = draft("xr-1", CPT, "72170", "X-ray pelvis, 1 or 2 views", pid=pid)
        return SELECT_URL, order_request(record, [order], pid=pid)

    def injection() -> tuple[str, dict[str, Any]]:
        record = pick(confirmed_local)
        pid = record[0]["id"]
        order = draft("inj-1", CPT, "27096", "Injection, sacroiliac joint", pid=pid)
        return SIGN_URL, order_request(record, [order], hook="order-sign", pid=pid)

    def direct_write() -> tuple[str, dict[str, Any]]:
        return SERVICE_URL, hook_request(pid=pick(written), fhir_server=fhir_server)

    return {
        "patient-view": suspect,
        "order-select": xray,
        "order-sign": injection,
        "direct-write": direct_write,
    }


def test_three_instances_one_database_restart_midway(
    postgres_server: str, fhir_server: str, tmp_path: Path
) -> None:
    database, libpq = new_database(postgres_server)
    issuer = Issuer(ISSUER, PUBLIC_BASE)
    env = issuer.trusted_by(tmp_path) | {
        "CDS_DATABASE_URL": database,
        "CDS_CAREPLAN_DELIVERY": "direct-write",
        "CDS_FHIR_TIMEOUT_SECONDS": "10",
        # Longer than the front takes to see /readyz fall, on a loaded machine too (a rolling
        # restart in Kubernetes: longer than the endpoints take to drop the pod).
        "CDS_SHUTDOWN_DRAIN_SECONDS": "3",
        "CDS_LOG_LEVEL": "WARNING",
    }
    instances = [
        Instance("a", free_port(), tmp_path, env, workers=2),
        Instance("b", free_port(), tmp_path, env),
        Instance("c", free_port(), tmp_path, env),
    ]
    for instance in instances:
        instance.start()
    front = RoundRobinFront([i.url for i in instances])
    traffic = Traffic(
        "",
        issuer,
        calls(fhir_server),
        weights={
            "patient-view": 5,
            "order-select": 2,
            "order-sign": 2,
            "direct-write": 1,
            "replay": 1,
        },
    )
    restarted = instances[1]
    timeline: dict[str, float] = {}

    async def restart_midway() -> None:
        await asyncio.sleep(SECONDS / 2)
        timeline["sigterm"] = time.monotonic()
        code = await asyncio.to_thread(restarted.stop)
        timeline["exited"] = time.monotonic()
        timeline["exit code"] = code
        await asyncio.to_thread(restarted.start)
        timeline["ready again"] = time.monotonic()

    try:
        with running_front(front, free_port()) as front_url:
            traffic.front = front_url
            deadline = time.monotonic() + 30
            while not all(front.ready.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            forwarded_before_restart: dict[str, int] = {}
            hook_calls_before_restart: dict[str, int] = {}

            async def drive() -> None:
                async def remember_counts() -> None:
                    await restart_midway()
                    forwarded_before_restart.update(front.forwarded)
                    hook_calls_before_restart.update(front.hook_calls)

                await traffic.run(SECONDS, concurrency=6, during=remember_counts())

            started = time.monotonic()
            asyncio.run(drive())
            elapsed = time.monotonic() - started

            # Every token used, replayed to every instance directly: refused by each.
            replayed = list(traffic.used)[-20:]
            refusals = []
            for path, token, body in replayed:
                for instance in instances:
                    answer = httpx.post(
                        instance.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                    refusals.append(answer.status_code)
            pages = {i.name: httpx.get(f"{i.url}/metrics").text for i in instances}
    finally:
        for instance in instances:
            if instance.process is not None and instance.process.poll() is None:
                instance.stop()

    # No 5xx, nothing broken at the front, nothing unexpected.
    assert front.broken == [], (front.broken, front.went_down, timeline)
    assert front.no_instance == 0
    assert not [k for k in traffic.statuses if k[1] >= 500], traffic.statuses
    assert traffic.unexpected == []
    # The restart: a clean exit within drain + grace, and the instance served again after.
    assert timeline["exit code"] in (0, -15), timeline
    assert front.forwarded[restarted.url] > forwarded_before_restart.get(restarted.url, 0)
    # No lost feedback.
    with psycopg.connect(libpq) as c:
        stored: dict[str, str] = dict(
            c.execute(
                "SELECT card_uuid, outcome FROM feedback WHERE card_uuid = ANY(%s)",
                (list(traffic.feedback_sent),),
            ).fetchall()
        )
    assert traffic.feedback_sent
    assert stored == traffic.feedback_sent
    # Replays refused: through the front during the run, and by each instance afterwards.
    assert traffic.replays > 0
    assert traffic.statuses[("replay", 401)] == traffic.replays
    assert refusals
    assert set(refusals) == {401}
    # One CarePlan per direct-write patient on the FHIR server.
    plans = {}
    for n in range(5):
        bundle = httpx.get(f"{fhir_server}/CarePlan", params={"subject": f"Patient/dw-{n}"}).json()
        plans[f"dw-{n}"] = len(bundle.get("entry", []))
    assert plans == dict.fromkeys(plans, 1)
    # Each instance's /metrics counts every hook call it answered since it started (the
    # front's count, plus the replays sent to it directly): for instance a, across its two
    # workers. The restarted one counts from its restart (a call racing the restart may land
    # on either side of the front's snapshot: at least those after it).
    for instance in instances:
        counted = metric_sum(pages[instance.name], "cds_hook_requests_total")
        expected = front.hook_calls[instance.url] + len(replayed)
        if instance is restarted:
            since = expected - hook_calls_before_restart.get(instance.url, 0)
            assert since <= counted < expected, (instance.name, counted, since, expected)
        else:
            assert counted == expected, (instance.name, counted, expected)

    total = sum(traffic.statuses.values())
    record_figure("many instances: seconds of traffic", int(elapsed))
    record_figure("many instances: calls through the front", total)
    record_figure("many instances: feedback items stored", len(stored))
    record_figure("many instances: replays refused", traffic.replays + len(refusals))
    report = [
        f"{total} calls in {elapsed:.0f} s through the front ({total / elapsed:.0f}/s), "
        f"3 instances (a: 2 workers), one PostgreSQL",
        f"restart of b: SIGTERM -> exit {timeline['exited'] - timeline['sigterm']:.1f} s "
        f"(exit code {timeline['exit code']}), ready again "
        f"{timeline['ready again'] - timeline['sigterm']:.1f} s after SIGTERM",
        f"front: forwarded {dict(front.forwarded)}, connections refused then retried "
        f"elsewhere {front.refused_then_retried}, broken 0",
        f"statuses: {dict(sorted(traffic.statuses.items()))}",
        *(f"{kind}: {figure}" for kind, figure in traffic.figures().items()),
        f"feedback stored {len(stored)}/{len(traffic.feedback_sent)}, replays refused "
        f"{traffic.replays} + {len(refusals)} direct, CarePlans per direct-write patient {plans}",
    ]
    print("\n".join(["", "== many instances ==", *report]))
    out = os.environ.get("SOAK_REPORT_DIR")
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.txt").write_text("\n".join(report) + "\n")
        for name, page in pages.items():
            (folder / f"metrics-{name}.txt").write_text(page)
