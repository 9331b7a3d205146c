"""Several service instances behind a round-robin front, as a hospital runs them (issue 12):
the front (``RoundRobinFront``), the instances (``Instance``), and the mixed traffic a test or
``make soak`` drives through them (``Traffic``).

The front is what a load balancer does, in 150 lines: round robin over the instances whose
``/readyz`` answered 200 at the last health check (every 0.2 s), kept-alive connections to
each, and a request whose connection is *refused* tried on the next instance (nothing was sent:
safe, also for a POST; HAProxy's ``retry-on conn-failure``). Any other failure (a reset, a
connection closed before the answer) is recorded and answered 502: the test requires none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import wait_until_ready

Scope = dict[str, Any]
Message = dict[str, Any]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RoundRobinFront:
    """An ASGI app forwarding every request to the next ready instance."""

    def __init__(self, upstreams: list[str], check_every: float = 0.2) -> None:
        self.upstreams = upstreams
        self.check_every = check_every
        self.ready = dict.fromkeys(upstreams, False)
        self.forwarded: Counter[str] = Counter()  # answers per instance
        self.hook_calls: Counter[str] = Counter()  # of which hook calls (not feedback)
        self.refused_then_retried = 0
        self.broken: list[str] = []  # failures after the request was sent: must stay empty
        self.went_down: dict[str, list[float]] = {}  # when a check first found it not ready
        self.no_instance = 0
        self._turn = 0
        self._client: httpx.AsyncClient | None = None
        self._checker: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers, content = await self.forward(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def forward(self, scope: Scope, body: bytes) -> tuple[int, list[Any], bytes]:
        assert self._client is not None
        path = scope["path"] + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        headers = [
            (k.decode(), v.decode())
            for k, v in scope["headers"]
            if k.decode().lower() not in HOP_BY_HOP
        ]
        for upstream in self._candidates():
            try:
                response = await self._client.request(
                    scope["method"], upstream + path, headers=headers, content=body
                )
            except httpx.ConnectError:
                self.ready[upstream] = False  # refused: nothing was sent, try the next one
                self.refused_then_retried += 1
                continue
            except httpx.TransportError as exc:
                at = time.monotonic()
                self.broken.append(f"{at:.2f} {upstream}: {type(exc).__name__}: {exc}")
                return 502, [], b"broken upstream connection"
            self.forwarded[upstream] += 1
            if not scope["path"].endswith("/feedback"):
                self.hook_calls[upstream] += 1
            out = [
                (k.encode(), v.encode())
                for k, v in response.headers.items()
                if k.lower() not in HOP_BY_HOP
            ]
            return response.status_code, out, response.content
        self.no_instance += 1
        return 503, [], b"no instance ready"

    def _candidates(self) -> list[str]:
        self._turn = (self._turn + 1) % len(self.upstreams)
        order = self.upstreams[self._turn :] + self.upstreams[: self._turn]
        return [u for u in order if self.ready[u]]

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Idle connections are dropped before the instances' own keep-alive timeout (5 s)
                # closes them, as a proxy must (else a request may go out on a connection the
                # instance is closing that moment).
                self._client = httpx.AsyncClient(
                    timeout=60,
                    limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=2.0),
                )
                self._checker = asyncio.create_task(self._check_forever())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._checker:
                    self._checker.cancel()
                if self._client:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _check_forever(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as checker:

            async def check(upstream: str) -> None:
                try:
                    answer = await checker.get(f"{upstream}/readyz")
                    ready = answer.status_code == 200
                except httpx.TransportError:
                    ready = False
                if self.ready[upstream] and not ready:
                    self.went_down.setdefault(upstream, []).append(time.monotonic())
                self.ready[upstream] = ready

            while True:
                await asyncio.gather(*(check(upstream) for upstream in self.upstreams))
                await asyncio.sleep(self.check_every)


@contextlib.contextmanager
def running_front(front: RoundRobinFront, port: int) -> Any:
    """The front under uvicorn on 127.0.0.1:``port``, in a thread of its own."""
    server = uvicorn.Server(
        uvicorn.Config(front, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Instance:
    """One service instance: ``cds-service serve`` on a fixed port, restartable."""

    name: str
    port: int
    folder: Path
    env: dict[str, str]
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.folder / f"{self.name}-{self.starts}.log"
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cds_service", "serve", "--workers", str(self.workers)],
                cwd=self.folder,
                env={**os.environ, **self.env, "CDS_PORT": str(self.port)},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        wait_until_ready(f"{self.url}/readyz", self.process, log)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as Kubernetes sends it; wait for the exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.folder.glob(f"{self.name}-*.log")))


class Issuer:
    """The EHR's signing key; a fresh token per call (and the tokens used, for replays)."""

    def __init__(self, iss: str, public_base: str) -> None:
        self.iss = iss
        self.public_base = public_base
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.kid = "cluster-key-1"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="ES384", use="sig")
        return {"keys": [jwk]}

    def trusted_by(self, folder: Path) -> dict[str, str]:
        """Write the issuers file (with this key pinned beside it) into ``folder``; the
        settings of a service that verifies this issuer's tokens."""
        (folder / "jwks.json").write_text(json.dumps(self.jwks()))
        (folder / "issuers.toml").write_text(
            f'[[issuer]]\niss = "{self.iss}"\njwks_file = "jwks.json"\n'
        )
        return {
            "CDS_REQUIRE_JWT": "true",
            "CDS_TRUSTED_ISSUERS_FILE": str(folder / "issuers.toml"),
            "CDS_PUBLIC_BASE_URL": self.public_base,
        }

    def token(self, path: str) -> str:
        now = int(datetime.now(UTC).timestamp())
        claims = {
            "iss": self.iss,
            "aud": self.public_base + path,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": self.kid})


@dataclass
class Traffic:
    """Mixed calls through the front and what came of them."""

    front: str
    issuer: Issuer
    calls: dict[str, Callable[[], tuple[str, dict[str, Any]]]]  # kind -> (path, body)
    weights: dict[str, int]
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    cards: Counter[str] = field(default_factory=Counter)
    feedback_sent: dict[str, str] = field(default_factory=dict)  # card uuid -> outcome
    # The last calls answered 200: path, token, body (replayed later).
    used: deque[tuple[str, str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=500))
    replays: int = 0

    async def run(self, seconds: float, concurrency: int, during: Awaitable[None]) -> None:
        """Drive calls for ``seconds`` with ``concurrency`` clients while ``during`` runs."""
        stop_at = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=self.front, timeout=60) as client:
            drivers = [self._drive(client, stop_at, n) for n in range(concurrency)]
            await asyncio.gather(*drivers, during)

    async def _drive(self, client: httpx.AsyncClient, stop_at: float, seed: int) -> None:
        chance = random.Random(seed)
        kinds = list(self.weights)
        weights = [self.weights[k] for k in kinds]
        while time.monotonic() < stop_at:
            kind = chance.choices(kinds, weights)[0]
            if kind == "replay" and self.used:
                path, token, body = chance.choice(self.used)
                self.replays += 1
                await self._send(client, "replay", path, body, token, expect=401)
                continue
            if kind == "replay":
                continue
            path, body = self.calls[kind]()
            token = self.issuer.token(path)
            answer = await self._send(client, kind, path, body, token, expect=200)
            if answer is None:
                continue
            self.used.append((path, token, body))
            for card in answer.get("cards", []):
                self.cards[kind] += 1
                if chance.random() < 0.5:
                    await self._feedback(client, path, card, chance)

    async def _feedback(
        self, client: httpx.AsyncClient, path: str, card: dict[str, Any], chance: random.Random
    ) -> None:
        outcome = chance.choice(["accepted", "overridden"])
        item: dict[str, Any] = {
            "card": card["uuid"],
            "outcome": outcome,
            "outcomeTimestamp": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        }
        if outcome == "overridden" and card.get("overrideReasons"):
            item["overrideReason"] = {"reason": card["overrideReasons"][0]}
        feedback_path = path + "/feedback"
        token = self.issuer.token(feedback_path)
        sent = await self._send(
            client, "feedback", feedback_path, {"feedback": [item]}, token, expect=200
        )
        if sent is not None:
            self.feedback_sent[card["uuid"]] = outcome

    async def _send(
        self,
        client: httpx.AsyncClient,
        kind: str,
        path: str,
        body: dict[str, Any],
        token: str,
        *,
        expect: int,
    ) -> dict[str, Any] | None:
        started = time.perf_counter()
        response = await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        self.statuses[(kind, response.status_code)] += 1
        if response.status_code != expect:
            self.unexpected.append(f"{kind}: {response.status_code} {response.text[:300]}")
            return None
        if expect != 200:
            return None
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer

    def figures(self) -> dict[str, str]:
        out = {}
        for kind, values in sorted(self.latencies.items()):
            ms = sorted(v * 1000 for v in values)
            p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            out[kind] = (
                f"{len(ms)} calls, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
                f"cards {self.cards.get(kind, 0)}"
            )
        return out


def metric_sum(page: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` on a /metrics page whose labels include
    ``labels`` (all of a series' labels: that one series)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
