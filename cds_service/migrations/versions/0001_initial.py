"""The service's tables: CarePlan write claims, seen JWT ids, issued cards, feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "careplan_claims",
        sa.Column("identifier", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("location", sa.String(2000), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "seen_jtis",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_seen_jtis_expires_at", "seen_jtis", ["expires_at"])
    op.create_table(
        "issued_cards",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("finding", sa.String(32), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("content_version", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_issued_cards_patient_key", "issued_cards", ["patient_key"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("known_card", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.Text(), nullable=True),
        sa.Column("override_system", sa.String(300), nullable=True),
        sa.Column("override_code", sa.String(100), nullable=True),
        sa.Column("override_display", sa.String(300), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("issued_cards")
    op.drop_index("ix_seen_jtis_expires_at", "seen_jtis")
    op.drop_table("seen_jtis")
    op.drop_table("careplan_claims")
