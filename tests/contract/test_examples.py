"""The requests shipped in examples/ give the cards the README shows (at the README's date)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import SERVICE_URL, ClientFactory
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
README_DATE = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "patient-view-runner.json",
            [
                (
                    "warning",
                    "Runner, left SI-joint pain + 3 BSI risk factors: consider sacral stress injury; consider MRI sacrum (X-ray often normal).",
                )
            ],
        ),
        (
            "patient-view-mri-confirmed.json",
            [
                (
                    "info",
                    "MRI-confirmed sacral bone stress injury: review the proposed phased rehab plan (starts with protected weight-bearing).",
                )
            ],
        ),
        ("patient-view-no-card.json", []),
    ],
)
async def test_examples_give_the_documented_cards(
    client_at: ClientFactory, name: str, expected: list[tuple[str, str]]
) -> None:
    body = json.loads((EXAMPLES / name).read_text())
    response = await client_at(README_DATE).post(SERVICE_URL, json=body)
    assert response.status_code == 200
    payload = response.json()
    assert_spec_response(payload)
    assert [(c["indicator"], c["summary"]) for c in payload["cards"]] == expected
    readme = (EXAMPLES.parent / "README.md").read_text()
    for _, summary in expected:
        assert summary in readme
