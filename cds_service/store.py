"""The service's own database (SQLAlchemy 2): SQLite under ./var/ by default, Postgres by URL.
The schema is created and upgraded by Alembic migrations (``cds_service/migrations``) at start-up.

It holds what every worker and instance must share:
- CarePlan write claims (direct-write delivery never writes a plan twice);
- the JWT ids seen (a replayed token is refused anywhere);
- the cards issued (card uuid -> a hashed patient reference, the finding and its evidence keys;
  no names, no ids), and the clinicians' feedback on them (override suppression).
Calls are synchronous; the service runs them in a worker thread.
"""

from __future__ import annotations

import enum
import hashlib
import json
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Boolean,
    DateTime,
    Delete,
    Engine,
    Integer,
    Select,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

_K = TypeVar("_K")


class Base(DeclarativeBase):
    pass


class CarePlanClaim(Base):
    __tablename__ = "careplan_claims"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | written
    location: Mapped[str | None] = mapped_column(String(2000), default=None)
    claimed_at: Mapped[datetime] = mapped_column(DateTime())  # naive UTC


class SeenJti(Base):
    """A token id seen, kept until the token expires (replay protection across workers)."""

    __tablename__ = "seen_jtis"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of issuer + jti
    expires_at: Mapped[datetime] = mapped_column(DateTime(), index=True)  # naive UTC


class IssuedCard(Base):
    __tablename__ = "issued_cards"

    card_uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64))
    patient_key: Mapped[str] = mapped_column(String(64), index=True)  # sha256, never the id
    finding: Mapped[str] = mapped_column(String(32))  # suspect | confirmed | confirm_first
    evidence: Mapped[str] = mapped_column(Text())  # JSON list of evidence keys
    content_version: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(DateTime(), index=True)  # naive UTC


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(String(64))
    card_uuid: Mapped[str] = mapped_column(String(64), index=True)
    known_card: Mapped[bool] = mapped_column(Boolean())  # False: a uuid this service never issued
    outcome: Mapped[str] = mapped_column(String(16))  # accepted | overridden
    accepted_suggestions: Mapped[str | None] = mapped_column(Text(), default=None)  # JSON list
    override_system: Mapped[str | None] = mapped_column(String(300), default=None)
    override_code: Mapped[str | None] = mapped_column(String(100), default=None)
    override_display: Mapped[str | None] = mapped_column(String(300), default=None)
    user_comment: Mapped[str | None] = mapped_column(Text(), default=None)
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime())  # naive UTC
    received_at: Mapped[datetime] = mapped_column(DateTime(), index=True)  # naive UTC


class ClaimState(enum.StrEnum):
    NEW = "new"  # this call holds the claim: it writes
    PENDING = "pending"  # another call is writing it now
    WRITTEN = "written"  # already written, at ``location``


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    location: str | None = None
    written_at: datetime | None = None  # of a WRITTEN claim: which write it is


def open_engine(url: str) -> Engine:
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if sqlite and parsed.database in (None, "", ":memory:"):
        # One in-memory database on one shared connection (tests, the CLI's in-process mode):
        # every store takes the engine's lock around its work.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _SINGLE_CONNECTION_LOCKS[engine] = threading.RLock()
    else:
        # SQLite waits on a locked file; a database server that does not answer fails in 10 s.
        connect_args = {"timeout": 15} if sqlite else {"connect_timeout": 10}
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return engine


_SINGLE_CONNECTION_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = (
    weakref.WeakKeyDictionary()
)


def serialised(engine: Engine) -> AbstractContextManager[object]:
    """The engine's lock when all its sessions share one connection; else no lock (the
    database itself arbitrates between connections)."""
    lock = _SINGLE_CONNECTION_LOCKS.get(engine)
    return lock if lock is not None else nullcontext()


def close_engine(engine: Engine) -> None:
    """Release the engine's connections, except a single-connection in-memory database, which
    would vanish (a host may run the lifespan again)."""
    if engine not in _SINGLE_CONNECTION_LOCKS:
        engine.dispose()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration. On Postgres an advisory lock makes instances
    that start together take turns."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7720411)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _sqlite_pragmas(connection: object, _: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # several processes share the file
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def is_ready(engine: Engine) -> bool:
    try:
        with serialised(engine), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


