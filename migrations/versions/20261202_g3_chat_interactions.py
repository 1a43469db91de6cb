"""chat messages count as interactions: when a member last wrote to the service account

Revision ID: g3
Revises: f2
Create Date: 2026-12-02 14:00:00

``wechat_identities.last_message_at`` is written when a member's text message is handled, at most
once an hour per identity; the lifecycle pass reads it as an interaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "g3"
down_revision = "f2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wechat_identities", sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("wechat_identities", "last_message_at")
