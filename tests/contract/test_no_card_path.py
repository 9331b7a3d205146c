"""A call that issues no card touches no database (issue 12): the ledger is read only to snooze a
card after an override, and written only for the cards issued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from cds_service.main import create_app
from tests.conftest import SERVICE_URL, at, settings_for_tests

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
README_DATE = date(2026, 11, 25)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the engine runs while the block runs."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize(
    ("example", "cards"),
    [("patient-view-no-card.json", 0), ("patient-view-runner.json", 1)],
)
async def test_only_a_call_that_issues_a_card_uses_the_database(example: str, cards: int) -> None:
    app = create_app(settings_for_tests(), clock=at(README_DATE))
    engine = app.state.collaborators.engine
    body = json.loads((EXAMPLES / example).read_text())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://cds.test"
    ) as client:
        with statements(engine) as seen:
            for _ in range(3):
                response = await client.post(SERVICE_URL, json=body)
                assert response.status_code == 200
                assert len(response.json()["cards"]) == cards
    if cards:
        assert any("issued_card" in s.lower() for s in seen), seen  # the listener sees them
    else:
        assert seen == []