class ClaimStore:
    """Claims on CarePlan identifiers. A pending claim older than ``stale_after`` (a writer that
    died mid-way) may be taken over; the FHIR conditional create still guards the server."""

    def __init__(self, engine: Engine, stale_after: timedelta = timedelta(seconds=60)) -> None:
        self.engine = engine
        self.stale_after = stale_after
        # One claim operation at a time per process (the calls run in worker threads, and an
        # in-memory SQLite database is a single shared connection); across processes and
        # instances the database's primary key decides.
        self._lock = threading.Lock()

    def claim(self, identifier: str, now: datetime | None = None) -> Claim:
        with self._lock, serialised(self.engine):
            return self._claim(identifier, _naive(now or datetime.now(UTC)))

    def _claim(self, identifier: str, now: datetime) -> Claim:
        with Session(self.engine) as session:
            session.add(CarePlanClaim(identifier=identifier, status="pending", claimed_at=now))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
            else:
                return Claim(ClaimState.NEW)
            row = session.get(CarePlanClaim, identifier)
            if row is None:  # released between our insert and this read: try once more
                return self._claim(identifier, now)
            if row.status == "written":  # whether the plan is still there is the caller's check
                return Claim(ClaimState.WRITTEN, row.location, row.claimed_at)
            # A pending claim whose writer died: take it over; the conditional create on the
            # server still stops a second copy.
            taken = session.execute(
                update(CarePlanClaim)
                .where(
                    CarePlanClaim.identifier == identifier,
                    CarePlanClaim.status == "pending",
                    CarePlanClaim.claimed_at < now - self.stale_after,
                )
                .values(claimed_at=now, status="pending")
            )
            session.commit()
            return Claim(ClaimState.NEW if taken.rowcount == 1 else ClaimState.PENDING)  # type: ignore[attr-defined]

    def written(self, identifier: str, location: str | None, now: datetime | None = None) -> None:
        with self._lock, serialised(self.engine), Session(self.engine) as session:
            session.execute(
                update(CarePlanClaim)
                .where(CarePlanClaim.identifier == identifier)
                .values(
                    status="written", location=location, claimed_at=_naive(now or datetime.now(UTC))
                )
            )
            session.commit()

    def reclaim(self, identifier: str, seen: Claim, now: datetime | None = None) -> Claim:
        """Take back the written claim ``seen`` for a new write (its plan is gone from the
        server): NEW for one caller. A caller whose ``seen`` is older than the claim now (the
        plan was written again meanwhile) gets the claim as it is: WRITTEN, or PENDING."""
        with self._lock, serialised(self.engine), Session(self.engine) as session:
            taken = session.execute(
                update(CarePlanClaim)
                .where(
                    CarePlanClaim.identifier == identifier,
                    CarePlanClaim.status == "written",
                    CarePlanClaim.claimed_at == seen.written_at,
                )
                .values(
                    status="pending", location=None, claimed_at=_naive(now or datetime.now(UTC))
                )
            )
            session.commit()
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return Claim(ClaimState.NEW)
        return self.claim(identifier, now)

    def release(self, identifier: str) -> None:
        with self._lock, serialised(self.engine), Session(self.engine) as session:
            session.execute(
                delete(CarePlanClaim).where(
                    CarePlanClaim.identifier == identifier, CarePlanClaim.status == "pending"
                )
            )
            session.commit()

    def get(self, identifier: str) -> Claim | None:
        with self._lock, serialised(self.engine), Session(self.engine) as session:
            row = session.scalars(
                select(CarePlanClaim).where(CarePlanClaim.identifier == identifier)
            ).first()
            if row is None:
                return None
            state = ClaimState.WRITTEN if row.status == "written" else ClaimState.PENDING
            return Claim(state, row.location)


def _naive(moment: datetime) -> datetime:
    """Claims are stored as naive UTC (SQLite keeps no zone): convert, then drop the zone."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class ReplayStore:
    """Token ids seen, in the database every worker and instance shares: a ``jti`` replayed
    within its token's lifetime is refused anywhere. Expired ids are deleted by ``purge``
    (the service's housekeeping), not on the call path."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def purge(
        self, now: datetime | None = None, batch: int = 1000, stop: threading.Event | None = None
    ) -> int:
        """Forget the token ids whose tokens have expired, ``batch`` rows per transaction (so
        calls waiting for the database get in between); return how many."""
        cutoff = _naive(now or datetime.now(UTC))
        return _purge_in_batches(
            self.engine,
            select(SeenJti.key).where(SeenJti.expires_at < cutoff),
            lambda keys: delete(SeenJti).where(SeenJti.key.in_(keys)),
            batch,
            stop,
            self._lock,
        )

    def remember(
        self, issuer: str, jti: str, expires: datetime, now: datetime | None = None
    ) -> bool:
        """True the first time; False if this (issuer, jti) is still on record."""
        key = hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
        now = _naive(now or datetime.now(UTC))
        with self._lock, serialised(self.engine), Session(self.engine) as session:
            session.add(SeenJti(key=key, expires_at=_naive(expires)))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                row = session.get(SeenJti, key)
                if row is not None and row.expires_at < now:  # an expired record: reuse it
                    row.expires_at = _naive(expires)
                    session.commit()
                    return True
                return False
        return True


def _purge_in_batches(
    engine: Engine,
    keys: Select[_K],
    delete_these: Callable[[list[_K]], Delete],
    batch: int,
    stop: threading.Event | None = None,
    lock: AbstractContextManager[object] | None = None,
) -> int:
    """Delete the rows ``keys`` selects, ``batch`` at a time, each batch its own transaction,
    until none is left or ``stop`` is set (the service is shutting down); return how many."""
    deleted = 0
    while stop is None or not stop.is_set():
        with lock or nullcontext(), serialised(engine), Session(engine) as session:
            chunk = list(session.scalars(keys.limit(batch)))
            if chunk:
                session.execute(delete_these(chunk))
                session.commit()
        deleted += len(chunk)
        if len(chunk) < batch:
            break
    return deleted


