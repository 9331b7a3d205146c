"""The service as it is run: ``uvicorn cds_service.main:app`` and ``cds-service serve`` in a real
process on 127.0.0.1, configured by CDS_ environment variables."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVICE_URL
from tests.integration.conftest import free_port, service_process

ROOT = Path(__file__).resolve().parents[2]


def test_server_uvicorn_app_answers_discovery_and_a_hook_call(tmp_path: Path) -> None:
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
    }
    with service_process(tmp_path, env) as service:
        discovery = httpx.get(f"{service.url}/cds-services")
        assert discovery.json()["services"][0]["id"] == "sacral-bsi"
        body = (ROOT / "examples" / "patient-view-no-card.json").read_bytes()
        call = httpx.post(
            f"{service.url}/cds-services/sacral-bsi",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert call.json() == {"cards": []}
        logged = service.stop()
    assert (tmp_path / "var" / "cds.db").exists()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert [line["outcome"] for line in lines if line["event"] == "hook_call"] == ["not_a_runner"]
    assert any(line["event"].startswith("JWT VERIFICATION IS OFF") for line in lines)


def test_server_cli_serve_uses_cds_port(tmp_path: Path) -> None:
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_REQUIRE_JWT": "false"}
    with service_process(tmp_path, env, cli=True) as service:
        assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}


def test_server_refuses_to_start_unauthenticated_beyond_loopback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "CDS_HOST": "0.0.0.0",
            "CDS_REQUIRE_JWT": "false",
            "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Refusing to start on 0.0.0.0 with JWT verification off" in result.stderr
    assert "Traceback" not in result.stderr


def _connect(url: str, timeout: float = 30) -> socket.socket:
    """A raw TCP connection to the service at ``url`` (http://host:port)."""
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def _raw_get(url: str, header_bytes: int) -> bytes:
    """GET /healthz with one header of ``header_bytes`` bytes over a raw socket; the answer's
    first bytes (b"" if the server closed without one)."""
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: cds.test\r\nX-Big: "
        + b"a" * header_bytes
        + b"\r\nConnection: close\r\n\r\n"
    )
    with _connect(url) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        with contextlib.suppress(ConnectionResetError):
            return sock.recv(200)
    return b""


