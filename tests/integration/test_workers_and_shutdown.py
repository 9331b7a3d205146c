"""``cds-service serve --workers N`` and the graceful stop on SIGTERM, in real processes: the
workers' metrics add up on every worker's ``/metrics``; on SIGTERM ``/readyz`` says 503 at once,
calls go on being answered through the drain, a call in flight finishes, then the process exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.builders import hook_request
from tests.conftest import SERVICE_URL
from tests.integration.cluster import metric_sum
from tests.integration.conftest import ServiceProcess, service_process
from tests.integration.test_server_process import _start_fails

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def slow_fhir_server(delay: float) -> Iterator[tuple[str, list[str]]]:
    """A FHIR server on loopback that answers every read after ``delay`` seconds: a Patient,
    or an empty searchset. Yields its base URL and the paths asked for so far."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            time.sleep(delay)
            body: dict[str, object]
            if self.path.startswith("/fhir/Patient/"):
                body = {"resourceType": "Patient", "id": self.path.rsplit("/", 1)[-1]}
            else:
                body = {"resourceType": "Bundle", "type": "searchset", "entry": []}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir", asked
    finally:
        server.shutdown()
        server.server_close()


def workers_of(service: ServiceProcess) -> dict[int, dict[str, str]]:
    """The worker processes of ``cds-service serve`` (Linux /proc), with their environments."""
    pid = service.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers: dict[int, dict[str, str]] = {}
    for child in map(int, children):
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            pairs = (item.decode().partition("=") for item in environ if b"=" in item)
            workers[child] = {key: value for key, _, value in pairs}
    return workers


def all_started(service: ServiceProcess, workers: int, seconds: float = 60) -> ServiceProcess:
    """Wait until each of ``workers`` workers has finished its start (the first one ready is
    not all of them: a worker still starting when SIGTERM comes stops without a drain)."""
    deadline = time.monotonic() + seconds
    while service.log.read_text().count('"Application startup complete."') < workers:
        assert time.monotonic() < deadline, service.log.read_text()[-2000:]
        time.sleep(0.1)
    return service


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
        **extra,
    }


