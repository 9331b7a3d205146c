"""Time per call in-process (no HTTP server) as the number of prefetched Observations grows.

The app is ``create_app`` with an in-memory database, driven through ``httpx.ASGITransport`` with
its lifespan run (as uvicorn runs it), so a call is the whole service path: body read, decode,
prefetch resolution, mapping, rule, rendering, encoding. Logging is set to WARNING so the per-call
log line does not flood the terminal; everything else is at its default. The body-size limit is
raised so the 5,000-Observation request (~5 MB) is accepted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass

import httpx

from bench.load import BenchError
from bench.request import SERVICE_PATH, Patient, patient_view_request
from cds_service.main import create_app
from cds_service.settings import Settings

SIZES = (10, 100, 1_000, 5_000)
PASSES = 5
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class Timing:
    observations: int
    body_bytes: int
    calls: int
    median_ms: float

    @property
    def us_per_observation(self) -> float:
        return self.median_ms * 1000 / self.observations


async def _time_sizes(
    patient: Patient, sizes: tuple[int, ...], budget_seconds: float, max_calls: int
) -> list[Timing]:
    app = create_app(
        Settings(
            database_url="sqlite:///:memory:",
            log_level="WARNING",
            max_body_bytes=200_000_000,
            require_jwt=False,
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench.invalid"
        ) as client,
    ):

        async def call(body: bytes) -> float:
            started = time.perf_counter()
            response = await client.post(SERVICE_PATH, content=body, headers=HEADERS)
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or json.loads(response.content) != {"cards": []}:
                raise BenchError(
                    f"in-process call answered HTTP {response.status_code}, expected 200 and "
                    f'{{"cards": []}}: {response.text[:2000]}'
                )
            return elapsed

        bodies = {size: patient_view_request(patient, size).body for size in sizes}
        calls: dict[int, int] = {}
        for size, body in bodies.items():
            await call(body)  # warm-up
            estimate = await call(body)  # sizes N to the time budget
            calls[size] = max(2 * PASSES, min(max_calls, int(budget_seconds / estimate)))
        # Round-robin over the sizes in passes, so drift on a shared machine hits every size alike.
        samples: dict[int, list[float]] = {size: [] for size in sizes}
        for number in range(PASSES):
            for size, body in bodies.items():
                share = calls[size] // PASSES + (1 if number < calls[size] % PASSES else 0)
                samples[size].extend([await call(body) for _ in range(share)])
    return [
        Timing(size, len(bodies[size]), len(samples[size]), statistics.median(samples[size]) * 1000)
        for size in sizes
    ]


def time_sizes(
    patient: Patient,
    sizes: tuple[int, ...] = SIZES,
    *,
    budget_seconds: float = 2.0,
    max_calls: int = 300,
) -> list[Timing]:
    return asyncio.run(_time_sizes(patient, sizes, budget_seconds, max_calls))
