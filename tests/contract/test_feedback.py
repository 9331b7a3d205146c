"""The feedback endpoint (CDS Hooks 2.0.1), the card ledger behind it, override suppression and
JWT replay, each on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from cds_service.main import create_app
from cds_service.store import Base, ReplayStore, open_engine
from tests import cases
from tests.builders import ICD10CM, coding, condition, hook_request
from tests.conftest import SERVICE_URL, at, settings_for_tests, shared

pytestmark = pytest.mark.anyio
FEEDBACK_URL = SERVICE_URL + "/feedback"


def client_for(database_url: str, day: date = cases.MAYA_SUSPECT_DAY) -> httpx.AsyncClient:
    app = create_app(settings_for_tests(database_url=database_url), clock=at(day))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test")


def feedback(card: str, outcome: str = "overridden", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "card": card,
        "outcome": outcome,
        "outcomeTimestamp": "2025-09-30T11:55:00Z",  # the service's clock: 12:00
    }
    item.update(extra)
    return {"feedback": [item]}


async def suspect_card(
    client: httpx.AsyncClient, record: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    response = await client.post(
        SERVICE_URL, json=hook_request(record or cases.maya_before_mri(), pid="maya")
    )
    assert response.status_code == 200
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards[0] if cards else None


async def test_feedback_accepted_is_stored_for_the_issued_card(database_url: str) -> None:
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        suggestion = card["suggestions"][0]["uuid"]
        response = await client.post(
            FEEDBACK_URL,
            json=feedback(card["uuid"], "accepted", acceptedSuggestions=[{"id": suggestion}]),
        )
        assert response.status_code == 200
        ledger = client._transport.app.state.collaborators.ledger  # type: ignore[attr-defined]
    (stored,) = ledger.feedback_for(card["uuid"])
    assert stored.known_card is True
    assert stored.outcome == "accepted"
    assert json.loads(stored.accepted_suggestions) == [suggestion]
    assert stored.outcome_timestamp == datetime(2025, 9, 30, 11, 55)


async def test_feedback_override_reason_is_stored(database_url: str) -> None:
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        reason = card["overrideReasons"][0]
        body = feedback(
            card["uuid"], overrideReason={"reason": reason, "userComment": "imaged last week"}
        )
        assert (await client.post(FEEDBACK_URL, json=body)).status_code == 200
        ledger = client._transport.app.state.collaborators.ledger  # type: ignore[attr-defined]
    (stored,) = ledger.feedback_for(card["uuid"])
    assert (stored.override_system, stored.override_code) == (reason["system"], reason["code"])
    assert stored.user_comment == "imaged last week"


async def test_feedback_for_an_unknown_card_is_stored_and_flagged(database_url: str) -> None:
    async with client_for(database_url) as client:
        response = await client.post(FEEDBACK_URL, json=feedback("never-issued"))
        ledger = client._transport.app.state.collaborators.ledger  # type: ignore[attr-defined]
    assert response.status_code == 200
    (stored,) = ledger.feedback_for("never-issued")
    assert stored.known_card is False


@pytest.mark.parametrize(
    "name",
    [
        "21-feedback--example-suggestion-accepted.json",
        "22-feedback--example-overridden-guidance-without-overridereason.json",
        "23-feedback--example-overridden-guidance-with-overridereason.json",
    ],
)
async def test_feedback_spec_examples_are_accepted(name: str, tmp_path: Any) -> None:
    body = json.loads(shared("cds-hooks-examples", "spec-2.0.1", name).read_text())
    async with client_for(f"sqlite:///{tmp_path / 'cds.db'}") as client:
        assert (await client.post(FEEDBACK_URL, json=body)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        (
            {"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]},
            "feedback[0].card",
        ),
        (
            {
                "feedback": [
                    {"card": "c", "outcome": "maybe", "outcomeTimestamp": "2021-12-11T10:05:31Z"}
                ]
            },
            "feedback[0].outcome",
        ),
        ({"feedback": [{"card": "c", "outcome": "accepted"}]}, "feedback[0].outcomeTimestamp"),
        (
            {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "yesterday"}]},
            "feedback[0].outcomeTimestamp",
        ),
        (
            {
                "feedback": [
                    {
                        "card": "c",
                        "outcome": "accepted",
                        "outcomeTimestamp": "0001-01-01T00:00:00+01:00",
                    }
                ]
            },
            "feedback[0].outcomeTimestamp",
        ),
        (
            {
                "feedback": [
                    {
                        "card": "c" * 65,
                        "outcome": "accepted",
                        "outcomeTimestamp": "2021-12-11T10:05:31Z",
                    }
                ]
            },
            "feedback[0].card",
        ),
        (
            {
                "feedback": [
                    {
                        "card": "c",
                        "outcome": "overridden",
                        "outcomeTimestamp": "2021-12-11T10:05:31Z",
                        "overrideReason": {"userComment": "a\u0000b"},
                    }
                ]
            },
            "feedback[0].overrideReason.userComment",
        ),
        (
            {
                "feedback": [
                    {
                        "card": "c",
                        "outcome": "overridden",
                        "outcomeTimestamp": "2021-12-11T10:05:31Z",
                        "overrideReason": {"reason": {"code": "x" * 101}},
                    }
                ]
            },
            "feedback[0].overrideReason.reason.code",
        ),
    ],
)
async def test_feedback_invalid_bodies_are_400_naming_the_field(
    body: dict[str, Any], field: str, database_url: str
) -> None:
    async with client_for(database_url) as client:
        response = await client.post(FEEDBACK_URL, json=body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [field]


async def test_feedback_malformed_json_and_unknown_service(tmp_path: Any) -> None:
    async with client_for(f"sqlite:///{tmp_path / 'cds.db'}") as client:
        assert (await client.post(FEEDBACK_URL, content=b"{not json")).status_code == 400
        assert (
            await client.post("/cds-services/nope/feedback", json=feedback("x"))
        ).status_code == 404


async def test_feedback_override_suppresses_the_card_until_the_evidence_changes(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cds_service")
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        await client.post(FEEDBACK_URL, json=feedback(card["uuid"]))
        again = await suspect_card(client)
        new_risk = [
            *cases.maya_before_mri(),
            condition("ed", coding(ICD10CM, "F50.01"), onset="2021-03-01", patient_id="maya"),
        ]
        changed = await suspect_card(client, new_risk)
    assert again is None
    outcomes = [r.fields["outcome"] for r in caplog.records if r.getMessage() == "hook_call"]  # type: ignore[attr-defined]
    assert outcomes == ["suspect", "suppressed_after_override", "suspect"]
    assert changed is not None  # a new risk factor: the card comes back


async def test_feedback_suppression_ends_after_the_snooze_period(database_url: str) -> None:
    async with client_for(database_url, cases.MAYA_SUSPECT_DAY) as client:
        card = await suspect_card(client)
        assert card is not None
        await client.post(FEEDBACK_URL, json=feedback(card["uuid"]))
    later = cases.MAYA_SUSPECT_DAY + timedelta(days=31)
    async with client_for(database_url, later) as client:
        assert await suspect_card(client) is not None
    async with client_for(database_url, cases.MAYA_SUSPECT_DAY + timedelta(days=29)) as client:
        assert await suspect_card(client) is None


async def test_feedback_accepting_does_not_suppress(database_url: str) -> None:
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        await client.post(FEEDBACK_URL, json=feedback(card["uuid"], "accepted"))
        assert await suspect_card(client) is not None


def test_jwt_replay_store_holds_across_engines_sharing_a_database(database_url: str) -> None:
    """Two workers (two engines, one database): a jti seen by one is a replay for the other."""
    first, second = ReplayStore(open_engine(database_url)), ReplayStore(open_engine(database_url))
    now = datetime(2025, 9, 30, 12, tzinfo=UTC)
    expires = now + timedelta(minutes=5)
    assert first.remember("https://ehr", "jti-1", expires, now) is True
    assert second.remember("https://ehr", "jti-1", expires, now) is False
    assert second.remember("https://other-ehr", "jti-1", expires, now) is True
    assert (
        first.remember("https://ehr", "jti-1", expires, now + timedelta(minutes=10)) is True
    )  # expired


def test_migrations_create_the_schema_the_models_expect(database_url: str) -> None:
    open_engine(database_url).dispose()
    with create_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


@pytest.mark.parametrize(
    "moment",
    [
        "2199-01-01T00:00:00Z",
        "2025-09-30T12:01:01Z",
        "2025-09-30T13:00:00+00:00",
        "2025-09-30T12:30:00",
    ],
)
async def test_feedback_from_the_future_is_refused_naming_the_field(
    database_url: str, moment: str
) -> None:
    """The clock says 12:00 UTC; 60 s of leeway. A timestamp without an offset is read as UTC."""
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        body = feedback(card["uuid"])
        body["feedback"][0]["outcomeTimestamp"] = moment
        response = await client.post(FEEDBACK_URL, json=body)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["feedback[0].outcomeTimestamp"]
    assert "future" in issue["details"]["text"]


async def test_feedback_within_the_clock_leeway_is_accepted(database_url: str) -> None:
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        body = feedback(card["uuid"])
        body["feedback"][0]["outcomeTimestamp"] = "2025-09-30T12:00:59Z"
        assert (await client.post(FEEDBACK_URL, json=body)).status_code == 200


async def test_feedback_snooze_runs_from_when_the_service_received_it(database_url: str) -> None:
    """An override dated long ago (an EHR that sends feedback late, or a wrong clock) still
    snoozes the card for 30 days from its arrival, and no longer than that."""
    async with client_for(database_url) as client:
        card = await suspect_card(client)
        assert card is not None
        body = feedback(card["uuid"])
        body["feedback"][0]["outcomeTimestamp"] = "2025-01-01T00:00:00Z"
        assert (await client.post(FEEDBACK_URL, json=body)).status_code == 200
        assert await suspect_card(client) is None  # snoozed, though dated 9 months back
    async with client_for(database_url, cases.MAYA_SUSPECT_DAY + timedelta(days=31)) as client:
        assert await suspect_card(client) is not None
