"""Load generators behind one interface: ``wrk`` when installed, else ``bench.loadgen``.

Both run in their own process, hold C keep-alive connections for a fixed duration and report the
requests completed, p50/p99 latency and any error. Any error (non-200 answer, broken connection)
fails the benchmark: a number measured on failing requests is worse than no number.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.loadgen import RESULT_PREFIX

REPO = Path(__file__).resolve().parents[1]

_WRK_SCRIPT = """\
local f = assert(io.open("{body_file}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{prefix}{{"requests":%d,"seconds":%.6f,"p50_ms":%.4f,"p99_ms":%.4f,'
      .. '"status_errors":%d,"socket_errors":%d}}\\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


class BenchError(RuntimeError):
    """The benchmark cannot produce a trustworthy number."""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class LoadGenerator(Protocol):
    name: str

    def run(self, port: int, path: str, concurrency: int, duration: float) -> Result: ...


def _parse(output: str, what: str) -> Result:
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            break
    else:
        raise BenchError(f"{what}: no result line in its output:\n{output[-2000:]}")
    errors = int(data["status_errors"]) + int(data["socket_errors"])
    if errors or int(data["requests"]) == 0:
        raise BenchError(
            f"{what}: {data['requests']} requests, {data['status_errors']} non-200 answers, "
            f"{data['socket_errors']} socket errors; refusing to report numbers"
        )
    return Result(
        requests=int(data["requests"]),
        seconds=float(data["seconds"]),
        p50_ms=float(data["p50_ms"]),
        p99_ms=float(data["p99_ms"]),
    )


def _run(command: list[str], timeout: float, what: str) -> str:
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"{what} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Wrk:
    def __init__(self, executable: str, body_file: Path, workdir: Path) -> None:
        self.executable = executable
        # One script per body: each request of the run has its own generator.
        self.script = workdir / f"post-{body_file.stem}.lua"
        self.script.write_text(
            _WRK_SCRIPT.format(body_file=str(body_file), prefix=RESULT_PREFIX), encoding="utf-8"
        )
        version = subprocess.run(
            [executable, "-v"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"wrk (\S+)", version)
        self.name = f"wrk {found.group(1)}" if found else "wrk"

    def run(self, port: int, path: str, concurrency: int, duration: float) -> Result:
        command = [
            self.executable,
            "-t1",  # one client thread: the other core is the server's
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "30s",
            "-s",
            str(self.script),
            f"http://127.0.0.1:{port}{path}",
        ]
        return _parse(_run(command, duration + 60, "wrk"), "wrk")


class PythonLoad:
    def __init__(self, body_file: Path, why: str) -> None:
        self.body_file = body_file
        self.name = f"bench.loadgen (Python asyncio; {why})"

    def run(self, port: int, path: str, concurrency: int, duration: float) -> Result:
        command = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(port),
            "--path",
            path,
            "--body-file",
            str(self.body_file),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
        ]
        return _parse(_run(command, duration + 60, "bench.loadgen"), "bench.loadgen")


def load_generator(choice: str, body_file: Path, workdir: Path) -> LoadGenerator:
    """``auto``: wrk when on PATH, else the Python one; ``wrk`` or ``python`` to force one."""
    wrk = shutil.which("wrk")
    if choice == "wrk" and wrk is None:
        raise BenchError("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    if choice in ("auto", "wrk") and wrk is not None:
        return Wrk(wrk, body_file, workdir)
    return PythonLoad(body_file, "wrk not installed" if wrk is None else "--loadgen python")
