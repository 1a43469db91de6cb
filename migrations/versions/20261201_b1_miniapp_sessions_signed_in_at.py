"""mini-app sessions: when the sign-in began (absolute lifetime; refreshing cannot extend it)

Revision ID: b1
Revises: 0008
Create Date: 2026-12-01 22:40:00

Existing sessions count from their own creation (a refreshed one from its latest refresh): they
are at most two hours old, so nothing lives long past the deploy.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "b1"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("miniapp_sessions", sa.Column("signed_in_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE miniapp_sessions SET signed_in_at = created_at")
    with op.batch_alter_table("miniapp_sessions") as batch:
        batch.alter_column("signed_in_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("miniapp_sessions") as batch:
        batch.drop_column("signed_in_at")
