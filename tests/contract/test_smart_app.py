"""The SMART app's server side (issue 11, first slice): the launch page and its FHIR-server
allowlist, the cards' smart links, the view API's refusals and error answers, and the vendored
SMART client library checked against its record."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from cds_service.api.smart import SCOPE, STATIC
from cds_service.main import StartupError, create_app, load_settings
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory, settings_for_tests

pytestmark = pytest.mark.anyio
EHR = "https://ehr.example.org/fhir"
VIEW = "/smart/api/view"


def test_vendored_fhirclient_is_the_recorded_file() -> None:
    folder = STATIC / "vendor"
    record = tomllib.loads((folder / "VENDOR.toml").read_text())["fhirclient"]
    data = (folder / record["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert record["version"] == "2.6.3"
    assert data.startswith(b"/*! For license information please see fhir-client.min.js")
    assert (folder / "fhirclient.LICENSE").read_text().startswith("Copyright")


async def test_launch_refuses_a_fhir_server_not_on_the_allowlist(client_at: ClientFactory) -> None:
    client = client_at(smart_allowed_iss=(EHR,))
    evil = "https://evil.example.com/fhir"
    response = await client.get("/smart/launch", params={"iss": evil, "launch": "abc"})
    assert response.status_code == 403
    assert "not one this deployment allows" in response.text
    assert "evil.example.com" not in response.text  # nothing of the caller's echoed back
    assert "fhir-client" not in response.text  # no launch script: nothing goes to it
    # No allowlist at all: every launch is refused.
    response = await client_at().get("/smart/launch", params={"iss": EHR, "launch": "abc"})
    assert response.status_code == 403


@pytest.mark.parametrize("iss", [EHR, EHR + "/"])
async def test_launch_for_an_allowed_server_serves_the_smart_client(
    client_at: ClientFactory, iss: str
) -> None:
    client = client_at(smart_allowed_iss=(EHR,), smart_client_id="cid-<1>")
    response = await client.get("/smart/launch", params={"iss": iss, "launch": "xyz"})
    assert response.status_code == 200
    assert '<script src="static/vendor/fhir-client.min.js"></script>' in response.text
    start = response.text.index('id="config">') + len('id="config">')
    config = json.loads(response.text[start : response.text.index("</script>", start)])
    assert config == {"clientId": "cid-<1>", "scope": SCOPE, "redirectUri": "app", "iss": EHR}
    assert "cid-<1>" not in response.text  # escaped: data, never markup
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert set(SCOPE.split()) >= {"launch", "patient/*.rs", "patient/CarePlan.cu"}


@pytest.mark.parametrize(
    "query",
    [
        [("iss", "https://evil.example.com/fhir"), ("iss", EHR)],  # the browser reads the first
        [("iss", EHR), ("iss", "https://evil.example.com/fhir")],
        [("iss", EHR), ("fhirServiceUrl", "https://evil.example.com/fhir")],
        [("iss", EHR), ("clientId", "other")],
        [("iss", EHR), ("launch", "a"), ("launch", "b")],
        [("iss", ""), ("iss", EHR)],
    ],
)
async def test_launch_refuses_repeated_or_unknown_parameters(
    client_at: ClientFactory, query: list[tuple[str, str]]
) -> None:
    params = httpx.QueryParams(tuple(query))  # a tuple: covariant, as httpx types it
    response = await client_at(smart_allowed_iss=(EHR,)).get("/smart/launch", params=params)
    assert response.status_code == 400
    assert "fhir-client" not in response.text
    assert "evil" not in response.text


async def test_standalone_launch_asks_no_launch_scope(client_at: ClientFactory) -> None:
    client = client_at(smart_allowed_iss=(EHR,))
    response = await client.get("/smart/launch", params={"iss": EHR})
    start = response.text.index('id="config">') + len('id="config">')
    config = json.loads(response.text[start : response.text.index("</script>", start)])
    assert "launch" not in config["scope"].split()
    assert "launch/patient" in config["scope"].split()


async def test_standalone_launch_lists_the_allowed_servers(client_at: ClientFactory) -> None:
    client = client_at(smart_allowed_iss=(EHR, "https://other.example.org/r4"))
    response = await client.get("/smart/launch")
    assert response.status_code == 200
    assert f'href="launch?iss={EHR}"' in response.text
    assert "https://other.example.org/r4" in response.text


async def test_the_app_and_its_files_are_served(client_at: ClientFactory) -> None:
    client = client_at()
    page = await client.get("/smart/app")
    assert page.status_code == 200
    assert 'src="static/app.js"' in page.text
    script = await client.get("/smart/static/app.js")
    assert script.status_code == 200
    assert "api/view" in script.text
    vendor = await client.get("/smart/static/vendor/fhir-client.min.js")
    assert vendor.status_code == 200
    assert (await client.get("/smart/static/../pages/launch.html")).status_code == 404


def test_smart_settings_that_cannot_work_stop_the_start(monkeypatch: Any) -> None:
    monkeypatch.setenv("CDS_SMART_ALLOWED_ISS", "ftp://ehr.example.org")
    with pytest.raises(StartupError, match=r"CDS_SMART_ALLOWED_ISS: .*not an http\(s\) base URL"):
        load_settings()
    monkeypatch.delenv("CDS_SMART_ALLOWED_ISS")
    with pytest.raises(StartupError, match="CDS_SMART_LINKS=true needs CDS_PUBLIC_BASE_URL"):
        create_app(settings_for_tests(smart_links=True))


def test_smart_allowed_iss_reads_a_comma_separated_variable(monkeypatch: Any) -> None:
    from cds_service.settings import Settings

    monkeypatch.setenv("CDS_SMART_ALLOWED_ISS", f"{EHR}/, https://b.example.org/fhir")
    assert Settings().smart_allowed_iss == (EHR, "https://b.example.org/fhir")


async def test_cards_carry_smart_links_only_when_asked(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    plain = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert all(link["type"] == "absolute" for link in plain.json()["cards"][0]["links"])
    on = client_at(
        cases.MAYA_SUSPECT_DAY, smart_links=True, public_base_url="https://cds.example.org"
    )
    (card,) = (await on.post(SERVICE_URL, json=body)).json()["cards"]
    assert card["links"][0] == {
        "label": "Open the evidence",
        "url": "https://cds.example.org/smart/launch",
        "type": "smart",
        "appContext": "evidence",
    }
    assert card["links"][1:] == plain.json()["cards"][0]["links"]
    confirmed = hook_request(cases.maya_after_mri(), pid="maya")
    on = client_at(
        cases.MAYA_CONFIRMED_DAY, smart_links=True, public_base_url="https://cds.example.org"
    )
    (card,) = (await on.post(SERVICE_URL, json=confirmed)).json()["cards"]
    assert card["links"][0]["label"] == "Review the plan as a timeline"
    assert card["links"][0]["appContext"] == "plan"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"iss": "https://evil.example.com/fhir", "patient": "maya", "access_token": "t"}, 403),
        ({"iss": EHR, "patient": "maya"}, 400),
        ({"iss": EHR, "patient": "../x", "access_token": "t"}, 400),
        ({"iss": EHR, "patient": "maya", "access_token": "t", "extra": 1}, 400),
    ],
)
async def test_view_refuses_what_it_must_not_do(
    client_at: ClientFactory, body: dict[str, Any], status: int
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="evil.example.com").respond(200, json={})
        response = await client_at(smart_allowed_iss=(EHR,)).post(VIEW, json=body)
        assert not route.called  # the token never goes to a server off the allowlist
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_view_reports_an_unreachable_fhir_server_as_412(client_at: ClientFactory) -> None:
    with respx.mock() as mock:
        mock.route(host="ehr.example.org").mock(side_effect=httpx.ConnectError("down"))
        response = await client_at(smart_allowed_iss=(EHR,)).post(
            VIEW, json={"iss": EHR, "patient": "maya", "access_token": "t"}
        )
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "processing"


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def _fake_ehr(mock: respx.MockRouter, record: list[dict[str, Any]], seen: list[str]) -> None:
    """A FHIR server that answers every search with the record's resources of that type (the
    rule filters by code itself) and checks the bearer token."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        kind = request.url.path.rsplit("/", 2)[-1] if "?" not in str(request.url) else None
        path = request.url.path
        if "/Patient/" in path:
            (patient,) = [r for r in record if r["resourceType"] == "Patient"]
            return httpx.Response(200, json=patient)
        kind = path.rsplit("/", 1)[-1]
        return httpx.Response(
            200, json=_searchset([r for r in record if r["resourceType"] == kind])
        )

    mock.route(host="ehr.example.org").mock(side_effect=answer)


