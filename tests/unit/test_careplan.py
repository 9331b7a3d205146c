"""The CarePlan proposal: shaped by rehab-protocol.toml, valid R4, stable identity."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cds_service.clinical.identity import IDENTIFIER_SYSTEM, plan_identifier
from cds_service.clinical.sacral_bsi import Confirmation
from cds_service.services.sacral_bsi.content import Content
from cds_service.services.sacral_bsi.render import RenderContext, build_careplan
from fhir_mappings import r4
from tests import cases
from tests.builders import ICD10CM, LOINC, SNOMED, coding, condition, report
from tests.conftest import assess_case

DAY = date(2025, 10, 5)


def plan_for(resources: list[dict[str, Any]], content: Content, pid: str = "p1") -> dict[str, Any]:
    result = assess_case(resources, content, DAY, pid)
    assert isinstance(result, Confirmation)
    ctx = RenderContext(pid, None, DAY, datetime(2025, 10, 5, 9, 30, tzinfo=UTC), lambda: "u")
    return build_careplan(result, content, ctx)


def test_careplan_follows_the_protocol_windows_from_day0(content: Content) -> None:
    plan = plan_for(cases.maya_after_mri(), content, "maya")
    day0 = date(2025, 10, 3)
    phases = [a["detail"] for a in plan["activity"] if not a["detail"].get("doNotPerform")]
    assert len(phases) == len(content.protocol.phase)
    for detail, phase in zip(phases, content.protocol.phase, strict=True):
        assert detail["code"]["text"] == phase.name
        assert detail["status"] == "not-started"
        assert detail["kind"] == "ServiceRequest"
        assert detail["scheduledPeriod"] == {
            "start": (day0 + timedelta(days=phase.start_day)).isoformat(),
            "end": (day0 + timedelta(days=phase.end_day)).isoformat(),
        }
        assert phase.criteria in detail["description"]
    (no_running,) = [a["detail"] for a in plan["activity"] if a["detail"].get("doNotPerform")]
    assert no_running["scheduledPeriod"] == {"start": "2025-10-03"}  # until cleared (14.4)


def test_careplan_header_fields(content: Content) -> None:
    plan = plan_for(cases.maya_after_mri(), content, "maya")
    assert (plan["status"], plan["intent"]) == ("draft", "proposal")
    assert plan["subject"] == {"reference": "Patient/maya"}
    assert plan["addresses"] == [{"reference": "Condition/sacral-bsi-1"}]
    assert plan["supportingInfo"] == [{"reference": "DiagnosticReport/mri-2025-10-03"}]
    assert plan["period"] == {"start": "2025-10-03", "end": "2026-04-03"}
    assert plan["created"] == "2025-10-05T09:30:00+00:00"
    assert "sacral bone stress injury" in plan["title"].lower()
    assert plan["identifier"] == [
        {"system": IDENTIFIER_SYSTEM, "value": plan_identifier("maya", "Condition/sacral-bsi-1")}
    ]
    assert plan["instantiatesUri"] == [content.protocol.uri]
    assert "Fredericson grade 4" in plan["description"]
    assert plan["note"][0]["text"] == content.protocol.note
    assert plan["text"]["status"] == "generated"


def test_careplan_from_coded_report_has_no_condition_to_address(content: Content) -> None:
    mri = report(
        "mri",
        coding(LOINC, "24867-4"),
        effective="2025-10-01",
        conclusion="Right sacral stress reaction, no fracture line.",
        conclusion_codes=[coding(SNOMED, "240197007")],
    )
    plan = plan_for([mri], content)
    assert "addresses" not in plan
    assert plan["supportingInfo"] == [{"reference": "DiagnosticReport/mri"}]
    assert plan["period"]["start"] == "2025-10-01"
    assert plan["description"].startswith(
        "Right sacral bone stress injury (no fracture line; stress reaction"
    )


def test_careplan_without_any_date_starts_today_and_says_so(content: Content) -> None:
    plan = plan_for([condition("bsi", coding(ICD10CM, "M48.48XA"))], content)
    assert plan["period"]["start"] == DAY.isoformat()
    assert "diagnosis date not recorded" in plan["description"]


def test_careplan_identifier_is_stable_and_distinct() -> None:
    assert plan_identifier("p1", "Condition/1") == plan_identifier("p1", "Condition/1")
    assert plan_identifier("p1", "Condition/1") != plan_identifier("p2", "Condition/1")
    assert plan_identifier("p1", "Condition/1") != plan_identifier("p1", "Condition/2")


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "proposed"), ("intent", "suggestion")],
)
def test_careplan_validation_rejects_codes_outside_required_bindings(
    content: Content, field: str, value: str
) -> None:
    plan = plan_for(cases.maya_after_mri(), content, "maya")
    plan[field] = value
    with pytest.raises(r4.InvalidResourceError):
        r4.validate(plan)


def test_careplan_validation_rejects_bad_structure(content: Content) -> None:
    plan = plan_for(cases.maya_after_mri(), content, "maya")
    plan["period"]["start"] = "2025-13-40"
    with pytest.raises(r4.InvalidResourceError):
        r4.validate(plan)
