"""A bounded HTTP/1.1 load generator, used when ``wrk`` is not installed.

``python -m bench.loadgen --port P --path /x --body-file F --concurrency C --duration S`` keeps C
keep-alive connections busy for S seconds, each sending the same POST back to back, and prints one
``BENCH_RESULT {json}`` line: requests completed, elapsed seconds, p50/p99 latency, errors. It runs
in its own process, so it never shares an interpreter with the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

RESULT_PREFIX = "BENCH_RESULT "


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    status_errors: int = 0
    socket_errors: int = 0


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (status line, headers, Content-Length body); return the status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lowered = name.strip().lower()
        if lowered == "content-length":
            length = int(value.strip())
        elif lowered == "transfer-encoding":
            raise RuntimeError("chunked responses are not supported by this load generator")
    if length is None:
        raise RuntimeError("response without Content-Length")
    await reader.readexactly(length)
    return status


async def worker(
    host: str, port: int, request: bytes, start: asyncio.Event, deadline: list[float], tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await start.wait()
        while time.perf_counter() < deadline[0]:
            sent = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = await read_response(reader)
            tally.latencies.append(time.perf_counter() - sent)
            if status != 200:
                tally.status_errors += 1
    except (OSError, asyncio.IncompleteReadError, RuntimeError):
        tally.socket_errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    host: str, port: int, path: str, body: bytes, concurrency: int, duration: float
) -> dict[str, float | int]:
    request = build_request(host, port, path, body)
    tally = Tally()
    start = asyncio.Event()
    deadline = [float("inf")]
    tasks = [
        asyncio.create_task(worker(host, port, request, start, deadline, tally))
        for _ in range(concurrency)
    ]
    await asyncio.sleep(0.05)  # let the connections open before the clock starts
    began = time.perf_counter()
    deadline[0] = began + duration
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    latencies = sorted(tally.latencies)
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "status_errors": tally.status_errors,
        "socket_errors": tally.socket_errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.host,
            args.port,
            args.path,
            args.body_file.read_bytes(),
            args.concurrency,
            args.duration,
        )
    )
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
