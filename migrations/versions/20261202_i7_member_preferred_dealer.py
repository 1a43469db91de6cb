"""members: preferred dealer (from the CRM's profile updates)

Revision ID: i7
Revises: i4
Create Date: 2026-12-02 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i7"
down_revision = "i4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite (make run) cannot add a foreign key to an existing table in place.
    with op.batch_alter_table("members") as batch:
        batch.add_column(
            sa.Column("preferred_dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch.create_index(batch.f("ix_members_preferred_dealer_id"), ["preferred_dealer_id"], unique=False)
        batch.create_foreign_key(
            batch.f("fk_members_preferred_dealer_id_dealers"), "dealers", ["preferred_dealer_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(batch.f("fk_members_preferred_dealer_id_dealers"), type_="foreignkey")
        batch.drop_index(batch.f("ix_members_preferred_dealer_id"))
        batch.drop_column("preferred_dealer_id")
