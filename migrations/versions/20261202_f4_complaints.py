"""complaints: category, status, resolution, per member (the console's complaint log)

Revision ID: f4
Revises: f1
Create Date: 2026-12-02 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "f4"
down_revision = "f1"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("member_id", _BIGINT, nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("resolution", sa.String(length=2000), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open', 'in_progress', 'resolved', 'closed')", name=op.f("ck_complaints_status")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_complaints_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
    )
    op.create_index("ix_complaints_member_id", "complaints", ["member_id"])
    op.create_index("ix_complaints_created_at_category", "complaints", ["created_at", "category"])


def downgrade() -> None:
    op.drop_index("ix_complaints_created_at_category", table_name="complaints")
    op.drop_index("ix_complaints_member_id", table_name="complaints")
    op.drop_table("complaints")
