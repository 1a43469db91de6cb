"""notifications: the SMS provider's message id, for its delivery reports

Revision ID: i4
Revises: h1
Create Date: 2026-12-02 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i4"
down_revision = "h1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("sms_message_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_notifications_sms_message_id",
        "notifications",
        ["sms_message_id"],
        unique=False,
        postgresql_where=sa.text("sms_message_id IS NOT NULL"),
        sqlite_where=sa.text("sms_message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_sms_message_id", table_name="notifications")
    op.drop_column("notifications", "sms_message_id")
