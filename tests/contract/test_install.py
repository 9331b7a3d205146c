"""How the project installs: on Python 3.11, 3.12 and 3.13, the service with its runtime
dependencies only (no development tool), and a .venv made with another Python rebuilt."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = {"pgserver", "pytest", "mypy", "ruff", "hypothesis", "schemathesis", "respx"}
MAKE = shutil.which("make")


def locked(lock: str) -> dict[str, str]:
    """Package name -> its marker ('' when none) in a pip-compile lock file."""
    found: dict[str, str] = {}
    for line in (ROOT / lock).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==[^ ;\\]+\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if match:
            found[match.group(1).lower()] = (match.group(2) or "").strip()
    return found


def test_install_python_311_to_313_are_supported() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    assert all(version in supported for version in ("3.11.0", "3.12.1", "3.13.0"))


def test_install_runtime_lock_holds_no_development_tool() -> None:
    runtime = locked("requirements-runtime.lock")
    assert {"fastapi", "uvicorn", "sqlalchemy", "httpx"} <= set(runtime)
    assert not DEV_ONLY & set(runtime)


def test_install_pgserver_is_skipped_where_it_has_no_wheel() -> None:
    # pgserver 0.1.4 has no build for 3.13: the development lock must not ask for it there.
    marker = locked("requirements.lock")["pgserver"]
    assert Requirement(f"pgserver; {marker}").marker.evaluate({"python_version": "3.13"}) is False  # type: ignore[union-attr]
    assert Requirement(f"pgserver; {marker}").marker.evaluate({"python_version": "3.11"}) is True  # type: ignore[union-attr]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files the Makefile's install rules read, in a folder of their own."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "requirements-runtime.lock",
                 "requirements-build.lock"):  # fmt: skip
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def dry_run(folder: Path, target: str) -> str:
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "-n", target, f"PYTHON={sys.executable}"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_install_make_run_needs_the_runtime_only(checkout: Path) -> None:
    plan = dry_run(checkout, "run")
    assert "-r requirements-runtime.lock" in plan
    assert "-r requirements.lock" not in plan  # no development tool for make run


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_install_a_venv_of_another_python_is_rebuilt(checkout: Path) -> None:
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = checkout / ".venv"
    venv.mkdir()
    (venv / ".python-3.99").touch()  # made with another Python
    plan = dry_run(checkout, "install-runtime")
    assert "rm -rf .venv" in plan
    assert "-m venv .venv" in plan
    # Made with this Python and installed after the lock files: nothing to do.
    shutil.rmtree(venv)
    venv.mkdir()
    for mark in (f".python-{mine}", ".installed-runtime", ".installed"):
        (venv / mark).touch()
    assert "rm -rf" not in dry_run(checkout, "install")
    assert "pip install" not in dry_run(checkout, "install")


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_install_a_python_that_does_not_run_is_named_in_one_line(checkout: Path) -> None:
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "-n", "run", "PYTHON=/nonexistent/python3.12"],
        cwd=checkout, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "PYTHON=/nonexistent/python3.12 is not a Python 3.11, 3.12 or 3.13" in result.stderr
    assert "rm -rf" not in result.stdout  # nothing was touched
