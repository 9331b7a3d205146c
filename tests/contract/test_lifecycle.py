"""The drain on SIGTERM, in-process: the server's SIGTERM handler is wrapped, readiness falls at
once, every answer closes its connection, the server is told to stop after the drain (or at
once on a second SIGTERM); nothing is installed where no server handles SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from cds_service.api import routes
from cds_service.lifecycle import Lifecycle
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def server_handler() -> Iterator[list[float]]:
    """A stand-in for the server's SIGTERM handler; the loop times at which it was called."""
    calls: list[float] = []

    def handler(sig: int, frame: FrameType | None) -> None:
        calls.append(asyncio.get_running_loop().time())

    before = signal.signal(signal.SIGTERM, handler)
    yield calls
    signal.signal(signal.SIGTERM, before)


async def test_sigterm_drains_then_hands_the_signal_to_the_server(
    server_handler: list[float],
) -> None:
    loop = asyncio.get_running_loop()
    lifecycle = Lifecycle(drain_seconds=0.3)
    uninstall = lifecycle.install(loop)
    sent = loop.time()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert lifecycle.draining
    assert server_handler == []  # not yet: the drain runs first
    await asyncio.sleep(0.5)
    assert len(server_handler) == 1
    assert server_handler[0] - sent >= 0.3
    uninstall()
    assert signal.getsignal(signal.SIGTERM) is not None
    os.kill(os.getpid(), signal.SIGTERM)  # the server's own handler again, at once
    await asyncio.sleep(0.05)
    assert len(server_handler) == 2


async def test_a_second_sigterm_skips_the_rest_of_the_drain(server_handler: list[float]) -> None:
    lifecycle = Lifecycle(drain_seconds=30)
    uninstall = lifecycle.install(asyncio.get_running_loop())
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.1)
    assert len(server_handler) == 1
    await asyncio.sleep(0.1)
    assert len(server_handler) == 1  # the drain's own hand-over was cancelled
    uninstall()


async def test_nothing_is_installed_without_a_server_handler() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        lifecycle = Lifecycle(drain_seconds=1)
        lifecycle.install(asyncio.get_running_loop())
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_draining_readyz_is_503_and_answers_close_their_connection(
    client_at: ClientFactory,
) -> None:
    client = client_at(cases.MAYA_SUSPECT_DAY)
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert "connection" not in ready.headers
    collaborators = client._transport.app.state.collaborators  # type: ignore[attr-defined]
    collaborators.lifecycle.draining = True
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "shutting down"}
    assert ready.headers["connection"] == "close"
    call = await client.post(SERVICE_URL, json=hook_request(cases.maya_before_mri(), pid="maya"))
    assert call.status_code == 200  # still served through the drain
    assert call.json()["cards"]
    assert call.headers["connection"] == "close"
    missing = await client.get("/no-such-path")
    assert missing.status_code == 404
    assert missing.headers["connection"] == "close"


async def test_readyz_does_not_wait_on_a_database_that_hangs(
    client_at: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that hangs (a failover, a stopped server): /readyz answers 503 within its
    bound, the worker goes on serving, and probes do not pile up a thread each."""
    release = threading.Event()
    checks: list[int] = []

    def hanging(engine: object) -> bool:
        checks.append(1)
        release.wait(10)
        return True

    monkeypatch.setattr(routes, "is_ready", hanging)
    monkeypatch.setattr(routes, "READY_CHECK_SECONDS", 0.2)
    client = client_at(cases.MAYA_SUSPECT_DAY)
    try:
        first, second = await asyncio.gather(client.get("/readyz"), client.get("/readyz"))
        assert (first.status_code, second.status_code) == (503, 503)
        assert first.json() == {"status": "database not answering"}
        assert (await client.get("/healthz")).status_code == 200
        assert checks == [1]  # one check at a time
    finally:
        release.set()
    await asyncio.sleep(0.05)
    assert (await client.get("/readyz")).status_code == 200  # the next check, once it answers
