"""benefits and booking: versioned catalog, pilot cohorts, entitlement ledger, dealer slots, bookings

Revision ID: e5
Revises: e4
Create Date: 2026-12-02 12:39:11

``entitlement_entries`` is append-only (trigger, like the points ledger).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "e5"
down_revision = "e4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "benefit_catalogs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("based_on_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("published_by", sa.String(length=64), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('draft', 'published', 'retired')", name=op.f("ck_benefit_catalogs_status")),
        sa.ForeignKeyConstraint(
            ["based_on_id"], ["benefit_catalogs.id"], name=op.f("fk_benefit_catalogs_based_on_id_benefit_catalogs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefit_catalogs")),
    )
    op.create_table(
        "benefits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("catalog_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column(
            "name", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "description", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "eligible_tiers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "quotas", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("points_price", sa.Integer(), nullable=True),
        sa.Column("transferable", sa.Boolean(), nullable=False),
        sa.Column("binding", sa.String(length=8), nullable=False),
        sa.Column("needs_slot", sa.Boolean(), nullable=False),
        sa.Column("service_type", sa.String(length=32), nullable=True),
        sa.Column("delivered_by", sa.String(length=8), nullable=False),
        sa.Column("cost_fen", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("funder", sa.String(length=8), nullable=False),
        sa.Column("active_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pilot_size", sa.Integer(), nullable=True),
        sa.Column("pilot_seed", sa.String(length=32), nullable=True),
        sa.Column("creates_lead", sa.Boolean(), nullable=False),
        sa.Column("birthday_only", sa.Boolean(), nullable=False),
        sa.CheckConstraint("binding IN ('member', 'car')", name=op.f("ck_benefits_binding")),
        sa.CheckConstraint("delivered_by IN ('dealer', 'partner', 'oem')", name=op.f("ck_benefits_delivered_by")),
        sa.CheckConstraint("funder IN ('oem', 'dealer', 'partner')", name=op.f("ck_benefits_funder")),
        sa.CheckConstraint(
            "NOT needs_slot OR service_type IS NOT NULL", name=op.f("ck_benefits_slot_needs_service_type")
        ),
        sa.CheckConstraint("cost_fen >= 0", name=op.f("ck_benefits_cost_not_negative")),
        sa.CheckConstraint("points_price IS NULL OR points_price > 0", name=op.f("ck_benefits_points_price_positive")),
        sa.ForeignKeyConstraint(
            ["catalog_id"], ["benefit_catalogs.id"], name=op.f("fk_benefits_catalog_id_benefit_catalogs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefits")),
        sa.UniqueConstraint("catalog_id", "code", name=op.f("uq_benefits_catalog_id_code")),
    )
    op.create_index(op.f("ix_benefits_catalog_id"), "benefits", ["catalog_id"], unique=False)
    op.create_table(
        "dealer_slots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("service_type", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name=op.f("ck_dealer_slots_within_capacity")),
        sa.CheckConstraint("capacity >= 0", name=op.f("ck_dealer_slots_capacity_not_negative")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_dealer_slots_window")),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"], name=op.f("fk_dealer_slots_dealer_id_dealers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dealer_slots")),
        sa.UniqueConstraint(
            "dealer_id", "service_type", "starts_at", name=op.f("uq_dealer_slots_dealer_id_service_type_starts_at")
        ),
    )
    op.create_index("ix_dealer_slots_dealer_day", "dealer_slots", ["dealer_id", "day"], unique=False)
    op.create_table(
        "benefit_pilot_members",
        sa.Column("benefit_code", sa.String(length=32), nullable=False),
        sa.Column("seed", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_benefit_pilot_members_member_id_members")),
        sa.PrimaryKeyConstraint("benefit_code", "seed", "member_id", name=op.f("pk_benefit_pilot_members")),
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("benefit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("benefit_code", sa.String(length=32), nullable=False),
        sa.Column("slot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("dealer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("vehicle_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paid_with", sa.String(length=8), nullable=False),
        sa.Column("points_spent", sa.Integer(), nullable=False),
        sa.Column("year_start", sa.Date(), nullable=False),
        sa.Column("cost_fen", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("funder", sa.String(length=8), nullable=False),
        sa.Column("rescheduled_from_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_by_staff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("no_show_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("paid_with IN ('quota', 'points', 'free')", name=op.f("ck_bookings_paid_with")),
        sa.CheckConstraint(
            "status IN ('booked', 'cancelled', 'late_cancelled', 'no_show', 'delivered')",
            name=op.f("ck_bookings_status"),
        ),
        sa.ForeignKeyConstraint(["benefit_id"], ["benefits.id"], name=op.f("fk_bookings_benefit_id_benefits")),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"], name=op.f("fk_bookings_dealer_id_dealers")),
        sa.ForeignKeyConstraint(
            ["delivered_by_staff_id"], ["staff.id"], name=op.f("fk_bookings_delivered_by_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_bookings_member_id_members")),
        sa.ForeignKeyConstraint(
            ["rescheduled_from_id"], ["bookings.id"], name=op.f("fk_bookings_rescheduled_from_id_bookings")
        ),
        sa.ForeignKeyConstraint(["slot_id"], ["dealer_slots.id"], name=op.f("fk_bookings_slot_id_dealer_slots")),
        sa.ForeignKeyConstraint(["vehicle_id"], ["vehicles.id"], name=op.f("fk_bookings_vehicle_id_vehicles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
        sa.UniqueConstraint("member_id", "request_id", name=op.f("uq_bookings_member_id_request_id")),
    )
    op.create_index("ix_bookings_member_created", "bookings", ["member_id", "created_at"], unique=False)
    op.create_index(
        "ix_bookings_open",
        "bookings",
        ["slot_id"],
        unique=False,
        postgresql_where=sa.text("status = 'booked'"),
        sqlite_where=sa.text("status = 'booked'"),
    )
    op.create_table(
        "entitlement_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("benefit_code", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("vehicle_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("year_start", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("booking_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind IN ('grant', 'restore') AND quantity > 0) OR (kind IN ('use', 'revoke') AND quantity < 0)",
            name=op.f("ck_entitlement_entries_sign_by_kind"),
        ),
        sa.CheckConstraint("kind IN ('grant', 'revoke', 'use', 'restore')", name=op.f("ck_entitlement_entries_kind")),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_entitlement_entries_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_entitlement_entries_member_id_members")),
        sa.ForeignKeyConstraint(
            ["vehicle_id"], ["vehicles.id"], name=op.f("fk_entitlement_entries_vehicle_id_vehicles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_entitlement_entries_idempotency_key")),
    )
    op.create_index(
        "ix_entitlement_entries_member",
        "entitlement_entries",
        ["member_id", "benefit_code", "year_start"],
        unique=False,
    )
    op.create_index(
        "ix_entitlement_entries_vehicle",
        "entitlement_entries",
        ["vehicle_id", "benefit_code", "year_start"],
        unique=False,
        postgresql_where=sa.text("vehicle_id IS NOT NULL"),
        sqlite_where=sa.text("vehicle_id IS NOT NULL"),
    )
    _append_only("entitlement_entries")


def _append_only(table: str) -> None:
    """The function loyalty_forbid_mutation() comes from revision 0001."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION loyalty_forbid_mutation()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade() -> None:
    op.drop_index(
        "ix_entitlement_entries_vehicle",
        table_name="entitlement_entries",
        postgresql_where=sa.text("vehicle_id IS NOT NULL"),
        sqlite_where=sa.text("vehicle_id IS NOT NULL"),
    )
    op.drop_index("ix_entitlement_entries_member", table_name="entitlement_entries")
    op.drop_table("entitlement_entries")
    op.drop_index(
        "ix_bookings_open",
        table_name="bookings",
        postgresql_where=sa.text("status = 'booked'"),
        sqlite_where=sa.text("status = 'booked'"),
    )
    op.drop_index("ix_bookings_member_created", table_name="bookings")
    op.drop_table("bookings")
    op.drop_table("benefit_pilot_members")
    op.drop_index("ix_dealer_slots_dealer_day", table_name="dealer_slots")
    op.drop_table("dealer_slots")
    op.drop_index(op.f("ix_benefits_catalog_id"), table_name="benefits")
    op.drop_table("benefits")
    op.drop_table("benefit_catalogs")
