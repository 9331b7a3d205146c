"""Path 2b over HTTP: the one suggestion that records the diagnosis and proposes its plan.

The plan ``addresses`` the Condition created beside it by the full URL that the EHR's transaction
gives that Condition (CDS Hooks 2.0: the actions of a suggestion are applied as one transaction,
with fhirServer as the base). So every fhirServer the service accepts must give a plan that keeps
that link; one it cannot build a URL on is refused at the door. A report sent without an id is
read, but nothing refers to it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests import cases
from tests.builders import LOINC, SNOMED, coding, hook_request, report
from tests.conftest import SERVICE_URL, ClientFactory

pytestmark = pytest.mark.anyio
TODAY = date(2026, 11, 30)


def coded_mri(rid: str | None = "mri-2b", days: int = 5, pid: str = "p1") -> dict[str, Any]:
    mri = report(
        rid or "x",
        coding(LOINC, "24867-4"),
        effective=(TODAY - timedelta(days=days)).isoformat(),
        conclusion="Left sacral ala stress fracture.",
        conclusion_codes=[coding(SNOMED, "240197007")],
        patient_id=pid,
    )
    if rid is None:
        del mri["id"]
    return mri


def the_suggestion(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Condition and the CarePlan of the card's one suggestion that creates both."""
    (card,) = body["cards"]
    (both,) = [s for s in card["suggestions"] if len(s["actions"]) == 2]
    condition, plan = (a["resource"] for a in both["actions"])
    assert (condition["resourceType"], plan["resourceType"]) == ("Condition", "CarePlan")
    return condition, plan


async def call(client_at: ClientFactory, body: dict[str, Any]) -> dict[str, Any]:
    response = await client_at(TODAY).post(SERVICE_URL, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("base", "expected_base"),
    [
        ("http://ehr.example/fhir", "http://ehr.example/fhir"),
        ("http://ehr.example/fhir/", "http://ehr.example/fhir"),  # FHIR bases end without "/"
        ("HTTP://EHR.EXAMPLE/fhir", "HTTP://EHR.EXAMPLE/fhir"),  # the EHR's own spelling
        ("Https://ehr.example:8443/r4", "Https://ehr.example:8443/r4"),
        ("http://[::1]:8080/fhir", "http://[::1]:8080/fhir"),
        ("https://ehr.example", "https://ehr.example"),
        ("https://ehr.example/a/b/c/fhir/R4", "https://ehr.example/a/b/c/fhir/R4"),
    ],
)
async def test_path_2b_plan_addresses_the_new_condition_on_every_accepted_base(
    client_at: ClientFactory, base: str, expected_base: str
) -> None:
    body = await call(client_at, hook_request(cases.runner_with(coded_mri()), fhir_server=base))
    condition, plan = the_suggestion(body)
    assert plan["addresses"] == [{"reference": f"{expected_base}/Condition/{condition['id']}"}]


async def test_path_2b_without_fhir_server_refers_relatively(client_at: ClientFactory) -> None:
    body = await call(client_at, hook_request(cases.runner_with(coded_mri())))
    condition, plan = the_suggestion(body)
    assert plan["addresses"] == [{"reference": f"Condition/{condition['id']}"}]


@pytest.mark.parametrize(
    "base",
    [
        "http://ehr.example/fhir?",  # an empty query: no longer one base URL once a path follows
        "http://ehr.example/fhir#",
        "http://ehr.example/fhir?_format=json",
        "http://ehr.example/fh ir",
        "http://ehr.example/fhir ",
        "http://ehr.example/fhir\t",
        "http://user:secret@ehr.example/fhir",
        "ftp://ehr.example/fhir",
        "http://ehr.example:0/fhir",
        "//ehr.example/fhir",
    ],
)
async def test_fhir_server_that_is_not_a_base_url_is_refused_naming_the_field(
    client_at: ClientFactory, base: str
) -> None:
    body = hook_request(cases.runner_with(coded_mri()), fhir_server=base)
    response = await client_at(TODAY).post(SERVICE_URL, json=body)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["fhirServer"]
    assert "fhirServer must be an absolute http(s) URL" in issue["details"]["text"]


async def test_path_2b_condition_id_is_stable_per_report_and_patient(
    client_at: ClientFactory,
) -> None:
    first, _ = the_suggestion(await call(client_at, hook_request(cases.runner_with(coded_mri()))))
    again, _ = the_suggestion(await call(client_at, hook_request(cases.runner_with(coded_mri()))))
    other_report, _ = the_suggestion(
        await call(client_at, hook_request(cases.runner_with(coded_mri("mri-other"))))
    )
    other_patient, _ = the_suggestion(
        await call(
            client_at, hook_request(cases.runner_with(coded_mri(pid="p2"), pid="p2"), pid="p2")
        )
    )
    assert first["id"] == again["id"]
    assert first["id"].startswith("sacral-bsi-dx-")
    assert len({first["id"], other_report["id"], other_patient["id"]}) == 3


async def test_report_without_an_id_is_read_but_never_referred_to(
    client_at: ClientFactory,
) -> None:
    """A malformed prefetch (a report with no id): the card still shows, and nothing in it points
    at "DiagnosticReport/None"."""
    body = await call(client_at, hook_request(cases.runner_with(coded_mri(rid=None))))
    condition, plan = the_suggestion(body)
    text = str(body)
    assert "None" not in text
    assert "evidence" not in condition
    assert "supportingInfo" not in plan
    assert plan["addresses"] == [{"reference": f"Condition/{condition['id']}"}]
    again, _ = the_suggestion(
        await call(client_at, hook_request(cases.runner_with(coded_mri(rid=None))))
    )
    assert again["id"] == condition["id"]  # stable for the same report content
    (card,) = body["cards"]
    assert "MRI" in card["detail"]
