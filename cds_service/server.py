"""How ``cds-service serve`` runs uvicorn: the h11 parser with bounds on what a client may hold.

uvicorn's h11 protocol bounds the size of a request head (``h11_max_incomplete_event_size``)
but not the time it takes to arrive: a connection that sends nothing, or a few bytes now and
then, is kept for ever. ``HeadDeadlineH11Protocol`` closes a connection whose request line and
headers are not complete ``head_timeout`` seconds after it opened or after its previous
response. (Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def head_deadline_protocol(head_timeout: float) -> type[asyncio.Protocol]:
    """The h11 protocol class with this deadline for each request head."""

    class HeadDeadlineH11Protocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None
        _linger: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_response_complete(self) -> None:
            # Read before uvicorn starts the next cycle (a pipelined request would change it).
            unread_body = self.conn.their_state is h11.SEND_BODY
            super().on_response_complete()
            if unread_body:
                # Answered before its body was read (a 408, a 413, a 401): the rest of that body
                # must not keep the connection, and the deadline, at bay. Close it, as HTTP
                # allows, after a short linger in which uvicorn reads and drops what is still
                # coming (closing a socket with unread data resets it, and the client would
                # lose the answer).
                self._linger = self.loop.call_later(min(2.0, head_timeout), self._close)
                return
            self._arm_head_deadline()

        def _close(self) -> None:
            self._linger = None
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
