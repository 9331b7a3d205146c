"""Alembic environment: migrations run on the connection the service hands over
(``cds_service.store.migrate``), or on CDS_DATABASE_URL from the command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cds_service.settings import Settings
from cds_service.store import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(Settings().database_url)
    with engine.begin() as own:
        context.configure(connection=own, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
