"""The service as it is run: ``uvicorn cds_service.main:app`` and ``cds-service serve`` in a real
process on 127.0.0.1, configured by CDS_ environment variables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.conftest import service_process

ROOT = Path(__file__).resolve().parents[2]


def test_server_uvicorn_app_answers_discovery_and_a_hook_call(tmp_path: Path) -> None:
    env = {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'cds.db'}",
        "CDS_REQUIRE_JWT": "false",
    }
    with service_process(tmp_path, env) as service:
        discovery = httpx.get(f"{service.url}/cds-services")
        assert discovery.json()["services"][0]["id"] == "sacral-bsi"
        body = (ROOT / "examples" / "patient-view-no-card.json").read_bytes()
        call = httpx.post(
            f"{service.url}/cds-services/sacral-bsi",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert call.json() == {"cards": []}
        logged = service.stop()
    assert (tmp_path / "var" / "cds.db").exists()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert [line["outcome"] for line in lines if line["event"] == "hook_call"] == ["not_a_runner"]
    assert any(line["event"].startswith("JWT VERIFICATION IS OFF") for line in lines)


def test_server_cli_serve_uses_cds_port(tmp_path: Path) -> None:
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_REQUIRE_JWT": "false"}
    with service_process(tmp_path, env, cli=True) as service:
        assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}


def test_server_refuses_to_start_unauthenticated_beyond_loopback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "CDS_HOST": "0.0.0.0",
            "CDS_REQUIRE_JWT": "false",
            "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Refusing to start on 0.0.0.0 with JWT verification off" in result.stderr
    assert "Traceback" not in result.stderr
