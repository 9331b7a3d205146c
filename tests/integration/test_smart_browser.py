"""The SMART app in a real browser (issue 11): Debian's chromium, driven by Playwright, does an
EHR launch of the app (authorization code flow with PKCE against tests/smart_authz.py, an
authlib authorization server in front of the local FHIR server), sees the evidence and the
plan, moves a phase window, saves, saves again, reloads: the plan reopens as saved, and the
FHIR server holds exactly one CarePlan, with the edit. Also the standalone launch.

Screenshots go to SMART_SCREENSHOTS_DIR when it is set (docs/screenshots/ holds the ones in the
README)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cds_service import sandbox
from tests.integration.conftest import (
    careplans_with_identifier,
    free_port,
    load,
    put_transaction,
    service_process,
)
from tests.smart_authz import AuthzConfig, build_app

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CONFIRMED = "sacral-bsi-demo-mri-confirmed"
RUNNER = "sacral-bsi-demo-runner"


@pytest.fixture(scope="module")
def browser_path() -> str:
    if not Path(CHROMIUM).exists():
        message = (
            "Debian's chromium is not installed (make test installs it when run as root: "
            "apt-get install chromium)"
        )
        if os.environ.get("CDS_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@contextlib.contextmanager
def authz_server(config: AuthzConfig, port: int) -> Iterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(build_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("the authorization server did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def deployment(
    fhir_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The demo patients (dates moved to today) on the local FHIR server, the authorization
    server in front of it, and the service (a real process) with it as its one allowed iss."""
    records = sandbox.demo_records(datetime.now(UTC).date())
    for key in ("mri-confirmed", "runner"):
        load(fhir_server, put_transaction(records[key]))
    service_port, authz_port = free_port(), free_port()
    app_origin = f"http://127.0.0.1:{service_port}"
    authz = f"http://127.0.0.1:{authz_port}"
    config = AuthzConfig(
        base=authz,
        upstream=fhir_server,
        app_origin=app_origin,
        redirect_uri=app_origin + "/smart/app",
        launches={"mri": CONFIRMED, "runner": RUNNER},
        standalone_patient=RUNNER,
    )
    env = {
        "CDS_REQUIRE_JWT": "false",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('smart')}/cds.db",
        "CDS_SMART_ALLOWED_ISS": config.fhir_base,
    }
    with (
        authz_server(config, authz_port),
        service_process(tmp_path_factory.mktemp("smart-svc"), env, port=service_port) as service,
    ):
        yield {"service": service.url, "iss": config.fhir_base, "fhir": fhir_server}


def _shoot(page: Any, name: str) -> None:
    folder = os.environ.get("SMART_SCREENSHOTS_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_smart_app_ehr_launch_edit_save_reload(
    browser_path: str, deployment: dict[str, str]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        launch = f"{deployment['service']}/smart/launch?iss={deployment['iss']}&launch=mri"
        page.goto(launch)
        page.wait_for_selector("#plan:not([hidden])", timeout=20_000)
        assert page.url == deployment["service"] + "/smart/app"
        evidence = page.inner_text("#evidence-items")
        assert "MRI:" in evidence
        assert f"DiagnosticReport/{CONFIRMED}" in evidence  # each item names its source
        # ... and links to it: the resource, read with the user's token.
        source = page.locator("#evidence-items button.link").first
        source.click()
        expect(page.locator("#evidence-items pre").first).to_contain_text(
            '"resourceType": "DiagnosticReport"', timeout=10_000
        )
        assert "Proposed; not saved yet." in page.inner_text("#plan-state")
        assert page.inner_text("#stop").startswith("Stop and re-assess")
        rows = page.locator("#timeline-table tbody tr")
        assert rows.count() == 7  # 5 phases, bone health, the restriction
        assert rows.nth(6).inner_text().startswith("Do not: Running, hopping, jumping")
        assert "until the clinician clears it" in rows.nth(6).inner_text()
        assert page.locator("#timeline svg rect").count() == 7
        _shoot(page, "smart-app-evidence-and-plan.png")
        # Keyboard only: open phase 4's details and move its start to week 10.
        page.locator("#phases summary").nth(3).focus()
        page.keyboard.press("Enter")
        start = page.locator("#start-3")
        start.focus()
        start.fill("10")
        page.keyboard.press("Tab")
        day0 = date.fromisoformat(page.input_value("#day0"))
        moved = (day0 + timedelta(days=70)).isoformat()
        assert moved in rows.nth(3).inner_text()
        page.select_option("#save-status", "draft")
        page.click("#save")
        saved = re.compile(r"^Saved in the chart")
        expect(page.locator("#plan-state")).to_have_text(saved, timeout=20_000)
        page.click("#save")  # twice: still one plan
        expect(page.locator("#plan-state")).to_have_text(saved, timeout=20_000)
        page.reload()
        page.wait_for_selector("#plan:not([hidden])", timeout=20_000)
        assert "Saved in the chart as CarePlan/" in page.inner_text("#plan-state")
        assert page.input_value("#start-3") == "10"
        _shoot(page, "smart-app-saved.png")
        # The printout for the patient: the print stylesheet shows only the sheet.
        page.emulate_media(media="print")
        assert page.locator("#patient-sheet").is_visible()
        assert page.locator("main").is_hidden()
        sheet = page.inner_text("#patient-sheet")
        assert "Phase 4: return to running (from about " + moved + ")" in sheet
        assert "Move on when: Continuous easy running at the planned volume, pain-free." in sheet
        assert "No running, hopping or jumping until the clinician clears" in sheet
        assert "Stop and re-assess" in sheet
        page.emulate_media(media="screen")
        browser.close()
    assert errors == []
    with httpx.Client() as http:
        search = http.get(
            f"{deployment['fhir']}/CarePlan", params={"subject": f"Patient/{CONFIRMED}"}
        ).json()
    plans = [e["resource"] for e in search.get("entry", [])]
    assert len(plans) == 1, [p.get("id") for p in plans]
    (plan,) = plans
    phase4 = plan["activity"][3]["detail"]
    assert phase4["code"]["text"] == "Phase 4: return to running"
    assert phase4["scheduledPeriod"]["start"] == moved
    assert plan["status"] == "draft"
    identifier = plan["identifier"][0]["value"]
    assert len(careplans_with_identifier(deployment["fhir"], identifier)) == 1


def test_smart_app_standalone_launch_and_refused_server(
    browser_path: str, deployment: dict[str, str]
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
        page = browser.new_page()
        page.goto(f"{deployment['service']}/smart/launch")
        page.click(f"a[href='launch?iss={deployment['iss']}']")
        page.wait_for_selector("#evidence:not([hidden])", timeout=20_000)
        assert "Pain:" in page.inner_text("#evidence-items")
        assert page.locator("#plan").is_hidden()  # a suspected runner: no plan yet
        other = "http://127.0.0.1:9/fhir"
        response = page.goto(f"{deployment['service']}/smart/launch?iss={other}&launch=x")
        assert response is not None
        assert response.status == 403
        browser.close()
