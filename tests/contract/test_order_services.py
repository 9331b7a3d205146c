"""The order services (issue 10) through HTTP, with the record in prefetch: order-select and
order-sign, each order kind positive and negative, the suggestions as the spec and the CDS
Hooks Sandbox's PAMA tab need them, errors, feedback and suppression."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from cds_service.main import create_app
from tests import cases
from tests.builders import coding, concept, condition, hook_request
from tests.conftest import ClientFactory, at, captured_log, settings_for_tests

pytestmark = pytest.mark.anyio
SELECT_URL = "/cds-services/sacral-bsi-order-select"
SIGN_URL = "/cds-services/sacral-bsi-order-sign"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SI_PAIN = {"system": SNOMED, "code": "202487003", "display": "Sacroiliac joint pain (finding)"}
LOW_BACK_PAIN = {"system": SNOMED, "code": "279039007", "display": "Low back pain (finding)"}


def draft(
    sid: str,
    system: str | None,
    code: str | None,
    display: str,
    *,
    reasons: tuple[dict[str, str], ...] = (SI_PAIN,),
    status: str = "draft",
    pid: str = "maya",
    **extra: Any,
) -> dict[str, Any]:
    coding = {"system": system, "code": code, "display": display} if code else {}
    return {
        "resourceType": "ServiceRequest",
        "id": sid,
        "status": status,
        "intent": "plan",
        "code": {"coding": [coding], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "reasonCode": [{"coding": [r], "text": r["display"]} for r in reasons],
        **extra,
    }


def order_request(
    record: list[dict[str, Any]],
    orders: list[dict[str, Any]],
    *,
    hook: str = "order-select",
    selections: list[str] | None = None,
    pid: str = "maya",
) -> dict[str, Any]:
    body = hook_request(record, pid=pid, hook=hook)
    # As the PAMA tab sends it: a Bundle without a type.
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "entry": [{"resource": o} for o in orders],
    }
    if hook == "order-select":
        body["context"]["selections"] = (
            selections
            if selections is not None
            else [f"ServiceRequest/{o['id']}" for o in orders[:1]]
        )
    return body


async def cards_for(
    client_at: ClientFactory,
    body: dict[str, Any],
    day: date = cases.MAYA_SUSPECT_DAY,
    url: str | None = None,
) -> list[dict[str, Any]]:
    url = url or (SELECT_URL if body["hook"] == "order-select" else SIGN_URL)
    response = await client_at(day).post(url, json=body)
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


# Every imaging order kind the issue names, in each code system a value set holds for it, and
# the MRI the card proposes instead: lumbar imaging -> MRI of the lumbar spine and sacrum
# (SNOMED CT 433141005, brief 8.1b V; L5 spondylolysis, 14.5), other -> MRI of the sacrum
# (388321000119101, Maya's pain is SI-joint pain, not buttock pain).
SACRUM = ("sacrum", {"system": SNOMED, "code": "388321000119101", "display": "MRI of sacrum"})
LUMBOSACRAL = (
    "lumbar spine and sacrum",
    {
        "system": SNOMED,
        "code": "433141005",
        "display": "Magnetic resonance imaging of lumbar and sacral spine",
    },
)
XRAY_OR_CT = [
    (CPT, "72100", "Radiologic examination, spine, lumbosacral; 2 or 3 views", "X-ray", LUMBOSACRAL),
    (CPT, "72110", "X-ray lumbar spine, 4 views", "X-ray", LUMBOSACRAL),
    (CPT, "72170", "Radiologic examination, pelvis; 1 or 2 views", "X-ray", SACRUM),
    (CPT, "72200", "Radiologic examination, sacroiliac joints; less than 3 views", "X-ray", SACRUM),
    (CPT, "72202", "Radiologic examination, sacroiliac joints; 3 or more views", "X-ray", SACRUM),
    (CPT, "72220", "Radiologic examination, sacrum and coccyx", "X-ray", SACRUM),
    (CPT, "72131", "Computed tomography, lumbar spine; without contrast material", "CT", LUMBOSACRAL),
    (CPT, "72133", "CT lumbar spine without then with contrast", "CT", LUMBOSACRAL),
    (CPT, "72192", "Computed tomography, pelvis; without contrast material", "CT", SACRUM),
    (CPT, "72194", "CT pelvis without then with contrast", "CT", SACRUM),
    ("urn:oid:2.16.840.1.113883.6.12", "72170", "Pelvis 2 views", "X-ray", SACRUM),
    (LOINC, "28561-9", "XR Pelvis Views", "X-ray", SACRUM),
    (LOINC, "24900-3", "XR Sacroiliac Joint Views", "X-ray", SACRUM),
    (LOINC, "30615-9", "CT Pelvis WO contrast", "CT", SACRUM),
    (SNOMED, "783627007", "Plain X-ray of sacroiliac joint", "X-ray", SACRUM),
    (SNOMED, "22791004", "Plain X-ray of lumbar and sacral spine", "X-ray", LUMBOSACRAL),
    (SNOMED, "395771000119107", "Computed tomography of pelvis without contrast", "CT", SACRUM),
    # A local code the service does not know: read by its name.
    ("urn:oid:1.2.3.4.local", "IMG123", "XR LUMBAR SPINE 2-3 VIEWS", "X-ray", LUMBOSACRAL),
    ("urn:oid:1.2.3.4.local", "IMG456", "CT pelvis w/o contrast", "CT", SACRUM),
]  # fmt: skip


@pytest.mark.parametrize(("system", "code", "display", "study", "mri"), XRAY_OR_CT)
async def test_orders_xray_or_ct_for_a_suspected_runner_suggests_mri_instead(
    client_at: ClientFactory,
    system: str,
    code: str,
    display: str,
    study: str,
    mri: tuple[str, dict[str, str]],
) -> None:
    region, mri_coding = mri
    order = draft("example-request-id", system, code, display)
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order]))
    assert card["summary"] == (
        f"Runner, left SI-joint pain: {study} is often normal early in sacral stress injury; "
        f"MRI of {region} is the test."
    )
    assert card["indicator"] == "warning"  # Maya has 3 counted risk factors
    assert "normal early" in card["detail"]
    assert "Runner:** Exercise activity = Running" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"
    update, replace = card["suggestions"]
    assert update["label"] == f"Change this order to an MRI of the {region}"
    assert update["isRecommended"] is True
    (action,) = update["actions"]
    assert action["type"] == "update"
    changed = action["resource"]
    # The same draft (id, status, intent, subject, reasons), now the MRI.
    assert changed["id"] == "example-request-id"
    assert (changed["status"], changed["intent"]) == ("draft", "plan")
    assert changed["subject"] == order["subject"]
    assert changed["reasonCode"] == order["reasonCode"]
    assert changed["code"]["coding"] == [mri_coding]
    delete, create = replace["actions"]
    assert delete == {
        "type": "delete",
        "description": f"Remove the draft order {display}.",
        "resourceId": "ServiceRequest/example-request-id",
    }
    assert create["type"] == "create"
    assert "id" not in create["resource"]
    assert create["resource"]["code"] == changed["code"]
    assert create["resource"]["intent"] == "plan"
    assert create["resource"]["reasonCode"] == order["reasonCode"]
    # Also linked to the conditions the card stands on.
    assert {"reference": "Condition/si-1"} in create["resource"]["reasonReference"]


async def test_orders_buttock_pain_turns_the_xray_into_an_mri_of_the_pelvis(
    client_at: ClientFactory,
) -> None:
    buttock = condition(
        "b1",
        coding(SNOMED, "279043006", "Buttock pain"),
        onset="2025-09-10",
        body_sites=[concept(coding(SNOMED, "7771000", "Left"))],
    )
    record = cases.runner_with(buttock)
    order = draft("x1", CPT, "72170", "X-ray pelvis", pid="p1")
    (card,) = await cards_for(client_at, order_request(record, [order], pid="p1"))
    assert "MRI of pelvis is the test" in card["summary"]
    changed = card["suggestions"][0]["actions"][0]["resource"]
    assert changed["code"] == {"text": "MRI of pelvis (including sacrum and both femoral necks)"}
    assert changed["bodySite"][0]["coding"][0]["code"] == "12921003"


async def test_orders_update_drops_the_xray_details_and_any_pama_rating_but_keeps_the_rest(
    client_at: ClientFactory,
) -> None:
    pama = {
        "url": "http://fhir.org/argonaut/Extension/pama-rating",
        "valueCodeableConcept": {"coding": [{"code": "appropriate"}]},
    }
    own = {"url": "http://example.org/ehr-order-set", "valueString": "back pain set"}
    order = draft(
        "x1",
        CPT,
        "72100",
        "XR L-spine",
        extension=[pama, own],
        orderDetail=[{"text": "AP and lateral"}],
        note=[{"text": "please expedite"}],
        priority="urgent",
    )
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order]))
    changed = card["suggestions"][0]["actions"][0]["resource"]
    assert changed["extension"] == [own]
    assert "orderDetail" not in changed
    assert changed["priority"] == "urgent"
    assert changed["note"][0] == {"text": "please expedite"}
    assert changed["note"][1]["text"].startswith("Changed from XR L-spine")


@pytest.mark.parametrize(
    ("order", "why"),
    [
        (draft("m1", CPT, "72195", "MRI pelvis without contrast"), "an MRI is the right test"),
        (draft("m2", LOINC, "24867-4", "MR Pelvis"), "an MRI is the right test"),
        (draft("m3", SNOMED, "388321000119101", "MRI of sacrum"), "an MRI is the right test"),
        (draft("m4", CPT, "72148", "MRI lumbar spine"), "an MRI is the right test"),
        (draft("h1", CPT, "70450", "CT head without contrast"), "not an order of the region"),
        (draft("c1", LOINC, "36643-5", "XR Chest 2 Views"), "not an order of the region"),
        (draft("a1", None, None, "MRA pelvis"), "angiography is not the MRI"),
        # The PAMA tab's first call: nothing chosen yet.
        (draft("e1", None, None, "", reasons=()), "an empty order"),
        (draft("p1", CPT, "97161", "PT evaluation", reasons=(LOW_BACK_PAIN,)), "PT, no SI reason"),
    ],
)
async def test_orders_no_card_for_orders_that_are_not_a_problem(
    client_at: ClientFactory, order: dict[str, Any], why: str
) -> None:
    if not order["code"]["text"]:
        order["code"] = {"coding": [{}]}
        order.pop("reasonCode")
    assert await cards_for(client_at, order_request(cases.maya_before_mri(), [order])) == [], why


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
async def test_orders_no_card_for_a_patient_card_a_would_not_suspect(
    client_at: ClientFactory, hook: str
) -> None:
    order = draft("x1", CPT, "72100", "XR lumbar spine", pid="daniel")
    body = order_request(cases.daniel(), [order], hook=hook, pid="daniel")
    assert await cards_for(client_at, body) == []


async def test_orders_no_imaging_card_when_an_mri_is_already_ordered_or_in_the_session(
    client_at: ClientFactory,
) -> None:
    xray = draft("x1", CPT, "72170", "X-ray pelvis")
    mri = draft("m1", CPT, "72195", "MRI pelvis")
    # In the same ordering session (the X-ray selected, the MRI already drafted).
    body = order_request(cases.maya_before_mri(), [xray, mri])
    assert await cards_for(client_at, body) == []
    # In the chart already (an open MRI order since the pain began: card A says so too).
    ordered = {
        **draft("m0", SNOMED, "388321000119101", "MRI of sacrum", status="active"),
        "authoredOn": "2025-09-20",
    }
    body = order_request([*cases.maya_before_mri(), ordered], [xray])
    assert await cards_for(client_at, body) == []


@pytest.mark.parametrize(
    ("order", "treatment"),
    [
        (draft("i1", CPT, "27096", "SI joint injection with image guidance"), "an SI-joint injection"),
        (draft("i2", LOINC, "24901-1", "CT Guidance for injection of Sacroiliac Joint"), "an SI"),
        (draft("i3", None, None, "Left sacroiliac joint steroid injection"), "an SI-joint"),
        (draft("t1", CPT, "97161", "PT evaluation"), "physiotherapy for SI-joint pain"),
        (draft("t2", SNOMED, "91251008", "Physiotherapy", reasons=(
            {"system": SNOMED, "code": "55146009", "display": "Sacroiliitis"},)), "physiotherapy"),
        (draft("t3", SNOMED, "308447003", "Referral to physiotherapist", reasons=(
            {"system": ICD10CM, "code": "M46.1", "display": "Sacroiliitis NEC"},)), "physio"),
    ],
)  # fmt: skip
async def test_orders_si_joint_treatment_for_a_suspected_runner_says_consider_bsi_first(
    client_at: ClientFactory, order: dict[str, Any], treatment: str
) -> None:
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order]))
    assert card["summary"] == (
        "Runner, left SI-joint pain: consider sacral stress injury before treating as "
        "SI-joint pain."
    )
    assert f"**Why this card:** {treatment}" in card["detail"]
    (suggestion,) = card["suggestions"]
    (create,) = suggestion["actions"]
    assert create["type"] == "create"
    assert create["resource"]["code"]["text"] == "MRI of sacrum"


async def test_orders_physiotherapy_whose_reason_references_the_si_condition_counts(
    client_at: ClientFactory,
) -> None:
    order = draft("t1", CPT, "97161", "PT evaluation", reasons=())
    order["reasonReference"] = [{"reference": "Condition/si-1"}]
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order]))
    assert "physiotherapy for SI-joint pain" in card["detail"]


@pytest.mark.parametrize(
    ("order", "summary"),
    [
        (
            draft("i1", CPT, "27096", "SI joint injection"),
            "Confirmed sacral stress injury: an SI-joint injection is not its treatment.",
        ),
        (
            draft("r1", None, None, "Return to running program", reasons=()),
            "Confirmed sacral stress injury: no running, hopping or jumping yet.",
        ),
        (
            draft("r2", CPT, "97161", "PT evaluation - plyometric and jump training", reasons=()),
            "Confirmed sacral stress injury: no running, hopping or jumping yet.",
        ),
    ],
)
async def test_orders_confirmed_bsi_warns_against_injection_or_running_programme(
    client_at: ClientFactory, order: dict[str, Any], summary: str
) -> None:
    body = order_request(cases.maya_after_mri(), [order], hook="order-sign")
    (card,) = await cards_for(client_at, body, cases.MAYA_CONFIRMED_DAY)
    assert card["indicator"] == "warning"
    assert card["summary"] == summary
    assert "Day 0 2025-10-03." in card["detail"]


async def test_orders_running_programme_warns_before_the_plans_phase_then_reminds(
    client_at: ClientFactory,
) -> None:
    """Day 0 2025-10-03; the plan's phase 3 (low-level hops) starts 28 days later, its phase 4
    (running) 56 days later (2025-11-28). Before: a warning. From then: an info card, because
    the restriction ends when the clinician clears it, never on a date (14.4). The injection
    warning stays."""
    running = draft("r1", None, None, "Return to running program", reasons=())
    injection = draft("i1", CPT, "27096", "SI joint injection")
    body = order_request(cases.maya_after_mri(), [running, injection], hook="order-sign")
    before = await cards_for(client_at, body, date(2025, 11, 27))
    assert [(c["indicator"], c["summary"].split(": ")[1]) for c in before] == [
        ("warning", "an SI-joint injection is not its treatment."),
        ("warning", "no running, hopping or jumping yet."),
    ]
    load = before[1]["detail"]
    assert "**running** from phase 4 (2025-11-28 at the earliest), once: Pain-free single-leg" in (
        load
    )
    assert "**low-level hops** from phase 3 (2025-10-31 at the earliest), once: Double-leg" in load
    on_the_day = await cards_for(client_at, body, date(2025, 11, 28))
    assert [(c["indicator"], c["summary"].split(": ")[1]) for c in on_the_day] == [
        ("warning", "an SI-joint injection is not its treatment."),
        ("info", "running and hopping only once cleared."),
    ]


async def test_orders_hopping_is_early_before_phase_3_only(client_at: ClientFactory) -> None:
    hops = draft("h1", None, None, "Single-leg hop programme", reasons=())
    body = order_request(cases.maya_after_mri(), [hops], hook="order-sign")
    (before,) = await cards_for(client_at, body, date(2025, 10, 30))
    assert before["indicator"] == "warning"
    (after,) = await cards_for(client_at, body, date(2025, 10, 31))
    assert after["indicator"] == "info"


@pytest.mark.parametrize(
    "order",
    [
        draft("x1", CPT, "72170", "X-ray pelvis"),
        draft("m1", CPT, "72195", "MRI pelvis"),
        draft("t1", CPT, "97161", "PT evaluation: no running until cleared", reasons=()),
    ],
)
async def test_orders_confirmed_bsi_has_no_card_for_imaging_or_plain_physiotherapy(
    client_at: ClientFactory, order: dict[str, Any]
) -> None:
    body = order_request(cases.maya_after_mri(), [order], hook="order-sign")
    assert await cards_for(client_at, body, cases.MAYA_CONFIRMED_DAY) == []


async def test_order_select_reviews_only_the_selected_orders(client_at: ClientFactory) -> None:
    injection = draft("i1", CPT, "27096", "SI joint injection")
    physio = draft("t1", CPT, "97161", "PT evaluation")
    body = order_request(
        cases.maya_before_mri(), [injection, physio], selections=["ServiceRequest/t1"]
    )
    (card,) = await cards_for(client_at, body)
    assert 'physiotherapy for SI-joint pain ("PT evaluation")' in card["detail"]
    body["context"]["selections"] = ["ServiceRequest/not-in-the-bundle"]
    assert await cards_for(client_at, body) == []


async def test_order_sign_reviews_every_order_being_signed_and_skips_finished_ones(
    client_at: ClientFactory,
) -> None:
    orders = [
        draft("x1", CPT, "72100", "XR lumbar spine"),
        draft("i1", CPT, "27096", "SI joint injection", status="active"),  # re-signed
        draft("c1", CPT, "72192", "CT pelvis", status="completed"),
        draft("r1", CPT, "72170", "X-ray pelvis", status="revoked"),
        {"resourceType": "MedicationRequest", "id": "med1", "status": "draft"},
    ]
    cards = await cards_for(
        client_at, order_request(cases.maya_before_mri(), orders, hook="order-sign")
    )
    assert [c["summary"].split(":")[1].strip()[:25] for c in cards] == [
        "X-ray is often normal ear",
        "consider sacral stress in",
    ]
    assert cards[0]["uuid"] != cards[1]["uuid"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["context"].pop("selections"), "context.selections"),
        (lambda b: b["context"].update(selections=[]), "context.selections"),
        (lambda b: b["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda b: b["context"].update(draftOrders=[]), "context.draftOrders"),
        (lambda b: b["context"].update(draftOrders={"resourceType": "Patient"}), "context.draftOrders"),
        (lambda b: b["context"]["draftOrders"]["entry"].append({}), "context.draftOrders.entry[1]"),
        (
            lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(code=7),
            "context.draftOrders.entry[0].resource",
        ),
        (lambda b: b.update(hook="patient-view"), "hook"),
        (lambda b: b.update(hook="order-sign"), "hook"),
        (lambda b: b.update(hook="encounter-start"), "hook"),
    ],
)  # fmt: skip
async def test_orders_request_not_matching_the_spec_is_400_naming_the_field(
    client_at: ClientFactory, mutate: Any, field: str
) -> None:
    body = order_request(cases.maya_before_mri(), [draft("x1", CPT, "72100", "XR L-spine")])
    mutate(body)
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SELECT_URL, json=body)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [field], issue


async def test_patient_view_service_refuses_an_order_select_request_naming_the_hook(
    client_at: ClientFactory,
) -> None:
    body = order_request(cases.maya_before_mri(), [draft("x1", CPT, "72100", "XR L-spine")])
    response = await client_at().post("/cds-services/sacral-bsi", json=body)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["hook"]
    assert issue["details"]["text"] == (
        "Service 'sacral-bsi' answers the 'patient-view' hook, not 'order-select'."
    )


# ---------------------------------------------------------------------------- the PAMA tab
def pama_request(pid: str, record: list[dict[str, Any]], code: str, display: str) -> dict[str, Any]:
    """Exactly what the CDS Hooks Sandbox's PAMA Imaging tab sends (src/components/Pama/pama.jsx,
    src/retrieve-data-helpers/service-exchange.js): no encounterId, the same request id always,
    intent plan, a Bundle without type; the prefetch the sandbox fills from its FHIR server."""
    body = hook_request(record, pid=pid, hook="order-select")
    body["context"] = {
        "patientId": pid,
        "userId": "Practitioner/COREPRACTITIONER1",
        "selections": ["ServiceRequest/example-request-id"],
        "draftOrders": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "example-request-id",
                        "status": "draft",
                        "intent": "plan",
                        "code": {
                            "coding": [{"system": CPT, "code": code, "display": display}],
                            "text": display,
                        },
                        "subject": {"reference": f"Patient/{pid}"},
                        "reasonCode": [{"coding": [SI_PAIN], "text": SI_PAIN["display"]}],
                    }
                }
            ],
        },
    }
    return body


async def test_pama_tab_ct_pelvis_card_has_what_the_sandbox_renders_and_applies(
    client_at: ClientFactory,
) -> None:
    body = pama_request(
        "maya",
        cases.maya_before_mri(),
        "72192",
        "Computed tomography, pelvis; without contrast material",
    )
    (card,) = await cards_for(client_at, body)
    # card-list.jsx: summary, indicator, source.label, detail (markdown), a uuid for Dismiss,
    # every suggestion with a label (and a uuid for feedback).
    assert card["uuid"]
    assert card["source"]["label"]
    assert card["detail"]
    assert all(s["label"] and s["uuid"] for s in card["suggestions"])
    # dispatchSuggestedUpdates applies update actions: resource.code.coding[0] and
    # resource.reasonCode[*].coding[0] must be there.
    update = card["suggestions"][0]["actions"][0]
    assert update["type"] == "update"
    assert update["resource"]["code"]["coding"][0]["code"] == "388321000119101"
    assert update["resource"]["reasonCode"][0]["coding"][0] == SI_PAIN
    # No PAMA appropriate-use rating: this service does not rate appropriate use (README).
    assert "extension" not in update["resource"]


# ---------------------------------------------------------------------------- feedback
def client_with_ledger(tmp_path: Any, day: date) -> httpx.AsyncClient:
    url = f"sqlite:///{tmp_path}/ledger.db"
    app = create_app(settings_for_tests(database_url=url), clock=at(day))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test")


async def test_orders_override_snoozes_that_order_card_only(tmp_path: Any) -> None:
    xray = draft("x1", CPT, "72100", "XR lumbar spine")
    injection = draft("i1", CPT, "27096", "SI joint injection")
    async with client_with_ledger(tmp_path, cases.MAYA_SUSPECT_DAY) as client:
        first = await client.post(SELECT_URL, json=order_request(cases.maya_before_mri(), [xray]))
        (card,) = first.json()["cards"]
        reason = card["overrideReasons"][1]
        feedback = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2025-09-30T11:55:00Z",
                    "overrideReason": {"reason": reason},
                }
            ]
        }
        stored = await client.post(SELECT_URL + "/feedback", json=feedback)
        assert stored.status_code == 200
        ledger = client._transport.app.state.collaborators.ledger  # type: ignore[attr-defined]
        (kept,) = ledger.feedback_for(card["uuid"])
        assert kept.known_card is True
        assert kept.override_code == "other-question"
        # The same X-ray again: quiet, at selection and at signing.
        again = await client.post(SELECT_URL, json=order_request(cases.maya_before_mri(), [xray]))
        assert again.json() == {"cards": []}
        signing = order_request(cases.maya_before_mri(), [xray], hook="order-sign")
        assert (await client.post(SIGN_URL, json=signing)).json() == {"cards": []}
        # The injection card stands on other evidence (another order kind): it still shows.
        body = order_request(cases.maya_before_mri(), [injection])
        assert len((await client.post(SELECT_URL, json=body)).json()["cards"]) == 1
        # Card A in the chart is not snoozed by the order card's override.
        view = hook_request(cases.maya_before_mri(), pid="maya")
        assert len((await client.post("/cds-services/sacral-bsi", json=view)).json()["cards"]) == 1
    # A month and a day later the snooze is over.
    later = date(2025, 10, 31)
    async with client_with_ledger(tmp_path, later) as client:
        again = await client.post(SELECT_URL, json=order_request(cases.maya_before_mri(), [xray]))
        assert len(again.json()["cards"]) == 1


async def test_orders_card_a_override_does_not_silence_the_order_card(tmp_path: Any) -> None:
    async with client_with_ledger(tmp_path, cases.MAYA_SUSPECT_DAY) as client:
        view = hook_request(cases.maya_before_mri(), pid="maya")
        (card,) = (await client.post("/cds-services/sacral-bsi", json=view)).json()["cards"]
        feedback = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2025-09-30T11:55:00Z",
                }
            ]
        }
        assert (
            await client.post("/cds-services/sacral-bsi/feedback", json=feedback)
        ).status_code == 200
        assert (await client.post("/cds-services/sacral-bsi", json=view)).json() == {"cards": []}
        xray = draft("x1", CPT, "72100", "XR lumbar spine")
        body = order_request(cases.maya_before_mri(), [xray])
        assert len((await client.post(SELECT_URL, json=body)).json()["cards"]) == 1


async def test_orders_nothing_is_fetched_for_an_order_the_service_does_not_read(
    client_at: ClientFactory,
) -> None:
    """The PAMA tab calls on every change: an order of no interest is answered from the
    request alone, without the record (no prefetch and no fhirServer here: no 412)."""
    head = draft("h1", CPT, "70450", "CT head without contrast")
    body = order_request(cases.maya_before_mri(), [head])
    body.pop("prefetch")
    assert await cards_for(client_at, body) == []
    # An order it reads needs the record: without prefetch or fhirServer, a 412 says so.
    body = order_request(cases.maya_before_mri(), [draft("x1", CPT, "72100", "XR L-spine")])
    body.pop("prefetch")
    response = await client_at().post(SELECT_URL, json=body)
    assert response.status_code == 412
    # A malformed draftOrders is a 400 before anything is fetched.
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [7]}
    response = await client_at().post(SELECT_URL, json=body)
    assert response.status_code == 400


async def test_order_sign_several_xrays_get_one_card_and_one_mri(
    client_at: ClientFactory,
) -> None:
    orders = [
        draft("x1", CPT, "72100", "XR L-spine"),
        draft("x2", CPT, "72170", "XR pelvis"),
        draft("x3", CPT, "72200", "XR SI joints"),
    ]
    body = order_request(cases.maya_before_mri(), orders, hook="order-sign")
    (card,) = await cards_for(client_at, body)
    assert '"XR L-spine", "XR pelvis", "XR SI joints" are being ordered' in card["detail"]
    update, replace = card["suggestions"]
    assert update["label"] == "Change these orders to one MRI of the lumbar spine and sacrum"
    assert [(a["type"], a.get("resourceId")) for a in update["actions"]] == [
        ("update", None),
        ("delete", "ServiceRequest/x2"),
        ("delete", "ServiceRequest/x3"),
    ]
    assert update["actions"][0]["resource"]["id"] == "x1"
    assert [(a["type"], a.get("resourceId")) for a in replace["actions"]] == [
        ("delete", "ServiceRequest/x1"),
        ("delete", "ServiceRequest/x2"),
        ("delete", "ServiceRequest/x3"),
        ("create", None),
    ]


async def test_orders_a_draft_without_an_id_is_named_by_its_full_url(
    client_at: ClientFactory,
) -> None:
    order = draft("x1", CPT, "72170", "XR pelvis")
    del order["id"]
    body = order_request(cases.maya_before_mri(), [order], selections=["urn:uuid:5f3c"])
    body["context"]["draftOrders"]["entry"][0]["fullUrl"] = "urn:uuid:5f3c"
    (card,) = await cards_for(client_at, body)
    # It cannot be updated or deleted by reference: the one suggestion adds the MRI.
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Add a draft MRI of the sacrum"
    assert [a["type"] for a in suggestion["actions"]] == ["create"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
async def test_orders_long_ids_as_some_ehrs_send_them_work_in_both_hooks(
    client_at: ClientFactory, hook: str
) -> None:
    long_id = "e" + "Ab3-" * 40  # 161 characters: longer than R4's 64, as the spec's examples
    order = draft(long_id, CPT, "72170", "XR pelvis")
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order], hook=hook))
    assert card["suggestions"][0]["actions"][0]["resource"]["id"] == long_id


async def test_orders_an_id_that_is_not_a_fhir_id_is_never_echoed_as_a_reference(
    client_at: ClientFactory,
) -> None:
    order = draft("../../Patient/other", CPT, "72170", "XR pelvis")
    body = order_request(cases.maya_before_mri(), [order], hook="order-sign")
    (card,) = await cards_for(client_at, body)
    (suggestion,) = card["suggestions"]
    assert [a["type"] for a in suggestion["actions"]] == ["create"]


async def test_orders_for_another_patient_are_not_reviewed(client_at: ClientFactory) -> None:
    order = draft("x1", CPT, "72170", "XR pelvis", pid="daniel")
    body = order_request(cases.maya_before_mri(), [order], hook="order-sign")
    assert await cards_for(client_at, body) == []


async def test_orders_deeply_nested_draft_is_answered_not_a_500(client_at: ClientFactory) -> None:
    nested: dict[str, Any] = {"a": 1}
    for _ in range(900):
        nested = {"a": nested}
    order = draft("x1", CPT, "72170", "XR pelvis", foo=nested)
    body = order_request(cases.maya_before_mri(), [order])
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SELECT_URL, content=json_bytes(body))
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert len(response.json()["cards"]) == 1


def json_bytes(value: Any) -> bytes:
    import msgspec

    return msgspec.json.encode(value)


async def test_orders_too_many_draft_orders_is_a_400(client_at: ClientFactory) -> None:
    orders = [draft(f"o{n}", None, None, "Blood count") for n in range(501)]
    body = order_request(cases.maya_before_mri(), orders)
    response = await client_at().post(SELECT_URL, json=body)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["context.draftOrders"]
    assert "at most 500" in issue["details"]["text"]


async def test_orders_order_name_is_cleaned_and_bounded_in_the_mri_note(
    client_at: ClientFactory,
) -> None:
    order = draft("x1", CPT, "72170", "XR pelvis\x00\x07 **bold** " + "x" * 5000)
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order]))
    note = card["suggestions"][0]["actions"][0]["resource"]["note"][-1]["text"]
    assert "\x00" not in note
    assert "\x07" not in note
    assert len(note) < 500
    assert "\x00" not in card["detail"]


async def test_orders_pregnant_runner_mri_order_says_without_contrast(
    client_at: ClientFactory,
) -> None:
    pregnancy = condition("preg", coding(SNOMED, "77386006", "Pregnancy"), onset="2025-08-01")
    pregnancy["subject"] = {"reference": "Patient/maya"}
    record = [*cases.maya_before_mri(), pregnancy]
    for order in (draft("x1", CPT, "72170", "XR pelvis"), draft("i1", CPT, "27096", "SI inj")):
        (card,) = await cards_for(client_at, order_request(record, [order]))
        for suggestion in card["suggestions"]:
            mri = next(a["resource"] for a in suggestion["actions"] if "resource" in a)
            assert mri["note"][-1]["text"].endswith("Pregnancy recorded: MRI without contrast.")


async def test_orders_injection_card_offers_no_mri_when_one_is_in_the_session(
    client_at: ClientFactory,
) -> None:
    injection = draft("i1", CPT, "27096", "SI joint injection")
    mri = draft("m1", CPT, "72195", "MRI pelvis")
    body = order_request(cases.maya_before_mri(), [injection, mri], hook="order-sign")
    (card,) = await cards_for(client_at, body)
    assert card["summary"].endswith(
        "consider sacral stress injury before treating as SI-joint pain."
    )
    assert "suggestions" not in card


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        ("Run/walk program", True),
        ("Jog/walk intervals", True),
        ("Deep-water running", False),
        ("Aqua jogging", False),
        ("Running: not yet", False),
    ],
)
async def test_orders_running_programme_words(
    client_at: ClientFactory, text: str, warned: bool
) -> None:
    order = draft("r1", None, None, text, reasons=())
    body = order_request(cases.maya_after_mri(), [order], hook="order-sign")
    cards = await cards_for(client_at, body, cases.MAYA_CONFIRMED_DAY)
    assert len(cards) == int(warned)


async def test_orders_ct_of_abdomen_and_pelvis_is_not_a_study_of_the_sacrum(
    client_at: ClientFactory,
) -> None:
    order = draft("c1", "urn:oid:1.2.3", "CTAP1", "CT abdomen and pelvis with contrast")
    assert await cards_for(client_at, order_request(cases.maya_before_mri(), [order])) == []


async def test_order_sign_override_of_one_card_keeps_the_other(tmp_path: Any) -> None:
    """Each card of a response is recorded with its own kind: overriding the injection card
    snoozes it, not the X-ray card of the same response."""
    orders = [draft("x1", CPT, "72170", "XR pelvis"), draft("i1", CPT, "27096", "SI injection")]
    body = order_request(cases.maya_before_mri(), orders, hook="order-sign")
    async with client_with_ledger(tmp_path, cases.MAYA_SUSPECT_DAY) as client:
        imaging, injection = (await client.post(SIGN_URL, json=body)).json()["cards"]
        assert "X-ray" in imaging["summary"]
        feedback = {
            "feedback": [
                {
                    "card": injection["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2025-09-30T11:55:00Z",
                }
            ]
        }
        assert (await client.post(SIGN_URL + "/feedback", json=feedback)).status_code == 200
        (again,) = (await client.post(SIGN_URL, json=body)).json()["cards"]
        assert again["summary"] == imaging["summary"]


async def test_orders_log_lines_hold_no_patient_data(client_at: ClientFactory) -> None:
    import json as jsonlib

    record = cases.maya_before_mri()
    record[0]["name"] = [{"family": "Quintero-Lindqvist", "given": ["Maya"]}]
    with captured_log() as stream:
        client = client_at(cases.MAYA_SUSPECT_DAY)
        for order in (
            draft("x1", CPT, "72170", "XR pelvis for Maya Quintero-Lindqvist 2005-03-01"),
            draft("h1", CPT, "70450", "CT head"),
        ):
            await client.post(SELECT_URL, json=order_request(record, [order]))
        bad = order_request(record, [draft("x1", CPT, "72170", "XR pelvis")])
        bad["context"]["draftOrders"]["entry"][0]["resource"]["code"] = "maya 2005-03-01"
        await client.post(SELECT_URL, json=bad)
    text = stream.getvalue()
    lines = [jsonlib.loads(line) for line in text.splitlines()]
    calls = [line for line in lines if line["event"] == "hook_call"]
    assert [(c["status"], c["outcome"]) for c in calls] == [
        (200, "order_imaging"),
        (200, "no_order_of_interest"),
        (400, "bad_request"),
    ]
    for secret in ("maya", "Maya", "Quintero", "2005-03-01", "si-1"):
        assert secret not in text, secret


async def test_orders_adolescent_gets_an_mri_of_the_lumbar_spine_and_sacrum(
    client_at: ClientFactory,
) -> None:
    """Under 18, a sacrum-only MRI may miss L5 spondylolysis (14.5): whatever was ordered, the
    MRI offered covers the lumbar spine and sacrum, and asks for the whole sacrum."""
    record = [
        {**r, "birthDate": "2009-04-01"} if r["resourceType"] == "Patient" else r
        for r in cases.maya_before_mri()
    ]
    for order in (draft("x1", CPT, "72170", "XR pelvis"), draft("i1", CPT, "27096", "SI inj")):
        (card,) = await cards_for(client_at, order_request(record, [order]))
        mri = next(a["resource"] for a in card["suggestions"][0]["actions"] if "resource" in a)
        assert mri["code"]["coding"][0]["code"] == "433141005"
        assert "whole sacrum and both SI joints" in mri["note"][-1]["text"]


async def test_orders_one_mri_per_answer_imaging_and_injection(client_at: ClientFactory) -> None:
    orders = [draft("x1", CPT, "72170", "XR pelvis"), draft("i1", CPT, "27096", "SI injection")]
    body = order_request(cases.maya_before_mri(), orders, hook="order-sign")
    imaging, injection = await cards_for(client_at, body)
    assert imaging["suggestions"]
    assert "suggestions" not in injection  # the imaging card's MRI is the one


async def test_orders_repeated_id_is_acted_on_once(client_at: ClientFactory) -> None:
    orders = [draft("1", CPT, "72170", "XR pelvis"), draft("1", CPT, "72100", "XR L-spine")]
    body = order_request(cases.maya_before_mri(), orders, hook="order-sign")
    (card,) = await cards_for(client_at, body)
    update, replace = card["suggestions"]
    assert update["label"] == "Change this order to an MRI of the lumbar spine and sacrum"
    assert [(a["type"], a.get("resourceId")) for a in update["actions"]] == [("update", None)]
    assert [(a["type"], a.get("resourceId")) for a in replace["actions"]] == [
        ("delete", "ServiceRequest/1"),
        ("create", None),
    ]


async def test_orders_update_drops_what_describes_the_xray_and_fills_required_fields(
    client_at: ClientFactory,
) -> None:
    order = draft(
        "x1",
        CPT,
        "72170",
        "XR pelvis",
        patientInstruction="No preparation needed for this X-ray",
        performerType={"text": "radiographer"},
        instantiatesCanonical=["http://example.org/xray-protocol"],
        quantityQuantity={"value": 2},
        identifier=[{"system": "urn:ehr:placer", "value": "A1"}],
    )
    del order["status"], order["intent"]
    (card,) = await cards_for(client_at, order_request(cases.maya_before_mri(), [order]))
    changed = card["suggestions"][0]["actions"][0]["resource"]
    for name in (
        "patientInstruction",
        "performerType",
        "instantiatesCanonical",
        "quantityQuantity",
    ):
        assert name not in changed, name
    assert changed["identifier"] == [{"system": "urn:ehr:placer", "value": "A1"}]
    assert (changed["status"], changed["intent"]) == ("draft", "proposal")


async def test_orders_feedback_posted_to_another_service_snoozes_nothing(tmp_path: Any) -> None:
    xray = draft("x1", CPT, "72100", "XR lumbar spine")
    body = order_request(cases.maya_before_mri(), [xray])
    async with client_with_ledger(tmp_path, cases.MAYA_SUSPECT_DAY) as client:
        (card,) = (await client.post(SELECT_URL, json=body)).json()["cards"]
        feedback = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2025-09-30T11:55:00Z",
                }
            ]
        }
        # Posted to card A's endpoint: stored, flagged unknown there, no snooze.
        response = await client.post("/cds-services/sacral-bsi/feedback", json=feedback)
        assert response.status_code == 200
        ledger = client._transport.app.state.collaborators.ledger  # type: ignore[attr-defined]
        (kept,) = ledger.feedback_for(card["uuid"])
        assert kept.known_card is False
        assert len((await client.post(SELECT_URL, json=body)).json()["cards"]) == 1
