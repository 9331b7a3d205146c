"""Two service processes sharing one PostgreSQL database see each other's replayed JWT ids,
issued cards and feedback: what one worker or instance learns, all know."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cds_service.sandbox import rename, shift_dates
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, skip_without_pgserver
from tests.integration.cluster import Issuer
from tests.integration.conftest import service_process
from tests.postgres_server import copy_install, pginstall, temp_postgres

pytestmark = pytest.mark.integration
EHR = Issuer("https://ehr.shared.test/fhir", "https://cds.shared.test")


def token() -> str:
    return EHR.token(SERVICE_URL)


def feedback_token() -> str:
    return EHR.token(SERVICE_URL + "/feedback")


@pytest.fixture
def two_processes(postgres_server: str, tmp_path: Path) -> Iterator[list[str]]:
    env = EHR.trusted_by(tmp_path) | {"CDS_DATABASE_URL": postgres_server}
    with (
        service_process(tmp_path, env, name="a") as first,
        service_process(tmp_path, env, name="b") as second,
    ):
        yield [first.url, second.url]


def recent_maya(patient: str) -> list[dict[str, Any]]:
    """Maya's record under the id ``patient``, dated as of today (the processes run on the real
    clock)."""
    record = rename(cases.maya_before_mri(), patient)
    return shift_dates(record, (datetime.now(UTC).date() - cases.MAYA_SUSPECT_DAY).days)  # type: ignore[no-any-return]


def test_shared_postgres_replayed_jti_is_refused_by_the_other_process(
    two_processes: list[str],
) -> None:
    first, second = two_processes
    body = hook_request(recent_maya("maya-replay"), pid="maya-replay")
    once = token()
    assert (
        httpx.post(
            first + SERVICE_URL, json=body, headers={"Authorization": f"Bearer {once}"}
        ).status_code
        == 200
    )
    assert (
        httpx.post(
            second + SERVICE_URL, json=body, headers={"Authorization": f"Bearer {once}"}
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            second + SERVICE_URL, json=body, headers={"Authorization": f"Bearer {token()}"}
        ).status_code
        == 200
    )


def test_shared_postgres_feedback_given_to_one_process_suppresses_in_the_other(
    two_processes: list[str],
) -> None:
    first, second = two_processes
    body = hook_request(recent_maya("maya-feedback"), pid="maya-feedback")
    issued = httpx.post(
        first + SERVICE_URL, json=body, headers={"Authorization": f"Bearer {token()}"}
    ).json()
    (card,) = issued["cards"]
    override = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": card["overrideReasons"][0]},
                "outcomeTimestamp": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
            }
        ]
    }
    sent = httpx.post(
        second + SERVICE_URL + "/feedback",
        json=override,
        headers={"Authorization": f"Bearer {feedback_token()}"},
    )
    assert sent.status_code == 200
    for url in (first, second):
        again = httpx.post(
            url + SERVICE_URL, json=body, headers={"Authorization": f"Bearer {token()}"}
        )
        assert again.json() == {"cards": []}


def test_test_postgres_runs_from_a_folder_other_users_cannot_enter(tmp_path: Path) -> None:
    """A checkout under root's home (mode 700): its .venv, and the PostgreSQL binaries in it,
    are out of reach of ``nobody``, which the test server runs as when the tests run as root."""
    skip_without_pgserver()
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    install = copy_install(pginstall(), private)
    with temp_postgres(install=install) as url:
        libpq = url.replace("postgresql+psycopg://", "postgresql://")
        assert psycopg.connect(libpq, autocommit=True).execute("SELECT 1").fetchone() == (1,)
