"""subscribe requests: each wx.requestSubscribeMessage result applied once

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 13:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribe_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_subscribe_requests_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribe_requests")),
        sa.UniqueConstraint("member_id", "request_id", name=op.f("uq_subscribe_requests_member_id_request_id")),
    )


def downgrade() -> None:
    op.drop_table("subscribe_requests")
