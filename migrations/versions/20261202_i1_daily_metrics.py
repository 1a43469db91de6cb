"""reporting: daily_metrics, the operator dashboard's daily rollups

Revision ID: i1
Revises: i3
Create Date: 2026-12-02 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i1"
down_revision = "i3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_metrics",
        sa.Column("metric", sa.String(length=40), nullable=False),
        sa.Column("dealer_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "dealer_id", "day", "key", name=op.f("pk_daily_metrics")),
    )


def downgrade() -> None:
    op.drop_table("daily_metrics")
