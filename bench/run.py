"""``make bench``: the service against a bare FastAPI app, same run, interleaved, for the
patient-view hook and the order-select hook (an X-ray of the pelvis being ordered).

Both apps run under uvicorn with identical flags (one worker, default loop, no access log, and
the HTTP parser ``cds-service serve`` ships: h11 with its 64 KB request-head limit; the service
logging one line a call, as under ``cds-service serve``: ``bench/service_app.py``) and receive
the same realistic requests, built from a Synthea patient (~150 Observations):

- patient-view, as discovery asks: each prefetch template of the service's discovery document
  filled as an EHR fills it, its search parameters applied (~35 KB body; issue 12);
- patient-view with every Observation of the record under ``observations`` (~176 KB body), where
  parsing the JSON dominates both apps;
- order-select with an X-ray of the pelvis selected, on the same prefetch.

Rounds alternate service, bare, service, bare... so drift (thermal, noisy neighbours) hits both
alike. Reported:

1. for each request, req/s at concurrency 16 and p50/p99 latency at concurrency 1 (sequential
   requests), the median over rounds, and the ratio service/bare;
2. in-process time per call at 10, 100, 1,000 and 5,000 Observations, to show the cost is linear.

Options: ``--quick`` (smoke run, ~25 s), ``--duration`` (seconds per measurement), ``--rounds``,
``--loadgen auto|wrk|python`` (``auto``: wrk when installed, else ``bench.loadgen``),
``--http h11|httptools`` (the parser both apps run under; ``httptools`` is uvicorn's default).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.inprocess import SIZES, Timing, time_sizes
from bench.load import BenchError, LoadGenerator, Result, load_generator
from bench.request import (
    BenchRequest,
    discovery_request,
    discovery_templates,
    order_select_request,
    patient_view_request,
    pick_patient,
)
from bench.request import service_prefetch_keys as request_keys
from bench.servers import Server, Servers
from cds_service.sandbox import service_ids

THROUGHPUT_CONCURRENCY = 16


@dataclass(frozen=True)
class Options:
    duration: float
    rounds: int
    warmup: float
    loadgen: str
    inprocess_budget: float
    inprocess_max_calls: int
    http: str = "h11"


@dataclass
class Measurements:
    throughput: dict[str, list[Result]]
    latency: dict[str, list[Result]]


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the CDS service against a bare FastAPI app (interleaved rounds).",
    )
    parser.add_argument("--quick", action="store_true", help="short rounds: a smoke run")
    parser.add_argument(
        "--duration", type=float, help="seconds per measurement (default 5; --quick 1)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 2)")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (default auto: wrk when installed, else the Python one)",
    )
    parser.add_argument(
        "--http",
        choices=("h11", "httptools"),
        default="h11",
        help="HTTP parser for both apps (default h11, as cds-service serve runs the service)",
    )
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if duration <= 0 or rounds < 1:
        parser.error("--duration must be > 0 and --rounds >= 1")
    return Options(
        duration=duration,
        rounds=rounds,
        warmup=1.0 if args.quick else 2.0,
        loadgen=args.loadgen,
        http=args.http,
        inprocess_budget=0.3 if args.quick else 2.0,
        inprocess_max_calls=20 if args.quick else 300,
    )


def progress(message: str) -> None:
    print(message, flush=True)


def check_answers(servers: Servers, request: BenchRequest) -> None:
    """Both apps answer 200 with what they should; the request fills every discovery key."""
    service_answer = servers.service.wait_ready(request.path, request.body)
    if service_answer != {"cards": []}:
        raise BenchError(
            f'service answered {str(service_answer)[:500]}, expected {{"cards": []}} '
            "(Synthea patients are not runners)"
        )
    bare_answer = servers.bare.wait_ready(request.path, request.body)
    if not isinstance(bare_answer, dict) or len(bare_answer.get("cards", [])) != 1:
        raise BenchError(f"bare app answered {str(bare_answer)[:500]}, expected one card")
    discovery = servers.service.get_json("/cds-services")
    service_id = service_ids()[request.hook]
    services = [s for s in discovery.get("services", []) if s.get("id") == service_id]
    if not services:
        raise BenchError(f"discovery document has no service {service_id!r}")
    advertised = set(services[0].get("prefetch", {}))
    if advertised != set(request_keys()):
        raise BenchError(
            f"discovery prefetch keys {sorted(advertised)} differ from the request's "
            f"{sorted(request_keys())}"
        )
    if services[0].get("prefetch") != discovery_templates(request.hook):
        raise BenchError("the running service's prefetch templates differ from those filled")


def describe(request: BenchRequest) -> str:
    return (
        f"{request.name}: {request.observations} Observations, body "
        f"{len(request.body) / 1000:.1f} KB"
    )


def measure(
    servers: Servers, generator: LoadGenerator, options: Options, path: str
) -> Measurements:
    apps: tuple[Server, Server] = (servers.service, servers.bare)
    for app in apps:
        progress(f"  warm-up {app.name}: {options.warmup:g} s at c={THROUGHPUT_CONCURRENCY}")
        generator.run(app.port, path, THROUGHPUT_CONCURRENCY, options.warmup)
    found = Measurements(
        throughput={app.name: [] for app in apps}, latency={app.name: [] for app in apps}
    )
    for number in range(1, options.rounds + 1):
        for app in apps:
            result = generator.run(app.port, path, THROUGHPUT_CONCURRENCY, options.duration)
            found.throughput[app.name].append(result)
            progress(
                f"  round {number}/{options.rounds} c={THROUGHPUT_CONCURRENCY} {app.name:<7} "
                f"{result.rps:8.1f} req/s  ({result.requests} requests)"
            )
        for app in apps:
            result = generator.run(app.port, path, 1, options.duration)
            found.latency[app.name].append(result)
            progress(
                f"  round {number}/{options.rounds} c=1  {app.name:<7} "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                f"({result.requests} requests)"
            )
    return found


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _medians(
    found: Measurements,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """req/s, p50 and p99 of each app, the median over rounds."""
    rps = {name: _median([r.rps for r in rs]) for name, rs in found.throughput.items()}
    p50 = {name: _median([r.p50_ms for r in rs]) for name, rs in found.latency.items()}
    p99 = {name: _median([r.p99_ms for r in rs]) for name, rs in found.latency.items()}
    return rps, p50, p99


def summary_table(requests: Sequence[BenchRequest], found: dict[str, Measurements]) -> str:
    """One row a request: the service against the bare app."""
    rows: list[list[str]] = []
    for request in requests:
        rps, p50, p99 = _medians(found[request.name])
        rows.append(
            [
                request.name,
                f"{len(request.body) / 1000:.0f}",
                f"{rps['service'] / rps['bare']:.2f}x",
                f"{p50['service']:.2f} / {p50['bare']:.2f}",
                f"{p99['service']:.2f} / {p99['bare']:.2f}",
                f"{p99['service'] / p99['bare']:.2f}x",
            ]
        )
    return _table(
        [
            "request",
            "body KB",
            "req/s service/bare",
            "p50 ms service / bare",
            "p99 ms service / bare",
            "p99 service/bare",
        ],
        rows,
    )


def http_table(found: Measurements) -> str:
    rps, p50, p99 = _medians(found)
    rows = [
        [
            f"req/s at c={THROUGHPUT_CONCURRENCY} (higher is better)",
            f"{rps['service']:.1f}",
            f"{rps['bare']:.1f}",
            f"{rps['service'] / rps['bare']:.2f}x",
        ],
        [
            "p50 latency at c=1, ms (lower is better)",
            f"{p50['service']:.2f}",
            f"{p50['bare']:.2f}",
            f"{p50['service'] / p50['bare']:.2f}x",
        ],
        [
            "p99 latency at c=1, ms (lower is better)",
            f"{p99['service']:.2f}",
            f"{p99['bare']:.2f}",
            f"{p99['service'] / p99['bare']:.2f}x",
        ],
    ]
    per_round = [
        f"  per round, req/s at c={THROUGHPUT_CONCURRENCY}: "
        + "; ".join(
            f"{name} " + ", ".join(f"{r.rps:.1f}" for r in rs)
            for name, rs in found.throughput.items()
        ),
        "  per round, p50/p99 ms at c=1: "
        + "; ".join(
            f"{name} " + ", ".join(f"{r.p50_ms:.2f}/{r.p99_ms:.2f}" for r in rs)
            for name, rs in found.latency.items()
        ),
    ]
    note = (
        "  note: the bare app does not gc.freeze() its start-up heap (the service does, in its\n"
        "  lifespan), so full GC passes over FastAPI's import-time objects land in its p99."
    )
    table = _table(["metric (median over rounds)", "service", "bare", "service/bare"], rows)
    return "\n".join([table, *per_round, note])


def inprocess_table(timings: Sequence[Timing]) -> str:
    rows: list[list[str]] = []
    previous: Timing | None = None
    for timing in timings:
        marginal = "-"
        if previous is not None:
            extra_us = (timing.median_ms - previous.median_ms) * 1000
            marginal = f"{extra_us / (timing.observations - previous.observations):.1f}"
        rows.append(
            [
                f"{timing.observations:,}",
                f"{timing.body_bytes / 1000:,.0f}",
                str(timing.calls),
                f"{timing.median_ms:.2f}",
                f"{timing.us_per_observation:.1f}",
                marginal,
            ]
        )
        previous = timing
    return _table(
        ["observations", "body KB", "calls", "median ms/call", "us/obs", "marginal us/obs"], rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    started = time.monotonic()
    try:
        progress("Building the requests from the Synthea patients...")
        patient = pick_patient()
        requests = (
            discovery_request(patient),
            patient_view_request(patient),
            order_select_request(patient),
        )
        found: dict[str, Measurements] = {}
        with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
            workdir = Path(tmp)
            generators: dict[str, LoadGenerator] = {}
            for number, request in enumerate(requests):
                body_file = workdir / f"request-{number}.json"
                body_file.write_bytes(request.body)
                generators[request.name] = load_generator(options.loadgen, body_file, workdir)
            generator_name = generators[requests[0].name].name
            setup = (
                f"patient {patient.file}: {len(patient.of('Observation'))} Observations, "
                f"{len(patient.of('Condition'))} Conditions, "
                f"{len(patient.of('DiagnosticReport'))} DiagnosticReports, "
                f"{len(patient.of('CarePlan'))} CarePlans\n"
                + "".join(f"request {describe(request)}\n" for request in requests)
                + f"load generator: {generator_name}; {options.rounds} interleaved rounds of "
                f"{options.duration:g} s per app and concurrency; one uvicorn worker each, "
                f"HTTP parser {options.http}; "
                f"{os.cpu_count()} CPUs; Python {platform.python_version()}"
            )
            progress(setup)
            progress("Starting the service and the bare app under uvicorn...")
            with Servers(workdir, options.http) as servers:
                for request in requests:
                    check_answers(servers, request)
                    progress(
                        f"{request.name}: service on :{servers.service.port} answers 200 "
                        f'{{"cards": []}}; bare on :{servers.bare.port} answers 200 with one card'
                    )
                    found[request.name] = measure(
                        servers, generators[request.name], options, request.path
                    )
        progress("In-process time per call (httpx.ASGITransport, no server)...")
        timings = time_sizes(
            patient,
            SIZES,
            budget_seconds=options.inprocess_budget,
            max_calls=options.inprocess_max_calls,
        )
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    print()
    print("=== HTTP: service vs bare FastAPI app, same request, interleaved rounds ===")
    print(setup)
    for request in requests:
        measurements = found[request.name]
        print()
        print(
            f"--- {request.name} ({service_ids()[request.hook]}, "
            f"{len(request.body) / 1000:.0f} KB) ---"
        )
        print(http_table(measurements))
    print()
    print("=== Summary: the service against the bare app (median over rounds) ===")
    print(summary_table(requests, found))
    print()
    print("=== In-process time per call vs prefetched Observations (median) ===")
    print("create_app(Settings(database_url='sqlite:///:memory:')) via httpx.ASGITransport;")
    print("other prefetch keys as in the HTTP request; copies of the patient's Observations.")
    print()
    print(inprocess_table(timings))
    print(f"\nbench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
