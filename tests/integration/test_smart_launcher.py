"""Opt-in: the SMART app launched by the SMART Health IT launcher (smart-launcher-v2), a real
EHR simulator, in front of the local FHIR server: its own `iss` and `launch`, its authorization
code flow with PKCE, the same browser flow as test_smart_browser.py.

Set SMART_LAUNCHER_DIR to a built checkout (README, "The SMART app": `git clone
https://github.com/smart-on-fhir/smart-launcher-v2 && cd smart-launcher-v2 && npm ci`); skipped
otherwise. The launcher's FHIR proxy checks no scope and needs no token (it only refuses a bad
one), so scope mistakes are caught by test_smart_browser.py, not here."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cds_service import sandbox
from tests.integration.conftest import free_port, load, put_transaction, service_process
from tests.integration.test_smart_browser import browser_path  # noqa: F401

pytestmark = pytest.mark.integration
LAUNCHER = os.environ.get("SMART_LAUNCHER_DIR")
PATIENT = "launcher-mri"


def encode_launch(patient: str) -> str:
    """The launcher's launch options (src/isomorphic/codec.ts): a provider EHR launch of one
    patient, one provider, no encounter (its "AUTO" mode fails on a FHIR base with a path),
    login and approval skipped, PKCE always."""
    options = [0, patient, "demo-clinician", "NONE", 1, 1, 0, "", "", "", "", "", "", "", 0, 2, ""]
    raw = json.dumps(options, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture(scope="module")
def launcher(fhir_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not LAUNCHER:
        pytest.skip("SMART_LAUNCHER_DIR is not set: the launcher test is opt-in (see README)")
    folder = Path(LAUNCHER)
    ts_node = folder / "node_modules" / ".bin" / "ts-node"
    if not ts_node.exists():
        pytest.fail(f"{folder} is not a built launcher (no node_modules: run npm ci there)")
    port = free_port()
    log = tmp_path_factory.mktemp("launcher") / "launcher.log"
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "FHIR_SERVER_R4": fhir_server,
        "FHIR_SERVER_R3": "",
        "FHIR_SERVER_R2": "",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(ts_node), "--skipProject", "--transpile-only", "backend/index.ts"],
            cwd=folder,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/keys", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the launcher did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_smart_app_through_the_smart_launcher(
    browser_path: str,  # noqa: F811
    launcher: str,
    fhir_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Its own copy of the demo patient: the browser test's saved plan must not be seen here.
    example = sandbox.resources_of_request(sandbox.EXAMPLES / "patient-view-mri-confirmed.json")
    shift = (datetime.now(UTC).date() - sandbox.EXAMPLES_DATE).days
    load(fhir_server, put_transaction(sandbox.shift_dates(sandbox.rename(example, PATIENT), shift)))
    iss = launcher + "/v/r4/fhir"
    env = {
        "CDS_REQUIRE_JWT": "false",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('launcher-svc')}/cds.db",
        "CDS_SMART_ALLOWED_ISS": iss,
    }
    folder = tmp_path_factory.mktemp("launcher-svc-run")
    with service_process(folder, env) as service, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
        page = browser.new_page()
        page.goto(f"{service.url}/smart/launch?iss={iss}&launch={encode_launch(PATIENT)}")
        page.wait_for_selector("#evidence:not([hidden]), #status:has-text('Could not')")
        assert page.inner_text("#status") == "", service.log.read_text()[-1000:]
        page.wait_for_selector("#plan:not([hidden])", timeout=30_000)
        assert "MRI:" in page.inner_text("#evidence-items")
        page.click("#save")
        saved = re.compile(r"^Saved in the chart")
        expect(page.locator("#plan-state")).to_have_text(saved, timeout=20_000)
        page.reload()
        page.wait_for_selector("#plan:not([hidden])", timeout=30_000)
        assert "Saved in the chart as CarePlan/" in page.inner_text("#plan-state")
        browser.close()
