"""A graceful stop on SIGTERM, for rolling restarts behind a load balancer.

The ASGI server (uvicorn) stops on SIGTERM: it closes its listening socket, lets the calls in
flight finish (``timeout_graceful_shutdown``), and exits. A load balancer that still routes to
the instance in that moment gets refused connections, or a reset on a kept-alive one. So the
service first *drains*: ``Lifecycle.install`` wraps the server's SIGTERM handler (from inside the
app's lifespan, where the server has installed its own), and on SIGTERM

1. ``/readyz`` answers 503 at once (the balancer's health check takes the instance out);
2. every answer carries ``Connection: close`` (kept-alive connections end cleanly, after an
   answer, never in the middle of one);
3. the service goes on serving for CDS_SHUTDOWN_DRAIN_SECONDS, then hands the signal to the
   server, which stops as above, within CDS_SHUTDOWN_GRACE_SECONDS.

A second SIGTERM skips what is left of the drain. Outside a server that handles SIGTERM itself
(tests, a plain ``asyncio.run``) nothing is installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from cds_service.logs import log_event

CLOSE = (b"connection", b"close")


class Lifecycle:
    def __init__(self, drain_seconds: float) -> None:
        self.drain_seconds = drain_seconds
        self.draining = False
        self.ready_check: asyncio.Future[bool] | None = None  # the readiness check running

    def install(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Wrap the SIGTERM handler the server installed; returns what undoes it."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        server_handler = signal.getsignal(signal.SIGTERM)
        if not callable(server_handler):  # default or ignored: no server stops gracefully here
            return lambda: None
        stop = server_handler
        pending: list[asyncio.TimerHandle] = []

        def hand_over(sig: int) -> None:
            for timer in pending:
                timer.cancel()
            stop(sig, None)

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self.draining:  # asked again: stop now
                loop.call_soon_threadsafe(hand_over, sig)
                return
            self.draining = True

            def later() -> None:  # on the loop, not in the signal handler
                log_event(
                    "shutdown requested: draining",
                    level=logging.WARNING,
                    drainSeconds=self.drain_seconds,
                )
                pending.append(loop.call_later(self.drain_seconds, hand_over, sig))

            loop.call_soon_threadsafe(later)

        signal.signal(signal.SIGTERM, on_sigterm)

        def uninstall() -> None:
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, server_handler)

        return uninstall


class DrainingMiddleware:
    """While draining, every answer says ``Connection: close`` (decided when the answer goes
    out: a call that began before SIGTERM too). Not an answer given before its request's body
    has come: the server would close at once, over the rest of the body, and reset the
    upload; the connection is closed after that body instead (``cds_service.server``)."""

    def __init__(self, app: Any, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        body_done = b"transfer-encoding" not in headers and headers.get(
            b"content-length", b"0"
        ) in (b"0", b"")

        async def reading() -> Any:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start" and self.lifecycle.draining and body_done:
                kept = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*kept, CLOSE]}
            await send(message)

        await self.app(scope, reading, closing)