def test_workers_serve_together_and_their_metrics_add_up(tmp_path: Path) -> None:
    with service_process(tmp_path, env_for(tmp_path), cli=True, args=("--workers", "2")) as svc:
        all_started(svc, 2)
        workers = workers_of(svc)
        assert len(workers) == 2
        metrics_dirs = {env.get("PROMETHEUS_MULTIPROC_DIR") for env in workers.values()}
        (metrics_dir,) = metrics_dirs  # one, shared
        assert metrics_dir
        assert Path(metrics_dir).is_dir()
        for _ in range(12):  # a new connection each: the kernel hands them to either worker
            assert httpx.post(f"{svc.url}/cds-services/no-such-service").status_code == 404
        figures = []
        for _ in range(4):
            page = httpx.get(f"{svc.url}/metrics").text
            figures.append(
                metric_sum(
                    page, "cds_hook_requests_total", hook="unknown", service="unknown", status="404"
                )
            )
        assert figures == [12.0] * 4  # whichever worker answers, it counts every worker's calls
        svc.process.send_signal(signal.SIGTERM)
        svc.process.wait(timeout=30)
    assert not Path(metrics_dir).exists()  # the temporary folder went with the service


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_then_lets_the_call_in_flight_finish(tmp_path: Path, workers: int) -> None:
    drain = 2.0
    env = env_for(
        tmp_path,
        CDS_SHUTDOWN_DRAIN_SECONDS=str(drain),
        CDS_SHUTDOWN_GRACE_SECONDS="20",
        CDS_FHIR_TIMEOUT_SECONDS="15",
    )
    args = ("--workers", str(workers))
    with (
        slow_fhir_server(delay=4.0) as (fhir, asked),
        service_process(tmp_path, env, cli=True, args=args) as svc,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        all_started(svc, workers)
        body = hook_request(pid="slow-1", fhir_server=fhir)
        in_flight = pool.submit(httpx.post, svc.url + SERVICE_URL, json=body, timeout=60)
        deadline = time.monotonic() + 20
        while not asked and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asked, "the call never reached the FHIR server"
        svc.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # /readyz says 503 at once (the supervisor of several workers passes the signal on
        # within half a second), and says so on a connection it closes.
        while True:
            ready = httpx.get(f"{svc.url}/readyz")
            if ready.status_code == 503:
                break
            assert time.monotonic() - signalled < 1.0, "still ready 1 s after SIGTERM"
            time.sleep(0.05)
        assert ready.json() == {"status": "shutting down"}
        assert ready.headers["connection"] == "close"
        assert time.monotonic() - signalled < drain

        # Through the drain, calls are still answered.
        assert httpx.get(f"{svc.url}/cds-services").status_code == 200

        # The call in flight since before SIGTERM finishes, after the listener has closed.
        answer = in_flight.result(timeout=60)
        assert answer.status_code == 200
        assert answer.json() == {"cards": []}
        assert time.monotonic() - signalled > drain
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{svc.url}/healthz")
        svc.process.wait(timeout=30)
        logged = svc.log.read_text()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert sum(1 for line in lines if line["event"] == "shutdown requested: draining") == workers
    assert [line["status"] for line in lines if line["event"] == "hook_call"] == [200]


def test_workers_setting_out_of_range_is_one_line(tmp_path: Path) -> None:
    failed = _start_fails(tmp_path, env_for(tmp_path) | {"CDS_WORKERS": "0"}, cli=True)
    assert "CDS_WORKERS" in failed.stderr


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return int(process.stdout)


def test_a_given_metrics_folder_is_rid_of_ended_processes_files_only(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR set (an emptyDir that outlived a container restart): the
    metrics files of processes that have ended are removed at start, or their counts would add
    up with this run's; a live process's files (another instance sharing the folder) and other
    files are left alone."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    gone = folder / f"counter_{dead_pid()}.db"
    gone.write_bytes(b"left by a process that is gone")
    live = folder / f"counter_{os.getpid()}.db"  # this test's process: alive
    live.write_bytes(b"")
    other = folder / "notes.txt"
    other.write_bytes(b"not a metrics file")
    env = env_for(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder))
    with service_process(tmp_path, env, cli=True) as svc:
        names = sorted(p.name for p in folder.iterdir())
        live.unlink()  # an empty file is no valid one: it only had to survive the start
        assert httpx.post(f"{svc.url}/cds-services/no-such-service").status_code == 404
        page = httpx.get(f"{svc.url}/metrics").text
    assert gone.name not in names
    assert live.name in names
    assert other.exists()
    assert f"counter_{svc.process.pid}.db" in names  # this process reports through the folder
    assert (
        metric_sum(page, "cds_hook_requests_total", hook="unknown", service="unknown", status="404")
        == 1
    )


@pytest.mark.parametrize("kind", ["missing", "a file", "holding a database"])
def test_an_unusable_metrics_folder_is_one_line_at_start(tmp_path: Path, kind: str) -> None:
    """A metrics folder that is missing, a file, or another folder (./var, with the service's
    SQLite database in it: never deleted, nor read as metrics) stops the start, in one line."""
    target = tmp_path / "metrics"
    if kind == "a file":
        target.write_text("")
    if kind == "holding a database":
        target.mkdir()
        (target / "cds.db").write_bytes(b"SQLite format 3")
    env = env_for(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(target))
    failed = _start_fails(tmp_path, env, cli=True)
    assert "PROMETHEUS_MULTIPROC_DIR" in failed.stderr
    version = subprocess.run(
        [sys.executable, "-m", "cds_service", "--version"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert version.returncode == 0, version.stderr  # other commands are not affected
    if kind == "holding a database":
        assert (target / "cds.db").read_bytes() == b"SQLite format 3"


def test_a_second_sigterm_ends_the_drain_of_every_worker(tmp_path: Path) -> None:
    env = env_for(tmp_path, CDS_SHUTDOWN_DRAIN_SECONDS="60")
    with service_process(tmp_path, env, cli=True, args=("--workers", "2")) as svc:
        all_started(svc, 2)
        svc.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while httpx.get(f"{svc.url}/readyz").status_code != 503:
            assert time.monotonic() - signalled < 0.5, "still ready 0.5 s after SIGTERM"
            time.sleep(0.02)
        svc.process.send_signal(signal.SIGTERM)
        svc.process.wait(timeout=20)
        assert time.monotonic() - signalled < 20  # not the 60 s drain


def test_a_worker_that_cannot_start_stops_the_service(tmp_path: Path) -> None:
    """A worker that dies and cannot start again (its content folder is gone) stops the
    service with one line, instead of being started again and again."""
    content = Path(shutil.copytree(ROOT / "cards", tmp_path / "cards"))
    env = env_for(tmp_path, CDS_CONTENT_DIR=str(content))
    with service_process(tmp_path, env, cli=True, args=("--workers", "2")) as svc:
        all_started(svc, 2)
        shutil.rmtree(content)
        victim = next(iter(workers_of(svc)))
        os.kill(victim, signal.SIGKILL)
        code = svc.process.wait(timeout=60)
    assert code == 2
    assert "a worker could not start" in svc.log.read_text()
