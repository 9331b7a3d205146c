"""Retention: the card ledger, the feedback and the JWT replay store do not grow forever. Old
rows are purged at start-up and every CDS_HOUSEKEEPING_INTERVAL_SECONDS, on SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cds_service.main import StartupError, create_app
from cds_service.store import (
    CardLedger,
    FeedbackRecord,
    IssuedCard,
    IssuedCardRecord,
    ReplayStore,
    SeenJti,
    open_engine,
)
from tests.conftest import settings_for_tests

pytestmark = pytest.mark.anyio
NOW = datetime(2025, 9, 30, 12, tzinfo=UTC)


def issued(uuid: str) -> IssuedCardRecord:
    return IssuedCardRecord(uuid, "sacral-bsi", "k" * 64, "suspect", frozenset({"e"}), "2.0.0")


def overridden(uuid: str) -> FeedbackRecord:
    return FeedbackRecord("sacral-bsi", uuid, "overridden", (), None, None, None, None, NOW)


def fill(ledger: CardLedger, replay: ReplayStore) -> None:
    """Cards and feedback of several ages, and token ids expired or not."""
    long_ago, lately = NOW - timedelta(days=100), NOW - timedelta(days=10)
    ledger.record([issued("old-alone"), issued("old-with-old-feedback")], now=long_ago)
    ledger.record([issued("old-with-recent-feedback")], now=long_ago)
    ledger.record([issued("recent")], now=lately)
    ledger.store_feedback([overridden("old-with-old-feedback")], now=long_ago)
    ledger.store_feedback([overridden("old-with-recent-feedback")], now=lately)
    replay.remember(
        "https://ehr", "expired", NOW - timedelta(minutes=1), NOW - timedelta(minutes=6)
    )
    replay.remember("https://ehr", "live", NOW + timedelta(minutes=4), NOW)


def cards_left(ledger: CardLedger) -> list[str]:
    with Session(ledger.engine) as session:
        return sorted(session.scalars(select(IssuedCard.card_uuid)))


def token_ids_left(replay: ReplayStore) -> int:
    with Session(replay.engine) as session:
        return int(session.scalar(select(func.count()).select_from(SeenJti)) or 0)


def test_retention_purge_keeps_what_is_recent_or_still_referred(database_url: str) -> None:
    engine = open_engine(database_url)
    ledger, replay = CardLedger(engine), ReplayStore(engine)
    fill(ledger, replay)
    assert ledger.purge(NOW - timedelta(days=90)) == (2, 1)  # cards, feedback
    # A card issued long ago whose feedback came lately stays: its override snooze holds.
    assert cards_left(ledger) == ["old-with-recent-feedback", "recent"]
    assert [f.outcome for f in ledger.feedback_for("old-with-recent-feedback")] == ["overridden"]
    assert ledger.feedback_for("old-with-old-feedback") == []
    assert replay.purge(NOW) == 1
    assert token_ids_left(replay) == 1
    assert replay.remember("https://ehr", "live", NOW + timedelta(minutes=4), NOW) is False
    engine.dispose()


def test_retention_purge_goes_in_batches_to_the_end(database_url: str) -> None:
    # Small transactions, so calls waiting for the database get in between; none left behind.
    engine = open_engine(database_url)
    ledger, replay = CardLedger(engine), ReplayStore(engine)
    old = NOW - timedelta(days=100)
    ledger.record([issued(f"c{n}") for n in range(7)], now=old)
    ledger.store_feedback([overridden(f"c{n}") for n in range(5)], now=old)
    for n in range(5):
        replay.remember("https://ehr", f"j{n}", NOW - timedelta(minutes=1), old)
    assert ledger.purge(NOW - timedelta(days=90), batch=2) == (7, 5)
    assert replay.purge(NOW, batch=2) == 5
    assert cards_left(ledger) == []
    assert token_ids_left(replay) == 0
    engine.dispose()


def test_retention_purge_stops_between_batches_when_told(database_url: str) -> None:
    # At shutdown the purge's thread stops at the next batch instead of running to the end.
    engine = open_engine(database_url)
    ledger = CardLedger(engine)
    ledger.record([issued(f"c{n}") for n in range(5)], now=NOW - timedelta(days=100))
    stop = threading.Event()
    stop.set()
    assert ledger.purge(NOW - timedelta(days=90), batch=2, stop=stop) == (0, 0)
    assert len(cards_left(ledger)) == 5
    engine.dispose()


async def test_retention_service_purges_at_start_and_logs_counts_only(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = open_engine(database_url)
    fill(CardLedger(engine), ReplayStore(engine))
    engine.dispose()
    app = create_app(
        settings_for_tests(database_url=database_url, retention_days=90), clock=lambda: NOW
    )
    with caplog.at_level(logging.INFO, logger="cds_service"):
        async with app.router.lifespan_context(app):
            for _ in range(100):  # the first purge runs beside the first calls
                if any(r.getMessage() == "housekeeping" for r in caplog.records):
                    break
                await anyio.sleep(0.05)
            ledger = app.state.collaborators.ledger
            assert cards_left(ledger) == ["old-with-recent-feedback", "recent"]
            assert token_ids_left(ReplayStore(ledger.engine)) == 1
    (line,) = [r for r in caplog.records if r.getMessage() == "housekeeping"]
    assert line.fields == {"cardsPurged": 2, "feedbackPurged": 1, "tokenIdsPurged": 1}  # type: ignore[attr-defined]


async def test_retention_runs_again_every_interval(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/cds.db"
    clock = [NOW]
    app = create_app(
        settings_for_tests(database_url=database_url, housekeeping_interval_seconds=1),
        clock=lambda: clock[0],
    )
    async with app.router.lifespan_context(app):
        ledger: CardLedger = app.state.collaborators.ledger
        ledger.record([issued("will-age")], now=NOW)
        clock[0] = NOW + timedelta(days=91)
        for _ in range(50):  # the loop sleeps 1 s between purges
            if not cards_left(ledger):
                break
            await anyio.sleep(0.1)
        assert cards_left(ledger) == []


def test_retention_shorter_than_the_override_snooze_refuses_to_start() -> None:
    with pytest.raises(StartupError, match=r"CDS_RETENTION_DAYS \(30\) must be longer"):
        create_app(settings_for_tests(retention_days=30))
