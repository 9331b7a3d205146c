"""Golden files for the cards and the resources they propose (reviewed like code).

UUIDs are random per call, so they are replaced by ``<uuid>`` before comparing; everything else,
dates included, is fixed by the clock and the case. Refresh with ``pytest --update-golden`` and
review the diff.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory

pytestmark = pytest.mark.anyio
Golden = Callable[[str, Any], None]
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def without_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<uuid>" if k == "uuid" and _UUID.match(str(v)) else without_uuids(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


async def test_golden_suspect_card_and_mri_proposal(
    client_at: ClientFactory, golden: Golden
) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya", encounter_id="enc-1")
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    card = without_uuids(response.json()["cards"][0])
    golden("suspect-card-maya", card)
    golden("servicerequest-mri-sacrum-maya", card["suggestions"][0]["actions"][0]["resource"])


async def test_golden_confirmed_card_and_careplan(client_at: ClientFactory, golden: Golden) -> None:
    body = hook_request(cases.maya_after_mri(), pid="maya")
    response = await client_at(cases.MAYA_CONFIRMED_DAY).post(SERVICE_URL, json=body)
    card = without_uuids(response.json()["cards"][0])
    golden("confirmed-card-maya", card)
    golden("careplan-maya", card["suggestions"][0]["actions"][0]["resource"])


async def test_golden_order_select_ct_pelvis_card(client_at: ClientFactory, golden: Golden) -> None:
    """The card the CDS Hooks Sandbox's PAMA tab shows for a CT pelvis (CPT 72192), and the MRI
    order its suggestions carry."""
    from tests.contract.test_order_services import SELECT_URL, pama_request

    body = pama_request(
        "maya",
        cases.maya_before_mri(),
        "72192",
        "Computed tomography, pelvis; without contrast material",
    )
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SELECT_URL, json=body)
    golden("order-select-ct-pelvis-card-maya", without_uuids(response.json()["cards"][0]))


async def test_golden_order_sign_confirmed_injection_warning(
    client_at: ClientFactory, golden: Golden
) -> None:
    from tests.contract.test_order_services import CPT, SIGN_URL, draft, order_request

    injection = draft("i1", CPT, "27096", "SI joint injection with image guidance")
    body = order_request(cases.maya_after_mri(), [injection], hook="order-sign")
    response = await client_at(cases.MAYA_CONFIRMED_DAY).post(SIGN_URL, json=body)
    golden("order-sign-injection-warning-maya", without_uuids(response.json()["cards"][0]))
