"""``python -m bench.resources``: what one ``cds-service serve`` uses, to size a Kubernetes pod.

Starts the service as the image runs it (``cds-service serve``: h11, the head deadline, JSON
logs; JWT verification off, on loopback), then samples its resident memory (VmRSS) and CPU time
(utime + stime from ``/proc``), summed over the process and every process it started (so a run
with ``CDS_WORKERS`` set counts the whole pod's tree): idle, then under load at concurrency 1 and
16 with the benchmark's patient-view request (a Synthea patient, every prefetch key filled, ~170
KB), with ``examples/patient-view-runner.json`` (a small request that issues a card: one ledger
row per call), and with the Synthea request grown to just under the default
``CDS_MAX_BODY_BYTES`` (the most one call can bring), then idle again. Printed per state: peak
and final RSS, CPU in cores (CPU seconds / wall seconds), req/s and p99 latency.

Options: ``--duration`` (seconds per loaded state, default 20), ``--idle`` (seconds idle,
default 10), ``--loadgen auto|wrk|python``, ``--database sqlite|postgres`` (``postgres``: a
throwaway server from the pgserver wheel, as the tests start it; default ``sqlite``, in a
temporary folder). The load generator runs on the same machine: on two cores it takes CPU from
the server, so the CPU figure is what the server got, not what it could use alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.load import REPO, BenchError, LoadGenerator, Result, load_generator
from bench.request import BenchRequest, Patient, patient_view_request, pick_patient
from bench.servers import free_port
from cds_service.settings import Settings

TICKS = os.sysconf("SC_CLK_TCK")
RUNNER_EXAMPLE = REPO / "examples" / "patient-view-runner.json"


@dataclass(frozen=True)
class Sample:
    rss_kb: int
    cpu_seconds: float


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from each process's parent id in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def sample(root: int) -> Sample:
    rss, cpu = 0, 0.0
    for pid in _tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss += next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
        cpu += (int(stat[11]) + int(stat[12])) / TICKS  # utime, stime
    return Sample(rss, cpu)


@dataclass(frozen=True)
class Row:
    state: str
    peak_rss_kb: int
    end_rss_kb: int
    cores: float
    result: Result | None


def measure(root: int, state: str, seconds: float, work: threading.Thread | None) -> Row:
    start, began = sample(root), time.monotonic()
    peak = start.rss_kb
    if work is not None:
        work.start()
    while work.is_alive() if work is not None else time.monotonic() - began < seconds:
        time.sleep(0.25)
        peak = max(peak, sample(root).rss_kb)
    end, wall = sample(root), time.monotonic() - began
    return Row(
        state, max(peak, end.rss_kb), end.rss_kb, (end.cpu_seconds - start.cpu_seconds) / wall, None
    )


def start_service(workdir: Path, port: int, database_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(
        CDS_HOST="127.0.0.1",
        CDS_PORT=str(port),
        CDS_DATABASE_URL=database_url,
        CDS_REQUIRE_JWT="false",
        CDS_LOG_LEVEL="WARNING",
    )
    for name in ("CDS_WORKERS",):  # sizes a pod of N workers once `serve` reads it
        if name in os.environ:
            env[name] = os.environ[name]
    log = (workdir / "service.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "cds-service"), "serve"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise BenchError(f"the service exited with {process.returncode} during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise BenchError("the service did not answer /readyz within 60 s")
        time.sleep(0.2)


def loaded(
    load: LoadGenerator,
    root: int,
    port: int,
    path: str,
    name: str,
    concurrency: int,
    seconds: float,
) -> Row:
    results: list[Result] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(load.run(port, path, concurrency, seconds))
        except BaseException as exc:  # re-raised below, in the measuring thread
            errors.append(exc)

    row = measure(root, f"{name}, concurrency {concurrency}", seconds, threading.Thread(target=run))
    if errors:
        raise errors[0]
    return Row(row.state, row.peak_rss_kb, row.end_rss_kb, row.cores, results[0])


def largest_request(patient: Patient, like: BenchRequest) -> BenchRequest:
    """The patient-view request with the most Observations under the default body limit
    (``CDS_MAX_BODY_BYTES``, 5,000,000 bytes): the most one call can bring."""
    limit = Settings.model_fields["max_body_bytes"].default
    count = like.observations * (limit // len(like.body))
    request = patient_view_request(patient, count)
    while len(request.body) > limit:
        count = count * 95 // 100
        request = patient_view_request(patient, count)
    return request


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resources", description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: a throwaway server from the pgserver wheel (tests/postgres_server.py)",
    )
    options = parser.parse_args(argv)
    patient = pick_patient()
    synthea = patient_view_request(patient)
    large = largest_request(patient, synthea)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cds-resources-")))
        if options.database == "postgres":
            from tests.postgres_server import temp_postgres

            database_url = stack.enter_context(temp_postgres())
        else:
            database_url = f"sqlite:///{workdir / 'cds.db'}"
        port = free_port()
        process = start_service(workdir, port, database_url)
        try:
            rows = [measure(process.pid, "idle after start", options.idle, None)]
            for name, body, path in (
                (
                    f"Synthea patient-view ({len(synthea.body) // 1000} KB)",
                    synthea.body,
                    synthea.path,
                ),
                ("runner example (card)", RUNNER_EXAMPLE.read_bytes(), synthea.path),
                (f"same patient, {len(large.body) // 1000} KB body", large.body, large.path),
            ):
                body_file = workdir / "body.json"
                body_file.write_bytes(body)
                load = load_generator(options.loadgen, body_file, workdir)
                for concurrency in (1, 16):
                    rows.append(
                        loaded(load, process.pid, port, path, name, concurrency, options.duration)
                    )
            rows.append(measure(process.pid, "idle after load", options.idle, None))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        f"cds-service serve on {options.database}, pid tree of {process.pid}; "
        f"load generator: {load.name}"
    )
    print(f"{'state':48} {'peak RSS':>9} {'end RSS':>9} {'CPU':>6} {'req/s':>7} {'p99':>8}")
    for row in rows:
        rps = f"{row.result.rps:7.0f}" if row.result else f"{'':7}"
        p99 = f"{row.result.p99_ms:6.1f}ms" if row.result else ""
        print(
            f"{row.state:48} {row.peak_rss_kb / 1024:7.1f}MB {row.end_rss_kb / 1024:7.1f}MB "
            f"{row.cores:6.2f} {rps} {p99:>8}"
        )


if __name__ == "__main__":
    main()
