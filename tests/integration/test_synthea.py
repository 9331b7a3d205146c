"""Every Synthea patient (../shared/data/synthea): none is a runner with back pain, so the service
must answer 200 with no sacral BSI card for each of them, with full prefetch built from the record."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory, record_figure, shared
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio


def synthea_records(folder: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "manifest.json":
            continue
        bundle = json.loads(path.read_text())
        resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        out.append((patient["id"], resources))
    return out


async def test_synthea_patients_get_no_card_and_no_error(client_at: ClientFactory) -> None:
    records = synthea_records(shared("synthea"))
    assert len(records) == 81
    client = client_at()
    latencies: list[float] = []
    observations = 0
    for pid, resources in records:
        body = hook_request(resources, pid=pid)
        observations += len(body["prefetch"]["observations"].get("entry", []))
        started = time.perf_counter()
        response = await client.post(SERVICE_URL, json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (pid, response.text)
        assert_spec_response(response.json())
        assert response.json() == {"cards": []}, pid
    record_figure("synthea (in-process, full prefetch): patients", len(records))
    record_figure("synthea (in-process, full prefetch): cards", 0)
    record_figure("synthea (in-process, full prefetch): observations", observations)
    record_figure(
        "synthea (in-process, full prefetch): median latency, microseconds",
        int(statistics.median(latencies) * 1000),
    )
