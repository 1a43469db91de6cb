"""benefits: partner-delivered benefit orders (service codes, usage, voids); a share's mini-app code

Revision ID: i5
Revises: i6
Create Date: 2026-12-02 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i5"
down_revision = "i6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("benefit_shares", sa.Column("wxacode_png", sa.LargeBinary(), nullable=True))
    op.add_column("benefit_shares", sa.Column("wxacode_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "benefit_partner_orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("booking_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("out_order_no", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("partner_order_no", sa.String(length=64), nullable=True),
        sa.Column("service_code", sa.String(length=64), nullable=True),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_where", sa.String(length=128), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'issued', 'failed', 'used', 'voiding', 'voided')",
            name=op.f("ck_benefit_partner_orders_status"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_benefit_partner_orders_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_benefit_partner_orders_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefit_partner_orders")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_benefit_partner_orders_booking_id")),
        sa.UniqueConstraint("out_order_no", name=op.f("uq_benefit_partner_orders_out_order_no")),
    )
    op.create_index(
        op.f("ix_benefit_partner_orders_member_id"), "benefit_partner_orders", ["member_id"], unique=False
    )
    op.create_index(
        "ix_benefit_partner_orders_open",
        "benefit_partner_orders",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'voiding')"),
    )


def downgrade() -> None:
    op.drop_index("ix_benefit_partner_orders_open", table_name="benefit_partner_orders")
    op.drop_index(op.f("ix_benefit_partner_orders_member_id"), table_name="benefit_partner_orders")
    op.drop_table("benefit_partner_orders")
    op.drop_column("benefit_shares", "wxacode_at")
    op.drop_column("benefit_shares", "wxacode_png")
