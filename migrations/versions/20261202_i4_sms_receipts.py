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


def downgrade() -> None:
    op.drop_column("notifications", "sms_message_id")
