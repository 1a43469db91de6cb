"""care sending: claims apart from calls, and members' notification preferences

Revision ID: e4
Revises: e3
Create Date: 2026-12-02 12:50:00

``claimed_at`` marks a row a dispatcher took in a batch; ``attempted_at`` now marks the start of a
call only, so the sweeper can put back claims that never reached a call.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e4"
down_revision = "e3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE notifications SET claimed_at = attempted_at")
    op.create_index("ix_notifications_member_attempted", "notifications", ["member_id", "attempted_at"])
    op.create_table(
        "notification_preferences",
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("via", sa.String(length=12), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("category IN ('service', 'marketing')", name=op.f("ck_notification_preferences_category")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_notification_preferences_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", "category", name=op.f("pk_notification_preferences")),
    )


def downgrade() -> None:
    op.drop_table("notification_preferences")
    op.drop_index("ix_notifications_member_attempted", table_name="notifications")
    op.drop_column("notifications", "claimed_at")
