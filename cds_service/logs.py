"""Structured logs: one JSON object per line, one line per hook call.

Only what happened goes in: hookInstance, service, outcome, counts, latency. Never patient data
(names, ids, birth dates, resource bodies); callers pass only such safe fields.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import msgspec

LOGGER_NAME = "cds_service"


# The ASGI server's own loggers: their lines are written in the same JSON format.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple):
            line.update(_server_fields(record))
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and where it was raised, not its message (it may carry data).
            exc_type, _, tb = record.exc_info
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            line["exception"] = exc_type.__name__
            if tb is not None:
                line["where"] = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        plain = _plain_json(line)
        if plain is not None:
            return plain
        try:
            return json.dumps(line, separators=(",", ":"), default=str, allow_nan=False)
        except ValueError:  # NaN or infinity somewhere: strict JSON has no word for them
            return json.dumps(_finite(line), separators=(",", ":"), default=str)


# Values msgspec writes as json.dumps writes them; anything else (a container, a float that is
# not finite, a subclass, an object only str() can write) takes json.dumps's path.
_PLAIN = frozenset({str, int, bool, type(None)})
_ENCODE = msgspec.json.Encoder().encode


def _plain_json(line: dict[str, Any]) -> str | None:
    """The usual line (a hook call's: words, counts, a latency) in one C call, ~10 µs less than
    json.dumps (issue 12); None when the line needs json.dumps: a value other than a plain
    word, number or null, or text outside ASCII (json.dumps escapes it: lines stay ASCII)."""
    for value in line.values():
        kind = type(value)
        if kind not in _PLAIN and not (kind is float and math.isfinite(value)):
            return None
    try:
        data = _ENCODE(line)
    except UnicodeEncodeError:  # a lone surrogate: json.dumps escapes it
        return None
    return data.decode("ascii") if data.isascii() else None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _server_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's request lines as fields, never as sent: not the client's address, not the query
    string, and the path only of a request that was answered (a refused one may be anything the
    caller typed, a patient id included)."""
    args = record.args
    assert isinstance(args, tuple)
    if record.name == "uvicorn.access" and len(args) == 5:
        _, method, path, _, status = args
        fields: dict[str, Any] = {"event": "http_request", "method": method, "status": status}
        # A CORS preflight is answered 200 whatever its path: its path is the caller's text.
        if isinstance(status, int) and status < 400 and method != "OPTIONS":
            fields["path"] = str(path).split("?")[0]
        return fields
    if '"WebSocket %s"' in str(record.msg):
        # uvicorn logs WebSocket upgrades on its error logger, path and client included.
        return {"event": "websocket_request", **({"status": args[2]} if len(args) == 3 else {})}
    return {}


def configure(level: str) -> None:
    """The service's logger, and uvicorn's (when it runs the service), write JSON lines to
    standard error."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level.upper())
    _json_handler(logger)
    logger.propagate = True
    for name in UVICORN_LOGGERS:
        server_logger = logging.getLogger(name)
        ours = [h for h in server_logger.handlers if getattr(h, "_cds_json", False)]
        server_logger.handlers = ours  # uvicorn's plain-text handlers out
        _json_handler(server_logger, _ServerLineFilter())
        server_logger.propagate = False
        server_logger.setLevel(level.upper())


INCOMPLETE_RESPONSE = "ASGI callable returned without completing response."


class _ServerLineFilter(logging.Filter):
    """uvicorn's lines that would carry what a caller sent, or that anyone can repeat at will
    to flood the log, are not written: its debug lines (the websockets library logs whole
    upgrade requests, headers included, there) and its warnings about upgrade requests, which
    the service does not serve."""

    DROPPED = ("Unsupported upgrade request", "No supported WebSocket library detected")
    # Lines one request can provoke: at most one per message every this many seconds, the next
    # one saying how many were left out in between.
    THROTTLED = (
        "Invalid HTTP request received.",
        "Exceeded concurrency limit.",
        INCOMPLETE_RESPONSE,
    )
    EVERY_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return False
        message = str(record.msg)
        if message.startswith(self.DROPPED):
            return False
        if message == INCOMPLETE_RESPONSE:
            # The service always completes a response unless the server refused to take it (a
            # client that broke the protocol, logged as response_not_delivered): the client's
            # doing, so a warning, not an error anyone can raise at will.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if message in self.THROTTLED:
            with self._lock:
                if record.created - self._last.get(message, -math.inf) < self.EVERY_SECONDS:
                    self._left_out[message] = self._left_out.get(message, 0) + 1
                    return False
                self._last[message] = record.created
                record.fields = {"sameLinesLeftOut": self._left_out.pop(message, 0)}
        return True


def _json_handler(logger: logging.Logger, line_filter: logging.Filter | None = None) -> None:
    if not any(getattr(h, "_cds_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        if line_filter is not None:
            handler.addFilter(line_filter)
        handler._cds_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


_LOGGER = logging.getLogger(LOGGER_NAME)


def log_event(
    event: str, *, level: int = logging.INFO, exc_info: bool = False, **fields: Any
) -> None:
    # The record made directly: Logger.log would look up the caller's file and line in the
    # stack for every line (~5 µs a hook call), which no line of this service shows.
    if not _LOGGER.isEnabledFor(level):
        return
    record = _LOGGER.makeRecord(
        LOGGER_NAME,
        level,
        "(unknown file)",
        0,
        event,
        (),
        sys.exc_info() if exc_info else None,
        extra={"fields": fields},
    )
    _LOGGER.handle(record)
