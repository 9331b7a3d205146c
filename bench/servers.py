"""Start the two apps under uvicorn with identical flags, wait until they answer, stop them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from bench.load import REPO, BenchError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def uvicorn_executable() -> Path:
    path = Path(sys.executable).parent / "uvicorn"
    if not path.exists():
        raise BenchError(f"uvicorn not found at {path}: run `make install` first")
    return path


# What ``cds-service serve`` ships: the h11 parser with its request-head limit at the default
# CDS_MAX_HEADER_BYTES. ``--http httptools`` measures uvicorn's default parser instead (no limit).
H11_MAX_HEAD_BYTES = 65_536


def http_flags(http: str) -> list[str]:
    if http == "h11":
        return ["--http", "h11", "--h11-max-incomplete-event-size", str(H11_MAX_HEAD_BYTES)]
    return ["--http", http]


@dataclass
class Server:
    name: str
    target: str  # module:attribute for uvicorn
    port: int
    log_path: Path
    env: dict[str, str]
    http: str = "h11"
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(uvicorn_executable()),
                self.target,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--no-access-log",
                *http_flags(self.http),
            ],
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, path: str, body: bytes, timeout: float = 60.0) -> Any:
        """POST the benchmark request until the app answers; return the decoded 200 answer."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with {self.process.returncode} during start-up:\n"
                        f"{self.log_tail()}"
                    )
                try:
                    response = client.post(
                        path, content=body, headers={"Content-Type": "application/json"}
                    )
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise BenchError(
                            f"{self.name} did not answer within {timeout:g} s:\n{self.log_tail()}"
                        ) from None
                    time.sleep(0.1)
                    continue
                if response.status_code != 200:
                    raise BenchError(
                        f"{self.name} answered the benchmark request with HTTP "
                        f"{response.status_code}, not 200:\n{response.text[:2000]}"
                    )
                return json.loads(response.content)

    def get_json(self, path: str) -> Any:
        response = httpx.get(self.base_url + path, timeout=30.0)
        if response.status_code != 200:
            raise BenchError(f"{self.name}: GET {path} answered HTTP {response.status_code}")
        return json.loads(response.content)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None


class Servers:
    """The service and the bare app, both running for the whole measurement."""

    def __init__(self, workdir: Path, http: str = "h11") -> None:
        # Service settings at their defaults whatever the caller's shell exports, but the database
        # in the run's temporary directory (never ./var).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env["CDS_DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
        # The bench measures the hook path; JWT verification (a signature check and one
        # database insert per call) is not part of it. Loopback only.
        env["CDS_REQUIRE_JWT"] = "false"
        service_port = free_port()
        bare_port = free_port()
        while bare_port == service_port:
            bare_port = free_port()
        # cds_service.main:app, its logging as `cds-service serve` leaves it (bench/service_app.py).
        self.service = Server(
            "service", "bench.service_app:app", service_port, workdir / "service.log", env, http
        )
        self.bare = Server("bare", "bench.bare_app:app", bare_port, workdir / "bare.log", env, http)

    def __enter__(self) -> Servers:
        self.service.start()
        self.bare.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.service.stop()
        self.bare.stop()
