"""A real FHIR R4 server on loopback for the integration tests: sekmet-fhir, installed in
.venv-fhir (by ``make fhir-server-install``, which ``make test`` runs, or here when missing) and
started here, on a free port, with the repository's settings file and a database of its own,
then stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SEKMET = ROOT / ".venv-fhir" / "bin" / "sekmet"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {seconds:.0f} s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running sekmet-fhir server, e.g. http://127.0.0.1:40123/fhir."""
    if not SEKMET.exists():  # install it, as `make fhir-server-install` does
        installed = subprocess.run(
            ["make", "-C", str(ROOT), "fhir-server-install"],
            capture_output=True,
            text=True,
            check=False,
        )
        if installed.returncode != 0 or not SEKMET.exists():
            message = (
                f"could not install the local FHIR server (.venv-fhir):\n{installed.stderr[-2000:]}"
            )
            if os.environ.get("CDS_TEST_REQUIRE_FHIR_SERVER") == "1":
                pytest.fail(message)
            pytest.skip(message)
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    data = tmp_path_factory.mktemp("fhir-server")
    log = data / "server.log"
    env = {
        **os.environ,
        "SEKMET_PORT": str(port),
        "SEKMET_BASE_URL": base,
        "SEKMET_DB": str(data / "sekmet.db"),
    }
    command = [str(SEKMET), "serve", "--config", str(ROOT / "fhir-server" / "sekmet.yaml"),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=data, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            wait_until_ready(f"{base}/metadata", process, log)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def put_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs each resource at its own id."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def load(base: str, bundle: dict[str, Any]) -> None:
    response = httpx.post(
        base, json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=60
    )
    assert response.status_code == 200, response.text[:1000]


def careplans_with_identifier(base: str, identifier: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{base}/CarePlan",
        params={"identifier": f"urn:ietf:rfc:3986|{identifier}", "_count": "100"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        """Stop the process; return what it logged."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text()


@contextlib.contextmanager
def service_process(
    folder: Path,
    env: dict[str, str],
    *,
    name: str = "service",
    cli: bool = False,
    port: int | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[ServiceProcess]:
    """The service in a real process on 127.0.0.1 (``uvicorn cds_service.main:app``, or
    ``cds-service serve`` with ``cli``, and ``args``), configured by ``env``, on ``port``
    (default: a free one); stopped afterwards."""
    port = port or free_port()
    if cli:
        command = [sys.executable, "-m", "cds_service", "serve", *args]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "cds_service.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    log = folder / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env={**os.environ, "CDS_PORT": str(port), **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = ServiceProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_ready(f"{running.url}/readyz", process, log)
        yield running
    finally:
        running.stop()
