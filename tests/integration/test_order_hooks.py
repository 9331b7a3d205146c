"""The order services against the real local FHIR server (issue 10): the record is not
prefetched, the service fetches it; each order kind positive and negative; the same cards as
with full prefetch; and ``cds-service fire order-select`` / ``order-sign`` as a person runs it."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service import sandbox
from cds_service.main import create_app
from cds_service.sandbox import rename
from tests import cases
from tests.builders import hook_request
from tests.conftest import at, settings_for_tests
from tests.integration.conftest import load, put_transaction
from tests.integration.test_sandbox_cli import cds_service

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def loaded(fhir_server: str) -> str:
    for name, record in (
        ("ord-maya", cases.maya_before_mri()),
        ("ord-maya-confirmed", cases.maya_after_mri()),
        ("ord-daniel", cases.daniel()),
    ):
        load(fhir_server, put_transaction(rename(record, name)))
    return fhir_server


def order_body(
    hook: str, pid: str, kinds: list[str], *, fhir_server: str | None, prefetch: Any = None
) -> dict[str, Any]:
    body = sandbox.hook_request(fhir_server or "http://unused", pid, hook=hook, orders=kinds)
    if fhir_server is None:
        body.pop("fhirServer")
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


async def post(body: dict[str, Any], day: date) -> dict[str, Any]:
    app = create_app(settings_for_tests(), clock=at(day))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cds.test"
        ) as client,
    ):
        response = await client.post(sandbox.service_path(body["hook"]), json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


CASES = [
    # (patient, day, hook, orders, expected summaries' starts)
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["xray-pelvis"], ["Runner, left SI-joint pain: X-ray"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["xray-lumbar"], ["Runner, left SI-joint pain: X-ray"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["xray-si-joints"], ["Runner, left SI-joint pain: X-ray"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["xray-sacrum"], ["Runner, left SI-joint pain: X-ray"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["ct-pelvis"], ["Runner, left SI-joint pain: CT"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["ct-lumbar"], ["Runner, left SI-joint pain: CT"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["si-injection"], ["Runner, left SI-joint pain: consider"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["physio-si"], ["Runner, left SI-joint pain: consider"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-select", ["mri-pelvis"], []),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-sign", ["xray-pelvis", "si-injection"], ["Runner, left SI-joint pain: X-ray", "Runner, left SI-joint pain: consider"]),
    ("ord-maya", cases.MAYA_SUSPECT_DAY, "order-sign", ["xray-pelvis", "mri-pelvis"], []),
    ("ord-daniel", cases.MAYA_SUSPECT_DAY, "order-select", ["xray-lumbar"], []),
    ("ord-daniel", cases.MAYA_SUSPECT_DAY, "order-sign", ["si-injection"], []),
    ("ord-maya-confirmed", cases.MAYA_CONFIRMED_DAY, "order-sign", ["si-injection"], ["Confirmed sacral stress injury: an SI-joint injection"]),
    ("ord-maya-confirmed", cases.MAYA_CONFIRMED_DAY, "order-select", ["xray-pelvis"], []),
]  # fmt: skip


@pytest.mark.parametrize(("pid", "day", "hook", "kinds", "summaries"), CASES)
async def test_order_hooks_fetch_the_record_from_the_fhir_server(
    loaded: str, pid: str, day: date, hook: str, kinds: list[str], summaries: list[str]
) -> None:
    fetched = await post(order_body(hook, pid, kinds, fhir_server=loaded), day)
    got = [c["summary"] for c in fetched["cards"]]
    assert len(got) == len(summaries), got
    for summary, start in zip(got, summaries, strict=True):
        assert summary.startswith(start), (summary, start)
    # The same answer when the EHR prefetches the record (and no fhirServer is sent).
    async with httpx.AsyncClient() as http:
        app_templates = {k.name: k.template for k in _service_keys(hook)}
        prefetch = await sandbox.prefetch(http, loaded, app_templates, pid)
    prefetched = await post(order_body(hook, pid, kinds, fhir_server=None, prefetch=prefetch), day)
    assert _UUID.sub("<uuid>", json.dumps(prefetched)) == _UUID.sub("<uuid>", json.dumps(fetched))


def _service_keys(hook: str) -> Any:
    from cds_service.services.registry import load_services
    from cds_service.settings import CARDS_DIR

    (service,) = [s for s in load_services(CARDS_DIR) if s.definition.hook == hook]
    return service.prefetch_keys


async def test_order_select_reads_only_the_patient_in_context(loaded: str) -> None:
    """Daniel's X-ray gets no card though Maya, a runner with SI-joint pain, is on the same
    server; and Maya's record prefetched under Daniel's id is dropped, not read."""
    body = order_body("order-select", "ord-daniel", ["xray-pelvis"], fhir_server=loaded)
    assert (await post(body, cases.MAYA_SUSPECT_DAY))["cards"] == []
    mixed_up = hook_request(cases.maya_before_mri(), pid="maya")["prefetch"]
    mixed_up["patient"] = None  # the EHR has no Patient under this id
    body = order_body(
        "order-select", "ord-daniel", ["xray-pelvis"], fhir_server=None, prefetch=mixed_up
    )
    assert (await post(body, cases.MAYA_SUSPECT_DAY))["cards"] == []
    body = order_body("order-select", "maya", ["xray-pelvis"], fhir_server=None, prefetch=mixed_up)
    assert len((await post(body, cases.MAYA_SUSPECT_DAY))["cards"]) == 1  # the control


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def demo_loaded(fhir_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    result = cds_service(
        "demo-load", "--fhir-server", fhir_server, cwd=tmp_path_factory.mktemp("cli")
    )
    assert result.returncode == 0, result.stderr
    return fhir_server


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("xray-pelvis", "X-ray is often normal early in sacral stress injury"),
        ("ct-pelvis", "CT is often normal early in sacral stress injury"),
        ("si-injection", "consider sacral stress injury before treating as SI-joint pain"),
        ("mri-pelvis", "No cards"),
    ],
)
def test_cli_fire_order_select_builds_the_draft_order(
    demo_loaded: str, tmp_path: Path, order: str, expected: str
) -> None:
    result = cds_service(
        "fire", "order-select", "--fhir-server", demo_loaded,
        "--patient", "sacral-bsi-demo-runner", "--order", order, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    if order == "xray-pelvis":
        assert "Suggestion: Change this order to an MRI of the sacrum (update ServiceRequest)" in (
            result.stdout
        )
        assert (
            "Suggestion: Cancel this order and add an MRI of the sacrum instead (delete, create "
            "ServiceRequest)" in result.stdout
        )


def test_cli_fire_order_sign_json_with_prefetch_for_the_confirmed_runner(
    demo_loaded: str, tmp_path: Path
) -> None:
    result = cds_service(
        "fire", "order-sign", "--fhir-server", demo_loaded,
        "--patient", "sacral-bsi-demo-mri-confirmed", "--order", "si-injection",
        "--order", "xray-pelvis", "--prefetch", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (card,) = json.loads(result.stdout)["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Confirmed sacral stress injury: an SI-joint injection")


def test_cli_fire_order_select_refuses_an_unknown_order_kind(tmp_path: Path) -> None:
    result = cds_service(
        "fire", "order-select", "--fhir-server", "http://127.0.0.1:9",
        "--patient", "x", "--order", "xray-knee", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--order xray-knee: not one of xray-lumbar, xray-pelvis" in result.stderr
    assert "Traceback" not in result.stderr
