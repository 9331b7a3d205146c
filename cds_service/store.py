"""The service's own database (SQLAlchemy 2): SQLite under ./var/ by default, Postgres by URL.

Today it holds the CarePlan write claims of direct-write delivery: before the service writes a
plan to the EHR's FHIR server it claims the plan's business identifier here, so that concurrent
hook calls (other workers, other instances sharing the database) do not write it twice. Calls
are synchronous; the service runs them in a worker thread.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    DateTime,
    Engine,
    String,
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


class ClaimState(enum.StrEnum):
    NEW = "new"  # this call holds the claim: it writes
    PENDING = "pending"  # another call is writing it now
    WRITTEN = "written"  # already written, at ``location``


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    location: str | None = None


def open_engine(url: str) -> Engine:
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if sqlite and parsed.database in (None, "", ":memory:"):
        # One in-memory database shared by every connection (tests, the CLI's in-process mode).
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        connect_args = {"timeout": 15} if sqlite else {}
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    return engine


def _sqlite_pragmas(connection: object, _: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # several processes share the file
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def is_ready(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
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
        with self._lock:
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
            if row.status == "written":
                return Claim(ClaimState.WRITTEN, row.location)
            taken = session.execute(
                update(CarePlanClaim)
                .where(
                    CarePlanClaim.identifier == identifier,
                    CarePlanClaim.status == "pending",
                    CarePlanClaim.claimed_at < now - self.stale_after,
                )
                .values(claimed_at=now)
            )
            session.commit()
            return Claim(ClaimState.NEW if taken.rowcount == 1 else ClaimState.PENDING)  # type: ignore[attr-defined]

    def written(self, identifier: str, location: str | None) -> None:
        with self._lock, Session(self.engine) as session:
            session.execute(
                update(CarePlanClaim)
                .where(CarePlanClaim.identifier == identifier)
                .values(status="written", location=location)
            )
            session.commit()

    def release(self, identifier: str) -> None:
        with self._lock, Session(self.engine) as session:
            session.execute(
                delete(CarePlanClaim).where(
                    CarePlanClaim.identifier == identifier, CarePlanClaim.status == "pending"
                )
            )
            session.commit()

    def get(self, identifier: str) -> Claim | None:
        with self._lock, Session(self.engine) as session:
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
    within its token's lifetime is refused anywhere."""

    def __init__(self, engine: Engine, purge_every: int = 500) -> None:
        self.engine = engine
        self.purge_every = purge_every
        self._count = 0
        self._lock = threading.Lock()

    def remember(
        self, issuer: str, jti: str, expires: datetime, now: datetime | None = None
    ) -> bool:
        """True the first time; False if this (issuer, jti) is still on record."""
        key = hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
        now = _naive(now or datetime.now(UTC))
        with self._lock, Session(self.engine) as session:
            self._count += 1
            if self._count % self.purge_every == 1:
                session.execute(delete(SeenJti).where(SeenJti.expires_at < now))
                session.commit()
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
