"""inbound events: the signed nonce of a WeChat callback, unique per source (replay protection)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 15:11:59

The index is built CONCURRENTLY (outside the migration's transaction), so callbacks keep being
stored while it builds on a large inbox.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_WHERE = sa.text("signed_nonce IS NOT NULL")


def upgrade() -> None:
    op.add_column("inbound_events", sa.Column("signed_nonce", sa.String(length=64), nullable=True))
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_inbound_events_signed_nonce",
            "inbound_events",
            ["source", "signed_nonce"],
            unique=True,
            postgresql_where=_WHERE,
            sqlite_where=_WHERE,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("ix_inbound_events_signed_nonce", table_name="inbound_events")
    op.drop_column("inbound_events", "signed_nonce")