@dataclass(frozen=True)
class IssuedCardRecord:
    card_uuid: str
    service_id: str
    patient_key: str
    finding: str
    evidence: frozenset[str]
    content_version: str


@dataclass(frozen=True)
class FeedbackRecord:
    service_id: str
    card_uuid: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_system: str | None
    override_code: str | None
    override_display: str | None
    user_comment: str | None
    outcome_timestamp: datetime


def patient_key(issuer: str | None, patient_id: str) -> str:
    """A pseudonymous reference to a patient: a hash of the calling EHR and its patient id."""
    return hashlib.sha256(f"sacral-bsi-cds|{issuer or ''}|{patient_id}".encode()).hexdigest()


class CardLedger:
    """The cards issued and the feedback on them, shared by every worker and instance."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, cards: list[IssuedCardRecord], now: datetime | None = None) -> None:
        issued_at = _naive(now or datetime.now(UTC))
        with serialised(self.engine), Session(self.engine) as session:
            session.add_all(
                IssuedCard(
                    card_uuid=c.card_uuid,
                    service_id=c.service_id,
                    patient_key=c.patient_key,
                    finding=c.finding,
                    evidence=json.dumps(sorted(c.evidence)),
                    content_version=c.content_version,
                    issued_at=issued_at,
                )
                for c in cards
            )
            session.commit()

    def store_feedback(
        self, items: list[FeedbackRecord], now: datetime | None = None
    ) -> list[str | None]:
        """Store every item; return, per item, the kind of its card when it is one this service
        issued (the service the feedback was posted to: feedback on another service's card is
        kept, but flagged unknown, and snoozes nothing), else None."""
        received = _naive(now or datetime.now(UTC))
        with serialised(self.engine), Session(self.engine) as session:
            known = {
                (service, card): kind
                for service, card, kind in session.execute(
                    select(IssuedCard.service_id, IssuedCard.card_uuid, IssuedCard.finding).where(
                        IssuedCard.card_uuid.in_({i.card_uuid for i in items})
                    )
                )
            }
            session.add_all(
                Feedback(
                    service_id=i.service_id,
                    card_uuid=i.card_uuid,
                    known_card=(i.service_id, i.card_uuid) in known,
                    outcome=i.outcome,
                    accepted_suggestions=json.dumps(list(i.accepted_suggestions))
                    if i.accepted_suggestions
                    else None,
                    override_system=i.override_system,
                    override_code=i.override_code,
                    override_display=i.override_display,
                    user_comment=i.user_comment,
                    outcome_timestamp=_naive(i.outcome_timestamp),
                    received_at=received,
                )
                for i in items
            )
            session.commit()
        return [known.get((i.service_id, i.card_uuid)) for i in items]

    def overridden_evidence(
        self, patient: str, finding: str, since: datetime
    ) -> list[frozenset[str]]:
        """The evidence of each card of this kind a clinician overrode for this patient, in
        feedback the service received since ``since`` (its own clock: the caller's
        ``outcomeTimestamp`` cannot stretch a snooze)."""
        with serialised(self.engine), Session(self.engine) as session:
            rows = session.scalars(
                select(IssuedCard.evidence)
                .join(
                    Feedback,
                    (Feedback.card_uuid == IssuedCard.card_uuid)
                    & (Feedback.service_id == IssuedCard.service_id),
                )
                .where(
                    IssuedCard.patient_key == patient,
                    IssuedCard.finding == finding,
                    Feedback.outcome == "overridden",
                    Feedback.received_at >= _naive(since),
                )
            )
            return [frozenset(json.loads(evidence)) for evidence in rows]

    def purge(
        self, before: datetime, batch: int = 1000, stop: threading.Event | None = None
    ) -> tuple[int, int]:
        """Delete the feedback received before ``before``, then the cards issued before it that
        no feedback refers to any more, ``batch`` rows per transaction; return (cards,
        feedback) deleted. A card with recent feedback stays, so an override snooze shorter than
        the retention always holds."""
        cutoff = _naive(before)
        feedback = _purge_in_batches(
            self.engine,
            select(Feedback.id).where(Feedback.received_at < cutoff),
            lambda ids: delete(Feedback).where(Feedback.id.in_(ids)),
            batch,
            stop,
        )
        referred = select(Feedback.card_uuid).where(Feedback.card_uuid == IssuedCard.card_uuid)
        cards = _purge_in_batches(
            self.engine,
            select(IssuedCard.card_uuid).where(IssuedCard.issued_at < cutoff, ~referred.exists()),
            # The NOT EXISTS again: feedback stored since the select keeps its card.
            lambda uuids: delete(IssuedCard).where(
                IssuedCard.card_uuid.in_(uuids), ~referred.exists()
            ),
            batch,
            stop,
        )
        return cards, feedback

    def feedback_for(self, card_uuid: str) -> list[Feedback]:
        with serialised(self.engine), Session(self.engine) as session:
            return list(session.scalars(select(Feedback).where(Feedback.card_uuid == card_uuid)))
