"""How ``cds-service serve`` runs uvicorn: one process or several workers, a graceful stop, and
the h11 parser with bounds on what a client may hold.

uvicorn's h11 protocol bounds the size of a request head (``h11_max_incomplete_event_size``)
but not the time it takes to arrive: a connection that sends nothing, or a few bytes now and
then, is kept for ever. ``HeadDeadlineH11Protocol`` closes a connection whose request line and
headers are not complete ``head_timeout`` seconds after it opened or after its previous
response. (Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from cds_service import metrics
from cds_service.main import StartupError, create_app
from cds_service.metrics import MULTIPROC_DIR_ENV
from cds_service.settings import Settings


def serve(settings: Settings, workers: int) -> None:
    """Run the service until SIGTERM or SIGINT: in this process, or in ``workers`` processes
    sharing one listening socket (each builds its app from the same environment, checked here
    first: a setting that would stop a worker stops this command instead, with one line)."""
    app = create_app(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        # h11 bounds the request line plus headers in size (httptools reads them without
        # limit); the protocol class bounds them in time too.
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "ws": "none",  # no WebSocket endpoint: an upgrade request is plain HTTP (404), not a 403
        "limit_concurrency": settings.max_connections,  # per worker
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "access_log": False,  # one structured line per hook call instead (cds_service.logs)
        "log_config": None,  # create_app made uvicorn's loggers write the service's JSON lines
        "log_level": settings.log_level.lower(),
    }
    if workers == 1:
        uvicorn.run(
            app, http=head_deadline_protocol(settings.request_read_timeout_seconds), **options
        )
        return
    app.state.collaborators.engine.dispose()  # the workers open their own
    config = uvicorn.Config(
        "cds_service.main:app",
        workers=workers,
        http="cds_service.server:HeadDeadlineH11Protocol",
        **options,
    )
    supervisor = _Supervisor(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise StartupError("a worker could not start (its error is above); stopped")


class _Supervisor(Multiprocess):
    """uvicorn's supervisor of workers, with three changes:

    - SIGTERM reaches the workers at once (uvicorn's loop looks at signals every 0.5 s), and a
      second SIGTERM is passed on too (each worker then skips the rest of its drain);
    - its own copy of the listening socket is closed as soon as the workers are told to stop.
      Kept open, the kernel would go on queueing new connections after the workers stop
      listening, and reset them all when this process exits; closed, the socket stops
      listening with the workers' last copies (after their drain), and new connections are
      refused, which a load balancer retries elsewhere;
    - a worker found dead has its live metrics (calls in flight) forgotten.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._terminated = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, sig: int, frame: object) -> None:
        for process in self.processes:
            process.terminate()
        if not self._terminated:
            self._terminated = True
            self._close_sockets()
            self.should_exit.set()

    def terminate_all(self) -> None:
        if not self._terminated:  # SIGINT, or a worker that could not start
            self._terminated = True
            super().terminate_all()
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def keep_subprocess_alive(self) -> None:
        folder = os.environ.get(MULTIPROC_DIR_ENV)
        for process in self.processes:
            if folder and process.pid is not None and not process.process.is_alive():
                metrics.worker_exited(process.pid, folder)
        super().keep_subprocess_alive()


# prometheus-client's own files: <kind>_<pid>.db (nothing else in the folder is touched).
_METRICS_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Where the workers' metrics meet (prometheus-client multiprocess mode): the folder in
    PROMETHEUS_MULTIPROC_DIR, rid of the files processes that are gone left there (their
    counters would add up with this run's; a live process's are kept: another instance may
    share the folder); or, for several workers and none given, a private temporary one, removed
    at the end. One worker and none given: metrics stay in the process."""
    if metrics.MULTIPROC_DIR_PROBLEM:
        raise StartupError(metrics.MULTIPROC_DIR_PROBLEM)
    given = os.environ.get(MULTIPROC_DIR_ENV)
    if given:
        files = {p: _METRICS_FILE.fullmatch(p.name) for p in Path(given).glob("*.db")}
        foreign = sorted(p.name for p, found in files.items() if found is None)
        if foreign:  # prometheus-client would read them as its own, and fail on every scrape
            raise StartupError(
                f"{MULTIPROC_DIR_ENV} ({given}) holds files that are not metrics "
                f"({', '.join(foreign[:3])}): give the metrics a folder of their own"
            )
        for path, found in files.items():
            assert found is not None  # a file of another kind stopped the start above
            pid = int(found.group(1))
            if pid != os.getpid() and not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="cds-metrics-"))
    os.environ[MULTIPROC_DIR_ENV] = str(folder)
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def head_deadline_protocol(head_timeout: float) -> type[asyncio.Protocol]:
    """The h11 protocol class with this deadline for each request head."""

    class HeadDeadlineH11Protocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None
        _linger: asyncio.TimerHandle | None = None
        _lingering_cycle: object = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_response_complete(self) -> None:
            # Read before uvicorn starts the next cycle (a pipelined request would change it).
            unread_body = self.conn.their_state is h11.SEND_BODY
            super().on_response_complete()
            if unread_body:
                # Answered before its body was read (a 408, a 413): uvicorn reads and drops
                # what is still coming, and the connection goes on once it has come (the
                # client, told nothing, may reuse it). A body still unfinished after a short
                # linger must not keep the connection, and the deadline, at bay: closed then,
                # as HTTP allows (not at once: closing a socket with unread data resets it, and
                # the client would lose the answer).
                self._lingering_cycle = self.cycle
                self._linger = self.loop.call_later(min(2.0, head_timeout), self._linger_over)
                return
            self._arm_head_deadline()

        def _linger_over(self) -> None:
            self._linger = None
            if self.cycle is not self._lingering_cycle:
                return  # the body came, and the next request is being read: nothing to do
            if self.conn.their_state is h11.SEND_BODY:
                self._close()
            else:  # the body came: the connection waits for the next head, as after any answer
                self._arm_head_deadline()

        def _close(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a request head is in: no deadline
                self._disarm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_deadline()
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            super().connection_lost(exc)

        def _arm_head_deadline(self) -> None:
            self._disarm_head_deadline()
            if not self.transport.is_closing():
                self._head_deadline = self.loop.call_later(head_timeout, self._head_too_slow)

        def _disarm_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineH11Protocol


def __getattr__(name: str) -> Any:
    # Under ``--workers N`` each worker imports its protocol class by name (uvicorn pickles its
    # configuration to start them): this one, with the deadline the settings give (the same
    # environment as the process that validated them).
    if name == "HeadDeadlineH11Protocol":
        built = head_deadline_protocol(Settings().request_read_timeout_seconds)
        globals()[name] = built
        return built
    raise AttributeError(name)