def _websocket_upgrade(url: str, path: str) -> bytes:
    """A WebSocket upgrade request over a raw socket; the answer's first bytes."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: cds.test\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with _connect(url) as sock:
        sock.sendall(request)
        return sock.recv(200)


def test_server_cli_serve_has_no_websocket_endpoint(tmp_path: Path) -> None:
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_REQUIRE_JWT": "false"}
    with service_process(tmp_path, env, cli=True) as service:
        # Plain HTTP, a 404 for an unknown path: no 101, no 403 from a WebSocket handler.
        answer = _websocket_upgrade(service.url, "/nothing/pat-0042?patient=pat-0042")
        assert answer.startswith(b"HTTP/1.1 404"), answer
        logged = service.stop()
    assert "pat-0042" not in logged


def test_server_cli_serve_closes_a_connection_whose_head_never_comes(tmp_path: Path) -> None:
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
        "CDS_REQUEST_READ_TIMEOUT_SECONDS": "1",
        "CDS_MAX_CONNECTIONS": "20",
    }
    with service_process(tmp_path, env, cli=True) as service:
        # More silent and half-sent connections than the limit: each is closed at its deadline.
        idle = [_connect(service.url) for _ in range(25)]
        for n, sock in enumerate(idle):
            if n % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        for sock in idle:
            with sock:
                assert sock.recv(100) == b""  # closed by the server, nothing answered
        assert httpx.get(f"{service.url}/healthz").status_code == 200
        # A head that arrives in time, then a response, then a slow second head: closed too.
        with _connect(service.url) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                answer += sock.recv(1000)
            assert answer.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert sock.recv(100) == b""
        # A head promising a body that never comes is answered, then closed: its unread body
        # cannot keep the connection past the deadline by trickling a byte now and then.
        with _connect(service.url, timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            answer = b""
            while chunk := sock.recv(1000):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")  # and then end of stream: closed


def test_server_cli_serve_early_answers_arrive_and_pipelining_holds(tmp_path: Path) -> None:
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
        "CDS_MAX_BODY_BYTES": "1024",
    }
    with service_process(tmp_path, env, cli=True) as service:
        # A body over the limit, sent whole before reading: the 413 arrives (no reset).
        with _connect(service.url) as sock:
            body = b"x" * 3_000_000
            head = f"POST {SERVICE_URL} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
            assert sock.recv(100).startswith(b"HTTP/1.1 413")
        # Two requests in one packet, the second's body in a later one: both answered.
        with _connect(service.url) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"
            )
            time.sleep(0.3)  # the first answer goes out while the second body is unfinished
            sock.sendall(b"67890")
            answers = b""
            while answers.count(b"HTTP/1.1 ") < 2:
                chunk = sock.recv(4096)
                assert chunk, answers
                answers += chunk
            assert answers.startswith(b"HTTP/1.1 200")
            assert b"HTTP/1.1 404" in answers


def test_server_cli_serve_keeps_a_connection_answered_before_its_body_was_read(
    tmp_path: Path,
) -> None:
    """A call refused before its body has come (no such service, a replayed token): once the
    body comes, the connection stays open for the next request, as the answer did not say
    otherwise (a balancer reusing it must not find it closed under its next request)."""
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_REQUIRE_JWT": "false"}
    with service_process(tmp_path, env, cli=True) as service, _connect(service.url) as sock:
        sock.sendall(
            b"POST /cds-services/no-such-service HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{"a":'
        )
        answer = _read_answer(sock)  # answered with half the body still to come
        assert answer.startswith(b"HTTP/1.1 404")
        assert b"connection: close" not in answer.lower()
        sock.sendall(b" 123}")
        time.sleep(2.5)  # past the linger given to an unfinished body
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(sock).startswith(b"HTTP/1.1 200")


def test_server_cli_serve_keeps_idle_connections_for_cds_keep_alive_seconds(
    tmp_path: Path,
) -> None:
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
        "CDS_KEEP_ALIVE_SECONDS": "3",
    }
    with service_process(tmp_path, env, cli=True) as service, _connect(service.url) as sock:
        for pause in (2.0, 0.0):  # within the keep-alive: the same connection serves again
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(pause)
        started = time.monotonic()
        assert sock.recv(100) == b""  # then closed by the server, idle for 3 s
        assert 2.0 < time.monotonic() - started < 6.0


def _read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer (its head, and a body of its Content-Length) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_server_cli_serve_bounds_request_headers(tmp_path: Path) -> None:
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
        "CDS_MAX_HEADER_BYTES": "65536",
    }
    with service_process(tmp_path, env, cli=True) as service:
        # A large but honest header (a long bearer token, say) passes...
        assert _raw_get(service.url, 32_000).startswith(b"HTTP/1.1 200")
        # ...one past the cap is refused, not read to its end (httptools read 100 MB of it).
        refused = _raw_get(service.url, 4_000_000)
        assert refused == b"" or refused.startswith(b"HTTP/1.1 400"), refused
        assert httpx.get(f"{service.url}/healthz").status_code == 200


def _start_fails(
    tmp_path: Path, env: dict[str, str], *, cli: bool
) -> subprocess.CompletedProcess[str]:
    command = (
        [sys.executable, "-m", "cds_service", "serve"]
        if cli
        else [sys.executable, "-m", "uvicorn", "cds_service.main:app", "--port", str(free_port())]
    )
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert line.startswith("Error: ")
    return result


@pytest.mark.parametrize("cli", [True, False], ids=["serve", "uvicorn"])
def test_server_start_errors_are_one_line(tmp_path: Path, cli: bool) -> None:
    sqlite = f"sqlite:///{tmp_path / 'cds.db'}"
    issuers = tmp_path / "issuers.toml"
    issuers.write_text('[[issuer]]\niss = "https://ehr.example"\njwks_ur = "https://x"\n')
    typo = _start_fails(
        tmp_path,
        {
            "CDS_DATABASE_URL": sqlite,
            "CDS_PUBLIC_BASE_URL": "https://cds.example",
            "CDS_TRUSTED_ISSUERS_FILE": str(issuers),
        },
        cli=cli,
    )
    assert "CDS_TRUSTED_ISSUERS_FILE" in typo.stderr
    assert "jwks_ur" in typo.stderr

    def database_fails(url: str) -> subprocess.CompletedProcess[str]:
        return _start_fails(
            tmp_path, {"CDS_DATABASE_URL": url, "CDS_REQUIRE_JWT": "false"}, cli=cli
        )

    down = database_fails(f"postgresql+psycopg://cds:s3cret@127.0.0.1:{free_port()}/cds")
    assert "cannot open the database" in down.stderr
    assert "Connection refused" in down.stderr
    assert "s3cret" not in down.stderr
    hidden = database_fails(f"postgresql+psycopg://cds@127.0.0.1:{free_port()}/cds?password=s3cret")
    assert "s3cret" not in hidden.stderr
    # A password that is also part of the host, the port or the message is not shown by
    # masking it there: the driver's message is left out.
    port = free_port()
    echoed = database_fails(f"postgresql+psycopg://cds:{port}@127.0.0.1:{port}/cds")
    assert "the driver's message is left out" in echoed.stderr
    assert "***" not in echoed.stderr.split("(CDS_DATABASE_URL)")[1]
    level = _start_fails(tmp_path, {"CDS_DATABASE_URL": sqlite, "CDS_LOG_LEVEL": "LOUD"}, cli=cli)
    assert "CDS_LOG_LEVEL" in level.stderr
    bad = _start_fails(tmp_path, {"CDS_DATABASE_URL": sqlite, "CDS_REQUIRE_JWT": "maybe"}, cli=cli)
    assert "CDS_REQUIRE_JWT" in bad.stderr
    assert "maybe" not in bad.stderr


def test_server_under_plain_uvicorn_logs_json_and_no_configured_port(tmp_path: Path) -> None:
    # CDS_PORT says one port, uvicorn is told another: no line may claim the first.
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
        "CDS_PORT": "9",
    }
    with service_process(tmp_path, env) as service:
        assert httpx.get(f"{service.url}/healthz?patient=someone").status_code == 200
        # A refused path and a WebSocket upgrade may carry anything, a patient id included.
        assert httpx.get(f"{service.url}/Patient/pat-0042?patient=pat-0042").status_code == 404
        _websocket_upgrade(service.url, "/cds-services?patient=pat-0042")
        logged = service.stop()
    assert "pat-0042" not in logged
    lines = [json.loads(line) for line in logged.splitlines() if line.strip()]  # all JSON
    port = service.url.rsplit(":", 1)[1]
    assert any(f"127.0.0.1:{port}" in line["event"] for line in lines), logged
    assert not any(":9 " in line["event"] or line.get("configuredPort") for line in lines)
    (access,) = [x for x in lines if x["event"] == "http_request" and x.get("path") == "/healthz"]
    assert access["method"] == "GET"
    assert access["status"] == 200
    assert "someone" not in logged