async def test_view_gives_the_evidence_and_the_plan_from_the_same_rule(
    client_at: ClientFactory,
) -> None:
    seen: list[str] = []
    with respx.mock() as mock:
        _fake_ehr(mock, cases.maya_after_mri(), seen)
        client = client_at(cases.MAYA_CONFIRMED_DAY, smart_allowed_iss=(EHR,))
        response = await client.post(
            VIEW, json={"iss": EHR + "/", "patient": "maya", "access_token": "user-token"}
        )
        card = (
            await client.post(SERVICE_URL, json=hook_request(cases.maya_after_mri(), pid="maya"))
        ).json()["cards"][0]
    assert response.status_code == 200, response.text
    assert seen
    assert set(seen) == {"Bearer user-token"}
    view = response.json()
    assert view["kind"] == "confirmed"
    assert view["confirmation"]["day0"] == "2025-10-03"
    assert view["confirmation"]["diagnosis"]["source"] == "Condition/sacral-bsi-1"
    # The plan is the card's plan: same identifier, same activities (created time aside).
    offered = card["suggestions"][0]["actions"][0]["resource"]
    assert view["plan"]["identifier"] == offered["identifier"]
    assert view["plan"]["activity"] == offered["activity"]
    assert view["planIdentifier"] == {
        "system": offered["identifier"][0]["system"],
        "value": offered["identifier"][0]["value"],
    }
    assert view["savedPlan"] is None


