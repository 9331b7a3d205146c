"""The integrator's sandbox commands, end to end against the local FHIR server, as a person runs
them: ``cds-service demo-load`` then ``cds-service fire patient-view`` (in-process service, and a
running one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, service_process

pytestmark = pytest.mark.integration


def cds_service(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cds_service", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fire(
    fhir_server: str, patient: str, *options: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``cds-service fire patient-view --fhir-server ... --patient ... [options]``."""
    return cds_service(
        "fire",
        "patient-view",
        "--fhir-server",
        fhir_server,
        "--patient",
        patient,
        *options,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def demo_loaded(fhir_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    result = cds_service(
        "demo-load", "--fhir-server", fhir_server, cwd=tmp_path_factory.mktemp("cli")
    )
    assert result.returncode == 0, result.stderr
    for pid in (
        "sacral-bsi-demo-runner",
        "sacral-bsi-demo-office-worker",
        "sacral-bsi-demo-mri-confirmed",
    ):
        assert pid in result.stdout
    return fhir_server


def test_cli_fire_shows_the_suspicion_card(demo_loaded: str, tmp_path: Path) -> None:
    result = fire(demo_loaded, "sacral-bsi-demo-runner", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "WARNING Runner, left SI-joint pain + 3 BSI risk factors: consider sacral stress injury"
        in result.stdout
    )
    assert (
        "Suggestion: Draft MRI of sacrum (for clinician review) (create ServiceRequest)"
        in result.stdout
    )


def test_cli_fire_json_with_prefetch_for_the_confirmed_runner(
    demo_loaded: str, tmp_path: Path
) -> None:
    result = fire(
        demo_loaded, "sacral-bsi-demo-mri-confirmed", "--prefetch", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (card,) = json.loads(result.stdout)["cards"]
    assert card["summary"].startswith("MRI-confirmed sacral bone stress injury")
    assert card["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "CarePlan"


def test_cli_fire_no_card_for_the_office_worker(demo_loaded: str, tmp_path: Path) -> None:
    result = fire(demo_loaded, "sacral-bsi-demo-office-worker", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "No cards" in result.stdout


@pytest.fixture
def running_service(tmp_path: Path) -> Iterator[str]:
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_REQUIRE_JWT": "false"}
    with service_process(tmp_path, env) as service:
        yield service.url


def test_cli_fire_at_a_running_service(
    demo_loaded: str, running_service: str, tmp_path: Path
) -> None:
    result = fire(
        demo_loaded,
        "sacral-bsi-demo-runner",
        "--service-url",
        running_service,
        "--prefetch",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "consider sacral stress injury" in result.stdout


def test_cli_unknown_patient_says_so(demo_loaded: str, tmp_path: Path) -> None:
    result = fire(demo_loaded, "nobody-here", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "The service could not get the data it needs (HTTP 412): The FHIR server has no patient"
        in result.stderr
    )
    assert '"event"' not in result.stderr  # no service log lines for a person to wade through
    assert "Traceback" not in result.stderr
    prefetched = fire(demo_loaded, "nobody-here", "--prefetch", cwd=tmp_path)
    assert prefetched.returncode == 1
    assert "Patient nobody-here was not found" in prefetched.stderr


def test_cli_unreachable_servers_say_so(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    load = cds_service("demo-load", "--fhir-server", f"{closed}/fhir", cwd=tmp_path)
    assert load.returncode == 2
    assert "Cannot reach the FHIR server" in load.stderr
    fired = fire(f"{closed}/fhir", "x", "--service-url", closed, cwd=tmp_path)
    assert fired.returncode == 2
    assert "Cannot reach the CDS service" in fired.stderr
    assert "Traceback" not in load.stderr + fired.stderr


def test_cli_invalid_urls_say_so(tmp_path: Path) -> None:
    load = cds_service("demo-load", "--fhir-server", "http://[zz]/fhir", cwd=tmp_path)
    assert load.returncode == 2
    assert "--fhir-server 'http://[zz]/fhir' is not an absolute http(s) URL" in " ".join(
        load.stderr.split()
    )
    fired = fire("http://ok.test/fhir", "x", "--service-url", "nope", cwd=tmp_path)
    assert fired.returncode == 2
    assert "Traceback" not in load.stderr + fired.stderr
