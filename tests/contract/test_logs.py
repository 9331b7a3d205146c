"""Logs: one JSON line per hook call, with what happened and never patient data."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cds_service import logs
from cds_service.logs import LOGGER_NAME, JsonFormatter
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory, captured_log

pytestmark = pytest.mark.anyio


async def test_logs_hook_call_line_has_outcome_and_no_patient_data(
    client_at: ClientFactory,
) -> None:
    record = cases.maya_before_mri()
    record[0]["name"] = [{"family": "Quintero-Lindqvist", "given": ["Maya"]}]
    with captured_log() as stream:
        client = client_at(cases.MAYA_SUSPECT_DAY)
        ok = hook_request(record, pid="maya")
        await client.post(SERVICE_URL, json=ok)
        bad = hook_request(record, pid="maya")
        bad["prefetch"]["conditions"] = {
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Condition", "code": "maya 2005-03-01"}}],
        }
        await client.post(SERVICE_URL, json=bad)
        card = (await client.post(SERVICE_URL, json=hook_request(record, pid="maya"))).json()[
            "cards"
        ][0]
        await client.post(
            SERVICE_URL + "/feedback",
            json={
                "feedback": [
                    {
                        "card": card["uuid"],
                        "outcome": "overridden",
                        "overrideReason": {
                            "userComment": "Maya Quintero-Lindqvist, seen 2005-03-01"
                        },
                        "outcomeTimestamp": "2025-09-30T12:00:00Z",
                    }
                ]
            },
        )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    calls = [line for line in lines if line["event"] == "hook_call"]
    assert [c["status"] for c in calls] == [200, 400, 200]
    (feedback,) = [line for line in lines if line["event"] == "feedback"]
    assert (feedback["items"], feedback["overridden"], feedback["unknownCards"]) == (1, 1, 0)
    assert calls[0]["hookInstance"] == ok["hookInstance"]
    assert calls[0]["outcome"] == "suspect"
    assert calls[0]["cards"] == 1
    assert calls[0]["prefetched"] == 7
    assert calls[0]["fetched"] == 0
    assert isinstance(calls[0]["latencyMs"], float)
    text = stream.getvalue()
    for secret in ("maya", "Maya", "Quintero", "2005-03-01", "si-1", "Sacroiliitis"):
        assert secret not in text, secret


def _uvicorn_line(name: str, level: int, msg: str, args: tuple[object, ...]) -> str | None:
    """What the service's JSON handler on a uvicorn logger writes for one record (None:
    dropped)."""
    logs.configure("DEBUG")
    (handler,) = logging.getLogger(name).handlers
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    if not handler.filter(record):
        return None
    return handler.format(record)


def test_logs_server_lines_never_carry_what_the_caller_sent() -> None:
    access = '%s - "%s %s HTTP/%s" %d'
    answered = _uvicorn_line(
        "uvicorn.access", logging.INFO, access, ("10.1.2.3:5", "GET", "/healthz?p=PAT1", "1.1", 200)
    )
    assert answered is not None
    assert json.loads(answered) | {"ts": ""} == {
        "ts": "", "level": "info", "event": "http_request", "method": "GET", "status": 200,
        "path": "/healthz",
    }  # fmt: skip
    for method, path, status in (("GET", "/Patient/PAT1", 404), ("OPTIONS", "/x/PAT1", 200)):
        line = _uvicorn_line(
            "uvicorn.access", logging.INFO, access, ("10.1.2.3:5", method, path, "1.1", status)
        )
        assert line is not None
        assert "PAT1" not in line
        assert "10.1.2.3" not in line
    websocket = _uvicorn_line(
        "uvicorn.error", logging.INFO, '%s - "WebSocket %s" %s', ("10.1.2.3:5", "/?p=PAT1", 403)
    )
    assert websocket is not None
    assert "PAT1" not in websocket
    # The websockets library's debug lines (whole requests, headers included) and the warnings
    # anyone can provoke with an Upgrade header are not written at all.
    assert _uvicorn_line("uvicorn.error", logging.DEBUG, "< GET %s HTTP/1.1", ("/?p=PAT1",)) is None
    assert (
        _uvicorn_line("uvicorn.error", logging.WARNING, "Unsupported upgrade request.", ()) is None
    )
    logs.configure("INFO")


def test_logs_lines_are_strict_json_even_with_infinities() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    record = logging.LogRecord(LOGGER_NAME, logging.WARNING, __file__, 1, "auth_failed", (), None)
    record.fields = {"lifetimeSeconds": float("inf"), "nested": [float("nan")]}
    handler.emit(record)

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    line = json.loads(stream.getvalue(), parse_constant=refuse)
    assert line["lifetimeSeconds"] == "inf"
    assert line["nested"] == ["nan"]


def test_logs_lines_one_request_can_provoke_are_throttled() -> None:
    first = _uvicorn_record("Invalid HTTP request received.", created=1000.0)
    assert first is not None
    assert json.loads(first)["sameLinesLeftOut"] == 0
    for moment in (1001.0, 1005.0, 1009.9):
        assert _uvicorn_record("Invalid HTTP request received.", created=moment) is None
    later = _uvicorn_record("Invalid HTTP request received.", created=1011.0)
    assert later is not None
    assert json.loads(later)["sameLinesLeftOut"] == 3
    logs.configure("INFO")


def _uvicorn_record(msg: str, created: float) -> str | None:
    logs.configure("INFO")
    (handler,) = logging.getLogger("uvicorn.error").handlers
    record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, (), None)
    record.created = created
    return handler.format(record) if handler.filter(record) else None


def test_logs_incomplete_response_after_a_protocol_error_is_a_warning() -> None:
    line = _uvicorn_record("ASGI callable returned without completing response.", created=5.0)
    assert line is not None
    assert json.loads(line)["level"] == "warning"
    logs.configure("INFO")


def _formatted(fields: dict[str, object]) -> str:
    record = logging.LogRecord(LOGGER_NAME, logging.INFO, __file__, 1, "hook_call", (), None)
    record.fields = fields
    return JsonFormatter().format(record)


def test_logs_lines_stay_ascii_json_whatever_text_a_field_holds() -> None:
    """A hook call's line is written by msgspec, the rest by json.dumps (issue 12): either way a
    line is one line of ASCII JSON that reads back as what was logged."""
    fields: dict[str, object] = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "status": 200,
        "cards": 0,
        "latencyMs": 0.61,
        "careplan": None,
        "jwt": True,
        "said": 'a "quoted"\nline\twith\\ slash',
    }
    for extra in ({}, {"issuer": "https://ehr.example/é"}, {"odd": "\udc00"}, {"big": 10**30}):
        line = _formatted({**fields, **extra})
        assert line.isascii()
        assert "\n" not in line
        read = json.loads(line)
        assert {k: read[k] for k in (*fields, *extra)} == {**fields, **extra}
        assert read["event"] == "hook_call"
