"""members: home address (encrypted) and its blind index for the household self-referral check

Revision ID: h1
Revises: f3
Create Date: 2026-12-02 14:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h1"
down_revision = "f3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("members", sa.Column("address", sa.Text(), nullable=True))
    op.add_column("members", sa.Column("address_index", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_members_address_index"), "members", ["address_index"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_members_address_index"), table_name="members")
    op.drop_column("members", "address_index")
    op.drop_column("members", "address")
