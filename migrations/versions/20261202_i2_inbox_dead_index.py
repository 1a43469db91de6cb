"""inbound_events: a partial index on dead events, counted per source by /metrics at every scrape

Revision ID: i2
Revises: h1
Create Date: 2026-12-02 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i2"
down_revision = "h1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_events_dead",
        "inbound_events",
        ["source", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'dead'"),
        sqlite_where=sa.text("status = 'dead'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_inbound_events_dead",
        table_name="inbound_events",
        postgresql_where=sa.text("status = 'dead'"),
        sqlite_where=sa.text("status = 'dead'"),
    )
