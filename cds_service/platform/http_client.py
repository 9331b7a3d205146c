"""The one outbound HTTP client of the app (FHIR servers, JWKS), shared for connection pooling.

A holder rather than the client itself: the ASGI lifespan closes the client at shutdown, and a
host that runs the lifespan again (test tools, some servers' reloads) gets a fresh client on next
use instead of "client has been closed".
"""

from __future__ import annotations

from collections.abc import Callable

import httpx


class SharedHttp:
    def __init__(self, factory: Callable[[], httpx.AsyncClient]) -> None:
        self._factory = factory
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = self._factory()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
