"""The service as it is run: ``uvicorn cds_service.main:app`` and ``cds-service serve`` in a real
process on 127.0.0.1, configured by CDS_ environment variables."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server process exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready in 30 s")


def run(
    command: list[str], port: int, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "CDS_PORT": str(port),
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
    }
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", process)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def uvicorn_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
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
    yield from run(command, port, tmp_path)


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    yield from run([sys.executable, "-m", "cds_service", "serve"], port, tmp_path)


def test_server_uvicorn_app_answers_discovery_and_a_hook_call(
    uvicorn_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    base, process = uvicorn_server
    discovery = httpx.get(f"{base}/cds-services")
    assert discovery.json()["services"][0]["id"] == "sacral-bsi"
    body = (ROOT / "examples" / "patient-view-no-card.json").read_bytes()
    call = httpx.post(
        f"{base}/cds-services/sacral-bsi",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert call.json() == {"cards": []}
    assert (tmp_path / "var" / "cds.db").exists()
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert [line["outcome"] for line in lines if line["event"] == "hook_call"] == ["not_a_runner"]


def test_server_cli_serve_uses_cds_port(cli_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, _ = cli_server
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
