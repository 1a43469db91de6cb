"""notifications: the SMS provider's message id, for its delivery reports; two indexes fewer to write when planning

``ix_notifications_member_id`` is covered by ``ix_notifications_member_attempted`` (member first);
``ix_notifications_wechat_msgid`` only needs the rows WeChat gave a msgid (not planned ones).

Revision ID: i4
Revises: i5
Create Date: 2026-12-02 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i4"
down_revision = "i5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_notifications_member_id", table_name="notifications")
    op.drop_index("ix_notifications_wechat_msgid", table_name="notifications")
    op.create_index(
        "ix_notifications_wechat_msgid",
        "notifications",
        ["wechat_msgid"],
        unique=False,
        postgresql_where=sa.text("wechat_msgid IS NOT NULL"),
        sqlite_where=sa.text("wechat_msgid IS NOT NULL"),
    )
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
    op.drop_index("ix_notifications_wechat_msgid", table_name="notifications")
    op.create_index("ix_notifications_wechat_msgid", "notifications", ["wechat_msgid"], unique=False)
    op.create_index("ix_notifications_member_id", "notifications", ["member_id"], unique=False)
