"""care reminders: notifications are planned with a due time and a period, and claimed by a dispatcher

Revision ID: d1
Revises: c4
Create Date: 2026-12-01 22:45:00

``queued`` becomes ``planned``; ``sending`` marks an attempt on record before the call.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "d1"
down_revision = "c4"
branch_labels = None
depends_on = None

_OPEN = sa.text("status IN ('planned', 'sending')")
_NEW = ("planned", "sending", "sent", "delivered", "failed", "skipped")
_OLD = ("queued", "sent", "delivered", "failed", "skipped")


def upgrade() -> None:
    op.add_column("notifications", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("notifications", sa.Column("period", sa.String(length=64), nullable=True))
    op.add_column("notifications", sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE notifications SET due_at = created_at")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.drop_constraint(op.f("ck_notifications_status"), type_="check")
    op.execute("UPDATE notifications SET status = 'planned' WHERE status = 'queued'")
    with op.batch_alter_table("notifications") as batch:
        batch.create_check_constraint(op.f("ck_notifications_status"), sa.text(f"status IN {_NEW}"))
    op.create_index("ix_notifications_open_due", "notifications", ["due_at"], postgresql_where=_OPEN, sqlite_where=_OPEN)


def downgrade() -> None:
    op.drop_index("ix_notifications_open_due", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint(op.f("ck_notifications_status"), type_="check")
    op.execute("UPDATE notifications SET status = 'queued' WHERE status IN ('planned', 'sending')")
    with op.batch_alter_table("notifications") as batch:
        batch.create_check_constraint(op.f("ck_notifications_status"), sa.text(f"status IN {_OLD}"))
        batch.drop_column("period")
        batch.drop_column("attempted_at")
        batch.drop_column("due_at")
