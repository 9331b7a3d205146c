"""Shared fixtures: the content, an in-process client of the app at a fixed date, golden files."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from cds_service.clinical.facts import PatientFacts
from cds_service.clinical.parameters import RuleParameters
from cds_service.clinical.sacral_bsi import Assessment, assess
from cds_service.logs import LOGGER_NAME, JsonFormatter
from cds_service.main import create_app
from cds_service.services.sacral_bsi.content import Content, load_content
from cds_service.settings import Settings
from fhir_mappings import lean
from fhir_mappings.patient_facts import PatientRecord, to_patient_facts
from tests.postgres_server import temp_postgres

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
SERVICE_URL = "/cds-services/sacral-bsi"


# Figures the suite reports at the end of the run (tokens tried, fuzz cases, rules checked).
REPORT: dict[str, int] = {}


def record_figure(name: str, count: int = 1) -> None:
    REPORT[name] = REPORT.get(name, 0) + count


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("figures")
        for name, count in sorted(REPORT.items()):
            terminalreporter.write_line(f"{name}: {count}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files from the current output (review the diff before committing)",
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def content() -> Content:
    return load_content()


def skip_without_pgserver() -> None:
    """The PostgreSQL binaries come from the pgserver wheel, which has none for Python 3.13:
    there the PostgreSQL variants skip, saying so (their SQLite twins still run)."""
    if importlib.util.find_spec("pgserver") is None:
        if sys.version_info >= (3, 13):
            pytest.skip(
                "PostgreSQL tests skipped: the pgserver wheel (the test server's binaries) has "
                f"no build for Python {sys.version_info.major}.{sys.version_info.minor}"
            )
        pytest.fail("pgserver is not installed: run make install")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for the session (tests/postgres_server.py)."""
    skip_without_pgserver()
    with temp_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind the service supports: a SQLite file, and a new
    database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cds.db'}"
    server: str = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"shared test data not found at {path} (clone beside ../shared to run this test)"
        )
    return path


@contextlib.contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """The service's log lines (JSON, as in production) written while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def at(day: date) -> Callable[[], datetime]:
    return lambda: datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)


def settings_for_tests(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": "sqlite:///:memory:", "require_jwt": False}
    values.update(overrides)
    return Settings(**values)


ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client_at() -> AsyncIterator[ClientFactory]:
    """``client_at(day, **settings)``: an in-process client of a fresh app at ``day``."""
    opened: list[httpx.AsyncClient] = []

    def make(day: date = date(2025, 9, 30), **overrides: Any) -> httpx.AsyncClient:
        app = create_app(settings_for_tests(**overrides), clock=at(day))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cds.test"
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """``golden(name, value)``: compare ``value`` with tests/golden/<name>.json."""
    update = bool(request.config.getoption("--update-golden"))

    def check(name: str, value: Any) -> None:
        path = GOLDEN_DIR / f"{name}.json"
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        if update:
            path.write_text(text, encoding="utf-8")
        assert path.exists(), (
            f"golden file {path.name} missing: run pytest --update-golden and review it"
        )
        assert json.loads(path.read_text(encoding="utf-8")) == value, (
            f"output differs from golden file {path.name}; if the change is intended, run "
            "pytest --update-golden and review the diff"
        )

    return check


def record_of(resources: list[dict[str, Any]], pid: str) -> PatientRecord:
    """Resources as the service decodes them (lean views), grouped into a PatientRecord."""
    decoded = [lean.decode_resource(r["resourceType"], msgspec.json.encode(r)) for r in resources]
    return PatientRecord(
        patient_id=pid,
        patient=next((r for r in decoded if isinstance(r, lean.Patient)), None),
        conditions=tuple(r for r in decoded if isinstance(r, lean.Condition)),
        observations=tuple(r for r in decoded if isinstance(r, lean.Observation)),
        reports=tuple(r for r in decoded if isinstance(r, lean.DiagnosticReport)),
        care_plans=tuple(r for r in decoded if isinstance(r, lean.CarePlan)),
        encounters=tuple(r for r in decoded if isinstance(r, lean.Encounter)),
        orders=tuple(r for r in decoded if isinstance(r, lean.ServiceRequest)),
    )


def facts_of(resources: list[dict[str, Any]], content: Content, pid: str = "p1") -> PatientFacts:
    return to_patient_facts(record_of(resources, pid), content.terminology)


def with_parameters(content: Content, **sections: dict[str, Any]) -> RuleParameters:
    """The content's parameters with some values replaced: suspicion={"lbp_lookback_days": 90}."""
    params = content.parameters
    for section, values in sections.items():
        params = dataclasses.replace(
            params, **{section: dataclasses.replace(getattr(params, section), **values)}
        )
    return params


def assess_case(
    resources: list[dict[str, Any]],
    content: Content,
    day: date,
    pid: str = "p1",
    params: RuleParameters | None = None,
) -> Assessment:
    return assess(facts_of(resources, content, pid), params or content.parameters, day)
