"""The integrator's sandbox commands, end to end against the local FHIR server, as a person runs
them: ``cds-service demo-load`` then ``cds-service fire patient-view`` (in-process service, and a
running one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ROOT, free_port, service_process

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
    assert "WARNING" in result.stdout
    assert (
        "Runner, left SI-joint pain + 3 BSI risk factors: consider sacral stress injury"
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


def test_cli_fhir_server_down_exits_2_as_the_readme_says(tmp_path: Path) -> None:
    # The in-process service cannot reach the FHIR server: "cannot be reached" is exit 2.
    closed = f"http://127.0.0.1:{free_port()}/fhir"
    result = fire(closed, "someone", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "HTTP 412" in result.stderr


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


def test_cli_prefetch_true_and_false_are_read_as_the_flag(demo_loaded: str, tmp_path: Path) -> None:
    result = fire(demo_loaded, "nobody-here", "--prefetch", "true", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Patient nobody-here was not found" in result.stderr  # the CLI's own prefetch ran
    result = fire(demo_loaded, "nobody-here", "--prefetch", "false", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "The FHIR server has no patient" in result.stderr  # the service fetched it


def test_cli_version(tmp_path: Path) -> None:
    result = cds_service("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cds-service 0.1.0 (card content 2.1.0)"


def test_cli_long_summary_and_errors_are_not_cut_or_wrapped(
    demo_loaded: str, tmp_path: Path
) -> None:
    narrow = {**os.environ, "COLUMNS": "50", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "cds_service", "fire", "patient-view"]
    shown = subprocess.run(
        [*command, "--fhir-server", demo_loaded, "--patient", "sacral-bsi-demo-runner"],
        cwd=tmp_path, env=narrow, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    text = "".join(ch for ch in shown.stdout if ch.isalnum() or ch in "+:,")
    summary = "Runner, left SI-joint pain + 3 BSI risk factors: consider sacral stress injury"
    assert "".join(ch for ch in summary if ch.isalnum() or ch in "+:,") in text
    failed = subprocess.run(
        [*command, "--fhir-server", demo_loaded, "--patient", "nobody-here", "--prefetch"],
        cwd=tmp_path, env=narrow, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()  # one line, the terminal folds it
    assert line.startswith("Error: Patient nobody-here was not found")
    usage = subprocess.run(
        [*command, "--fhir-server", demo_loaded],
        cwd=tmp_path, env=narrow, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert usage.returncode == 2
    assert "Error: Missing option '--patient'." in usage.stderr.splitlines()  # no box around it
    assert "╭" not in usage.stderr


def test_cli_dev_token_and_signed_fire_reach_a_service_with_jwt_on(
    demo_loaded: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys = tmp_path / "var" / "dev-issuer"  # the default folder, under the working folder
    first = cds_service("dev-token", "--service-url", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "DEVELOPMENT ONLY, NOT FOR PRODUCTION" in first.stderr
    issuers = keys / "issuers.toml"
    assert f"CDS_TRUSTED_ISSUERS_FILE={issuers.resolve()}" in first.stderr
    assert "development_only = true" in issuers.read_text()
    assert (keys / "key.pem").stat().st_mode & 0o077 == 0  # the key is the owner's alone
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        "CDS_REQUIRE_JWT": "true",
        "CDS_PUBLIC_BASE_URL": url,
        "CDS_TRUSTED_ISSUERS_FILE": str(issuers),
    }
    with service_process(tmp_path, env, port=port) as service:
        hook = json.loads((ROOT / "examples" / "patient-view-no-card.json").read_text())
        bearer = {"Authorization": f"Bearer {first.stdout.strip()}"}
        call = httpx.post(f"{url}/cds-services/sacral-bsi", json=hook, headers=bearer)
        assert call.status_code == 200, call.text
        replayed = httpx.post(f"{url}/cds-services/sacral-bsi", json=hook, headers=bearer)
        assert replayed.status_code == 401
        unsigned = fire(demo_loaded, "sacral-bsi-demo-runner", "--service-url", url, cwd=tmp_path)
        assert unsigned.returncode == 1
        assert "HTTP 401" in unsigned.stderr
        assert "--sign" in unsigned.stderr
        elsewhere = tmp_path / "elsewhere"  # the key named by folder, from another directory
        elsewhere.mkdir()
        signed = fire(
            demo_loaded,
            "sacral-bsi-demo-runner",
            "--service-url",
            url,
            "--sign",
            "--dev-key-folder",
            str(keys),
            cwd=elsewhere,
        )
        assert signed.returncode == 0, signed.stderr
        assert "consider sacral stress injury" in signed.stdout
        logged = service.stop()
    assert "development-only issuer trusted" in logged


def test_cli_dev_token_with_a_broken_key_says_so_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "dev-issuer"
    folder.mkdir(parents=True)
    (folder / "key.pem").write_text("garbage")
    result = cds_service("dev-token", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "is not a PEM private key" in line
    assert "delete the folder" in line


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b'{"cards": "x"}'),
        (200, b"[1, 2]"),
        (200, b'{"cards": [{"summary": "s", "indicator": "info", "links": [{"label": "l"}]}]}'),
        (412, b'{"resourceType": "OperationOutcome", "issue": "not a list"}'),
    ],
)
def test_cli_fire_at_a_service_answering_nonsense_says_so_in_one_line(
    tmp_path: Path, status: int, body: bytes
) -> None:
    class Nonsense(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Nonsense)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = fire("http://127.0.0.1:9/fhir", "x", "--service-url", url, cwd=tmp_path)
    finally:
        server.shutdown()
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ")
