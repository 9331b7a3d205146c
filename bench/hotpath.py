"""One call's time in-process, on the payload the service asks for (issue 12): a microbenchmark of
the hot path for paired A/B runs of a change.

The app is ``create_app`` with an in-memory database and its lifespan run, as ``bench.inprocess``
builds it, but driven by a bare ASGI call (no HTTP client in between: what is left is the
service's own path, FastAPI's routing and its dependencies included). The request is
``discovery_request`` (each prefetch template of the discovery document filled from the Synthea
patient). Logging stays at INFO, as the service runs, its lines written to a null stream.

Prints the median, the 10th and the 90th percentile of the per-call time in µs, over
``--calls`` calls after ``--warmup`` (``--profile``: cProfile's 25 costliest functions instead;
``--bare``: the same for the bare FastAPI app of ``make bench``, the floor; ``--stage``: one
part of the call alone, prefetch resolution or the mapping to facts, for a change that touches
only that part).

    python -m bench.hotpath [--calls 2000] [--warmup 200] [--profile [--profile-out FILE]]
                            [--bare | --stage call|resolve|facts]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import httpx
from fastapi import FastAPI
from starlette.types import Message, Scope

from bench import bare_app
from bench.load import BenchError
from bench.request import BenchRequest, discovery_request, pick_patient
from cds_service import logs
from cds_service.main import create_app
from cds_service.platform import wire
from cds_service.platform.fhir_client import ByteBudget
from cds_service.platform.prefetch import Resolved, resolve
from cds_service.platform.registry import ServiceRegistry
from cds_service.sandbox import service_ids
from cds_service.services.registry import load_services
from cds_service.services.sacral_bsi.service import SacralBsiService, facts_of
from cds_service.settings import CARDS_DIR, Settings


def _scope(request: BenchRequest) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench.invalid"),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json"),
            (b"content-length", str(len(request.body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def _call(app: FastAPI, scope: Scope, body: bytes) -> bytes:
    """One POST through the ASGI app; the response body (a 200 is checked by the caller)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    if status != 200:
        raise BenchError(f"the call answered HTTP {status}: {b''.join(chunks)[:2000]!r}")
    return b"".join(chunks)


Stage = Callable[[], Awaitable[object]]


def _stages(request: BenchRequest) -> dict[str, Stage]:
    """Parts of the call alone, on the same request: prefetch resolution, and the mapping to
    facts of what it resolved (``--stage``)."""
    service = ServiceRegistry(*load_services(CARDS_DIR)).get(service_ids()[request.hook])
    assert isinstance(service, SacralBsiService)
    hook_request = wire.decode_request(request.body, service=service.definition)
    http = httpx.AsyncClient()  # never used: the request has no fhirServer

    async def resolved() -> Resolved:
        return await resolve(
            hook_request,
            service.prefetch_keys,
            http,
            deadline=asyncio.get_running_loop().time() + 10,
            max_pages=1,
            budget=ByteBudget(1 << 30, 1 << 30),
        )

    kept: list[Resolved] = []

    async def facts() -> object:
        if not kept:
            kept.append(await resolved())
        return facts_of(hook_request, kept[0], service.content)

    return {"resolve": resolved, "facts": facts}


async def _run(
    calls: int, warmup: int, profile: bool, profile_out: str | None, bare: bool, stage: str
) -> list[float]:
    request = discovery_request(pick_patient())
    app = (
        bare_app.app
        if bare
        else create_app(Settings(database_url="sqlite:///:memory:", require_jwt=False))
    )
    scope = _scope(request)
    async with app.router.lifespan_context(app):
        # The service's JSON lines, formatted as in production, to a stream that keeps nothing.
        for handler in logging.getLogger(logs.LOGGER_NAME).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(io.StringIO() if profile else _Null())
        answer = await _call(app, scope, request.body)
        if not bare and json.loads(answer) != {"cards": []}:
            raise BenchError(f'expected {{"cards": []}}, the service answered {answer[:500]!r}')

        async def whole_call() -> object:
            return await _call(app, scope, request.body)

        one = whole_call if stage == "call" else _stages(request)[stage]
        for _ in range(warmup):
            await one()
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(calls):
                await one()
            profiler.disable()
            if profile_out:
                profiler.dump_stats(profile_out)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return []
        samples: list[float] = []
        for _ in range(calls):
            started = time.perf_counter()
            await one()
            samples.append(time.perf_counter() - started)
    return samples


class _Null(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="cProfile the calls instead")
    parser.add_argument("--profile-out", help="with --profile: also write the stats to this file")
    parser.add_argument(
        "--bare", action="store_true", help="time the bare FastAPI app (the floor) instead"
    )
    parser.add_argument(
        "--stage",
        choices=("call", "resolve", "facts"),
        default="call",
        help="time the whole call (default), or only prefetch resolution or the mapping to facts",
    )
    args = parser.parse_args(argv)
    try:
        samples = asyncio.run(
            _run(args.calls, args.warmup, args.profile, args.profile_out, args.bare, args.stage)
        )
    except BenchError as exc:
        print(f"hotpath: FAILED: {exc}", file=sys.stderr)
        return 1
    if samples:
        deciles = statistics.quantiles(samples, n=10)
        print(
            f"hotpath: {len(samples)} calls, per call µs: median "
            f"{statistics.median(samples) * 1e6:.1f}, p10 {deciles[0] * 1e6:.1f}, "
            f"p90 {deciles[-1] * 1e6:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
