"""What an order is (by code and by name) and which order deserves a card (issue 10)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import msgspec
import pytest

from cds_service.clinical.facts import PatientFacts
from cds_service.clinical.orders import (
    ConfirmedInjection,
    ConfirmedLoad,
    ConsiderBsiFirst,
    DraftOrder,
    ImagingInstead,
    LoadWindows,
    OrderKind,
    kind_from_text,
    order_findings,
)
from cds_service.clinical.sacral_bsi import Confirmation, Suspicion, assess, current_confirmation
from cds_service.platform import wire
from cds_service.services.sacral_bsi.content import Content
from cds_service.services.sacral_bsi_orders.content import (
    FOLDER,
    OrderContent,
    OrderValueSets,
    load_order_content,
)
from fhir_mappings.draft_orders import DraftOrdersError, as_mri, read_draft_orders, selected
from tests import cases
from tests.conftest import facts_of

CPT = "http://www.ama-assn.org/go/cpt"
WINDOWS = LoadWindows(hopping_from_day=28, running_from_day=56)


@pytest.fixture(scope="module")
def orders_content() -> OrderContent:
    from cds_service.services.sacral_bsi.content import load_content

    rule = load_content()
    return load_order_content(rule.directory.parent / FOLDER, rule)


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


def sr(sid: str, system: str | None, code: str | None, text: str, **extra: Any) -> dict[str, Any]:
    coding = [{"system": system, "code": code}] if code else []
    return {
        "resourceType": "ServiceRequest",
        "id": sid,
        "status": "draft",
        "intent": "order",
        "code": {"coding": coding, "text": text},
        **extra,
    }


@pytest.mark.parametrize(
    ("text", "kind", "region"),
    [
        ("XR lumbar spine 2-3 views", OrderKind.XRAY, "lumbar"),
        ("X-ray pelvis AP", OrderKind.XRAY, "pelvis"),
        ("Radiograph sacrum and coccyx", OrderKind.XRAY, "sacrum"),
        ("XR SI joints bilateral", OrderKind.XRAY, "si_joint"),
        ("Plain film L-spine", OrderKind.XRAY, "lumbar"),
        ("CT pelvis w/o contrast", OrderKind.CT, "pelvis"),
        ("Computed tomography lumbar spine", OrderKind.CT, "lumbar"),
        ("MRI sacrum without contrast", OrderKind.MRI, "sacrum"),
        ("MR pelvis", OrderKind.MRI, "pelvis"),
        ("MRA pelvis", OrderKind.OTHER, None),
        ("CT guided sacroiliac joint injection", OrderKind.SI_INJECTION, "si_joint"),
        ("Left SI joint steroid injection", OrderKind.SI_INJECTION, "si_joint"),
        ("Sacroiliac joint block", OrderKind.SI_INJECTION, "si_joint"),
        ("Referral to physiotherapy", OrderKind.PHYSIO, None),
        ("Physical therapy evaluation", OrderKind.PHYSIO, None),
        ("Return to running program", OrderKind.RUNNING, None),
        ("Walk-run progression", OrderKind.RUNNING, None),
        ("Graded run programme", OrderKind.RUNNING, None),
        ("Sprint drills", OrderKind.RUNNING, None),
        ("Plyometric training", OrderKind.HOPPING, None),
        ("Single-leg hop programme", OrderKind.HOPPING, None),
        ("Hopping progression", OrderKind.HOPPING, None),
        ("Jump rope", OrderKind.HOPPING, None),
        ("Running in deep water", OrderKind.OTHER, None),
        ("Underwater treadmill running", OrderKind.OTHER, None),
        ("Running, hold until cleared", OrderKind.OTHER, None),
        ("Running shoes assessment", OrderKind.OTHER, None),
        ("Running gait analysis", OrderKind.OTHER, None),
        ("CT abdo pelvis", OrderKind.OTHER, None),
        ("CT stonogram pelvis", OrderKind.OTHER, None),
        ("MRI lumbosacral spine", OrderKind.MRI, "sacrum"),
        ("MRI L-S spine", OrderKind.MRI, "sacrum"),
        ("MRI lumbar spine", OrderKind.MRI, "lumbar"),
        ("Physiotherapy: no running until cleared", OrderKind.PHYSIO, None),
        ("Physiotherapy, avoid jogging", OrderKind.PHYSIO, None),
        ("CT head", OrderKind.OTHER, None),
        ("CT abdomen and pelvis with contrast", OrderKind.OTHER, None),
        ("XR pelvis and both hips", OrderKind.XRAY, "pelvis"),
        ("Deep-water running", OrderKind.OTHER, None),
        ("Aqua jogging sessions", OrderKind.OTHER, None),
        ("Running: not yet", OrderKind.OTHER, None),
        ("Run/walk program", OrderKind.RUNNING, None),
        ("Jog/walk intervals", OrderKind.RUNNING, None),
        ("SI joint radiofrequency ablation", OrderKind.SI_INJECTION, "si_joint"),
        ("Sacroiliac prolotherapy", OrderKind.SI_INJECTION, "si_joint"),
        ("XR chest 2 views", OrderKind.OTHER, None),
        ("", OrderKind.OTHER, None),
    ],
)
def test_order_kind_from_its_name(text: str, kind: OrderKind, region: str | None) -> None:
    assert kind_from_text(text) == (kind, region)


def test_every_order_value_set_code_is_read_as_its_kind(
    orders_content: OrderContent, content: Content
) -> None:
    """Each code of cards/sacral-bsi-orders/valuesets.toml, sent with its system and a name
    that says nothing, is read as the kind its value set stands for."""
    expected = {
        "order_xray_lumbar": (OrderKind.XRAY, "lumbar"),
        "order_xray_pelvis": (OrderKind.XRAY, "pelvis"),
        "order_xray_sacrum": (OrderKind.XRAY, "sacrum"),
        "order_xray_si_joint": (OrderKind.XRAY, "si_joint"),
        "order_ct_lumbar": (OrderKind.CT, "lumbar"),
        "order_ct_pelvis": (OrderKind.CT, "pelvis"),
        "order_si_injection": (OrderKind.SI_INJECTION, "si_joint"),
        "order_physio": (OrderKind.PHYSIO, None),
    }
    toml = msgspec.toml.decode(
        (orders_content.directory / "valuesets.toml").read_bytes(), type=OrderValueSets
    )
    assert set(toml.valuesets) == set(expected)
    systems = orders_content.rule.terminology.system_uris
    facts = PatientFacts("p1")
    checked = 0
    for vs_id, specs in toml.valuesets.items():
        for spec in specs.codes:
            resource = sr("o", systems[spec.system], spec.code, "order 1")
            (order,) = read_draft_orders(bundle(resource), orders_content.terminology, facts)
            assert (order.fact.kind, order.fact.region) == expected[vs_id], (vs_id, spec.code)
            checked += 1
    assert checked >= 70


def test_cpt_mri_codes_of_card_a_are_mri_orders(orders_content: OrderContent) -> None:
    for code in ("72195", "72196", "72197", "72148", "72149", "72158"):
        resource = sr("o", CPT, code, "order")
        (order,) = read_draft_orders(
            bundle(resource), orders_content.terminology, PatientFacts("p1")
        )
        assert order.fact.kind is OrderKind.MRI, code


def test_order_value_sets_may_not_redefine_card_a_value_sets(
    tmp_path: Any, content: Content
) -> None:
    from cds_service.platform.content import ContentError

    folder = tmp_path / FOLDER
    folder.mkdir()
    source = content.directory.parent / FOLDER
    (folder / "content.toml").write_bytes((source / "content.toml").read_bytes())
    (folder / "valuesets.toml").write_text(
        '[valuesets.pain_si_joint]\ncodes = [{ system = "cpt", code = "1", mark = "U" }]\n'
    )
    with pytest.raises(ContentError, match=r"pain_si_joint.*already defined by card A"):
        load_order_content(folder, content)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ({"reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "202487003"}]}]}, True),
        ({"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M46.1"}]}]}, True),
        ({"reasonCode": [{"text": "left SI joint pain"}]}, True),
        ({"reasonCode": [{"text": "Sacroiliitis"}]}, True),
        ({"reasonReference": [{"reference": "Condition/si-1"}]}, True),
        ({"reasonReference": [{"reference": "Condition/amen-1"}]}, False),
        ({"reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}]}, False),
        ({}, False),
    ],
)  # fmt: skip
def test_si_joint_reason_by_code_text_or_referenced_condition(
    orders_content: OrderContent, content: Content, reason: dict[str, Any], expected: bool
) -> None:
    facts = facts_of(cases.maya_before_mri(), content, "maya")
    resource = sr("t1", CPT, "97161", "PT evaluation", **reason)
    (order,) = read_draft_orders(bundle(resource), orders_content.terminology, facts)
    assert order.fact.si_reason is expected


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"resourceType": "Patient"}, "context.draftOrders"),
        ({"resourceType": "Bundle", "entry": {}}, "context.draftOrders"),
        ({"resourceType": "Bundle", "entry": ["x"]}, "context.draftOrders.entry[0]"),
        (
            {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest", "code": "x"}}]},
            "context.draftOrders.entry[0].resource",
        ),
    ],
)  # fmt: skip
def test_malformed_draft_orders_name_where(
    orders_content: OrderContent, value: dict[str, Any], field: str
) -> None:
    with pytest.raises(DraftOrdersError) as raised:
        read_draft_orders(value, orders_content.terminology, PatientFacts("p1"))
    assert raised.value.field == field


def test_selected_orders_by_reference_in_the_order_named(orders_content: OrderContent) -> None:
    a, b = sr("a", CPT, "72100", "x"), sr("b", CPT, "27096", "y")
    orders = read_draft_orders(bundle(a, b), orders_content.terminology, PatientFacts("p1"))
    picked = selected(orders, ["ServiceRequest/b", "ServiceRequest/a", "ServiceRequest/b", "x"])
    assert [o.reference for o in picked] == ["ServiceRequest/b", "ServiceRequest/a"]


def test_as_mri_keeps_the_draft_and_changes_code_site_and_note() -> None:
    draft = sr(
        "x1",
        CPT,
        "72100",
        "XR L-spine",
        bodySite=[{"text": "lumbar"}],
        orderDetail=[{"text": "2 views"}],
        extension=[{"url": "http://fhir.org/argonaut/Extension/pama-rating-consult-id"}],
        note="not a list",
    )
    mri = {
        "code": {"text": "MRI of sacrum"},
        "bodySite": [{"text": "sacrum"}],
        "note": [{"text": "n"}],
    }
    changed = as_mri(draft, mri)
    assert changed["id"] == "x1"
    assert changed["code"] == {"text": "MRI of sacrum"}
    assert changed["bodySite"] == [{"text": "sacrum"}]
    assert "orderDetail" not in changed
    assert "extension" not in changed
    assert changed["note"] == [{"text": "n"}]
    assert draft["code"]["text"] == "XR L-spine"  # the EHR's resource is not changed


def order(kind: OrderKind, *, si_reason: bool = False) -> DraftOrder:
    return DraftOrder(f"ServiceRequest/{kind.value}", kind, kind.value, si_reason=si_reason)


def test_findings_for_a_suspected_runner(content: Content) -> None:
    facts = facts_of(cases.maya_before_mri(), content, "maya")
    suspicion = assess(facts, content.parameters, cases.MAYA_SUSPECT_DAY)
    assert isinstance(suspicion, Suspicion)
    reviewed = [
        order(OrderKind.XRAY),
        order(OrderKind.CT),
        order(OrderKind.SI_INJECTION),
        order(OrderKind.PHYSIO, si_reason=True),
        order(OrderKind.PHYSIO),
        order(OrderKind.RUNNING),
        order(OrderKind.OTHER),
    ]
    found = order_findings(reviewed, reviewed, suspicion, None, WINDOWS)
    # One finding per kind, each about all its orders.
    assert [(type(f), [o.kind for o in f.orders]) for f in found] == [
        (ImagingInstead, [OrderKind.XRAY, OrderKind.CT]),
        (ConsiderBsiFirst, [OrderKind.SI_INJECTION, OrderKind.PHYSIO]),
    ]
    assert found[1].orders[1].si_reason
    # An MRI covering the sacrum in the session: no imaging card; a lumbar-only MRI does not
    # cover the sacrum (7.5): the imaging card stays.
    sacrum = DraftOrder("ServiceRequest/m", OrderKind.MRI, "MRI", region="sacrum")
    lumbar = DraftOrder("ServiceRequest/l", OrderKind.MRI, "MRI L-spine", region="lumbar")
    assert [
        type(f) for f in order_findings(reviewed, [*reviewed, sacrum], suspicion, None, WINDOWS)
    ] == [ConsiderBsiFirst]
    assert [
        type(f) for f in order_findings(reviewed, [*reviewed, lumbar], suspicion, None, WINDOWS)
    ] == [
        ImagingInstead,
        ConsiderBsiFirst,
    ]
    assert order_findings(reviewed, reviewed, None, None, WINDOWS) == []


def test_mri_proposal_follows_the_pain_and_the_region_ordered(content: Content) -> None:
    facts = facts_of(cases.maya_before_mri(), content, "maya")
    suspicion = assess(facts, content.parameters, cases.MAYA_SUSPECT_DAY)
    assert isinstance(suspicion, Suspicion)
    lumbar = DraftOrder("ServiceRequest/x", OrderKind.XRAY, "XR L-spine", region="lumbar")
    pelvis = DraftOrder("ServiceRequest/y", OrderKind.XRAY, "XR pelvis", region="pelvis")
    assert ImagingInstead((pelvis,), suspicion).mri == "sacrum"
    assert ImagingInstead((pelvis, lumbar), suspicion).mri == "lumbosacral"
    buttock = dataclasses.replace(suspicion, mri="pelvis")
    assert ImagingInstead((lumbar,), buttock).mri == "pelvis"


def test_findings_for_a_confirmed_bsi(content: Content) -> None:
    facts = facts_of(cases.maya_after_mri(), content, "maya")
    confirmation = current_confirmation(facts, content.parameters, cases.MAYA_CONFIRMED_DAY)
    assert isinstance(confirmation, Confirmation)
    reviewed = [order(k) for k in OrderKind]
    injection, load = order_findings(reviewed, reviewed, None, confirmation, WINDOWS)
    assert isinstance(injection, ConfirmedInjection)
    assert [o.kind for o in injection.orders] == [OrderKind.SI_INJECTION]
    assert isinstance(load, ConfirmedLoad)
    assert [o.kind for o in load.orders] == [OrderKind.RUNNING, OrderKind.HOPPING]
    assert load.early


@pytest.mark.parametrize(
    ("kind", "day", "early"),
    [
        (OrderKind.HOPPING, 27, True),
        (OrderKind.HOPPING, 28, False),  # the plan's phase 3 allows low-level hops, once cleared
        (OrderKind.RUNNING, 28, True),
        (OrderKind.RUNNING, 55, True),
        (OrderKind.RUNNING, 56, False),  # the plan's phase 4 returns to running, once cleared
    ],
)
def test_running_and_hopping_warn_before_the_plans_phase_and_remind_after(
    content: Content, kind: OrderKind, day: int, early: bool
) -> None:
    facts = facts_of(cases.maya_after_mri(), content, "maya")
    confirmation = current_confirmation(facts, content.parameters, cases.MAYA_CONFIRMED_DAY)
    assert confirmation is not None
    on_day = dataclasses.replace(confirmation, days_since_day0=day)
    (found,) = order_findings([order(kind)], [], None, on_day, WINDOWS)
    assert isinstance(found, ConfirmedLoad)
    assert found.early is early


def test_load_windows_are_the_plans_phases(orders_content: OrderContent) -> None:
    phases = {p.name: p for p in orders_content.rule.protocol.phase}
    hops = phases["Phase 3: single-leg strength and impact preparation"]
    running = phases["Phase 4: return to running"]
    assert orders_content.windows == LoadWindows(hops.start_day, running.start_day)
    assert orders_content.windows == WINDOWS
    assert orders_content.hopping_criteria == phases["Phase 2: load on both legs"].criteria
    assert orders_content.running_criteria == hops.criteria


# ---------------------------------------------------------------------------- the wire
def test_order_select_request_keeps_unknown_context_fields() -> None:
    body = msgspec.json.encode(
        {
            "hook": "order-select",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {
                "patientId": "p1",
                "userId": "Practitioner/1",
                "selections": ["ServiceRequest/1"],
                "draftOrders": {"resourceType": "Bundle", "entry": []},
                "ehrOrderSessionId": {"id": 42},
            },
        }
    )
    request = wire.decode_request(body)
    assert request.hook == "order-select"
    assert isinstance(request.context, wire.OrderSelectContext)
    assert request.context.selections == ("ServiceRequest/1",)
    assert {k: msgspec.json.decode(v) for k, v in request.context_extra.items()} == {
        "ehrOrderSessionId": {"id": 42}
    }


def test_patient_view_request_has_its_own_context_type() -> None:
    body = msgspec.json.encode(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"patientId": "p1", "selections": ["x"]},
        }
    )
    request = wire.decode_request(body)
    assert isinstance(request.context, wire.PatientViewContext)
    assert set(request.context_extra) == {"selections"}


def test_unknown_hook_is_named() -> None:
    body = b'{"hook":"encounter-start","hookInstance":"d1577c69-dfbe-44ad-ba6d-3e05e953b2ea","context":{}}'
    with pytest.raises(wire.RequestError) as raised:
        wire.decode_request(body)
    assert raised.value.field == "hook"
    assert "encounter-start" in str(raised.value)


@pytest.mark.parametrize(
    ("record", "day"),
    [
        (cases.maya_before_mri(), cases.MAYA_SUSPECT_DAY),
        (cases.maya_after_mri(), cases.MAYA_CONFIRMED_DAY),
        (cases.maya_after_mri(), date(2026, 6, 1)),  # Day 0 too long ago for a plan
        (cases.daniel(), cases.MAYA_SUSPECT_DAY),
    ],
)
def test_assess_with_confirmation_is_assess_and_current_confirmation_at_once(
    content: Content, record: list[dict[str, Any]], day: date
) -> None:
    from cds_service.clinical.sacral_bsi import assess_with_confirmation

    (patient,) = [r for r in record if r["resourceType"] == "Patient"]
    facts = facts_of(record, content, patient["id"])
    assert assess_with_confirmation(facts, content.parameters, day) == (
        assess(facts, content.parameters, day),
        current_confirmation(facts, content.parameters, day),
    )