async def test_view_finds_a_saved_plan(client_at: ClientFactory) -> None:
    seen: list[str] = []
    record = cases.maya_after_mri()
    with respx.mock() as mock:
        _fake_ehr(mock, record, seen)
        client = client_at(cases.MAYA_CONFIRMED_DAY, smart_allowed_iss=(EHR,))
        first = (
            await client.post(VIEW, json={"iss": EHR, "patient": "maya", "access_token": "t"})
        ).json()
    saved = {**first["plan"], "id": "cp-1", "status": "active"}
    with respx.mock() as mock:
        _fake_ehr(mock, [*record, saved], seen)
        client = client_at(cases.MAYA_CONFIRMED_DAY, smart_allowed_iss=(EHR,))
        again = (
            await client.post(VIEW, json={"iss": EHR, "patient": "maya", "access_token": "t"})
        ).json()
    assert again["savedPlan"] == "CarePlan/cp-1"


async def test_view_of_a_suspected_runner_lists_the_evidence(client_at: ClientFactory) -> None:
    seen: list[str] = []
    with respx.mock() as mock:
        _fake_ehr(mock, cases.maya_before_mri(), seen)
        client = client_at(cases.MAYA_SUSPECT_DAY, smart_allowed_iss=(EHR,))
        view = (
            await client.post(VIEW, json={"iss": EHR, "patient": "maya", "access_token": "t"})
        ).json()
    assert view["kind"] == "suspect"
    assert view["plan"] is None
    (pain,) = view["assessment"]["pains"]
    assert pain["pain"]["source"] == "Condition/si-1"
    assert pain["pain"]["side"] == "left"
    assert view["assessment"]["runner"]["source"] == "Observation/run-1"
    categories = {r["category"] for r in view["assessment"]["risks"]}
    # Maya's card A counts 3 (prior stress fracture, amenorrhoea, BMI 18.1) and lists her sex.
    assert categories == {"prior_bsi", "menstrual", "low_bmi", "female_sex"}
    assert all(c in view["riskLabels"] for c in categories)


def test_static_files_hold_no_template_placeholders() -> None:
    for path in Path(STATIC).rglob("*.js"):
        if "vendor" not in path.parts:
            assert "{{" not in path.read_text(), path


def test_the_app_files_ship_in_the_wheel(tmp_path: Path) -> None:
    """A non-editable install (the Docker image) carries the pages, scripts and vendored
    library: built here with the project's own build backend, no network."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # Built from a copy: the build writes build/ and *.egg-info beside the sources.
    root, source = Path(__file__).resolve().parents[2], tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("cds_service", "fhir_mappings"):
        shutil.copytree(root / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "cds_service/smart_app/pages/launch.html",
        "cds_service/smart_app/pages/app.html",
        "cds_service/smart_app/static/app.js",
        "cds_service/smart_app/static/launch.js",
        "cds_service/smart_app/static/app.css",
        "cds_service/smart_app/static/vendor/fhir-client.min.js",
        "cds_service/smart_app/static/vendor/VENDOR.toml",
    ):
        assert expected in names, expected


def test_app_scripts_parse() -> None:
    """A syntax error in the app's scripts shows up here, before any browser test."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the app's scripts are not syntax-checked here")
    for name in ("app.js", "launch.js"):
        result = subprocess.run(
            [node, "--check", str(STATIC / name)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(
    ("foreground", "background", "where"),
    [
        ("#1a1a1a", "#ffffff", "body text"),
        ("#4a4a4a", "#ffffff", "notes"),
        ("#ffffff", "#1f5fbf", "buttons and phase bars"),
        ("#1f5fbf", "#ffffff", "links to the sources"),
        ("#ffffff", "#8a1c1c", "the restriction band"),
        ("#ffffff", "#2e6b30", "phases done"),
        ("#333333", "#ffffff", "week labels"),
        ("#c00000", "#ffffff", "today"),
    ],
)
def test_app_colours_meet_wcag_aa(foreground: str, background: str, where: str) -> None:
    """WCAG 2.x AA: 4.5:1 for text. Every colour pair the app draws text with, read from its
    own files (so a changed colour that is not listed here fails the next test)."""
    assert _contrast(foreground, background) >= 4.5, where


def test_app_draws_only_the_colours_checked_above() -> None:
    import re

    used = set()
    for name in ("app.css", "app.js"):
        used |= {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}\b", (STATIC / name).read_text())}
    checked = {
        "#1a1a1a",
        "#4a4a4a",
        "#ffffff",
        "#1f5fbf",
        "#8a1c1c",
        "#2e6b30",
        "#333333",
        "#c00000",
    }
    # Grid lines and table borders carry no text.
    assert used - checked <= {"#d0d0d0", "#b0b0b0"}, used - checked


async def test_view_body_is_bounded_like_a_hook_call(client_at: ClientFactory) -> None:
    client = client_at(smart_allowed_iss=(EHR,), max_body_bytes=10_000)
    body = {"iss": EHR, "patient": "maya", "access_token": "t" * 20_000}
    response = await client.post(VIEW, json=body)
    assert response.status_code == 413
