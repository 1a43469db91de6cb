"""dealer visibility and vehicle-claim limits: servicing dealers, claims per (VIN, member), routing

Revision ID: e2
Revises: e1
Create Date: 2026-12-02 12:45:00

* ``vehicle_servicings``: which dealers serviced which car (the *servicing dealer* of the back-office
  visibility rule). Filled by DMS ``service.completed`` events from now on; earlier visits are not
  reconstructed (their bodies are encrypted, and the ledger does not name the car).
* ``vehicle_claims``: one pending claim per (VIN, member) instead of one per VIN, so a member is
  never told that someone else claimed the car; ``dealer_id`` routes the claim, ``escalated`` marks
  one claimed over the VIN's cap (HQ review only).

A downgrade restores one pending claim per VIN: the oldest stays pending, later ones are rejected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e2"
down_revision = "e1"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "vehicle_servicings",
        sa.Column("vehicle_id", sa.BigInteger(), nullable=False),
        sa.Column("dealer_id", sa.BigInteger(), nullable=False),
        sa.Column("first_serviced_on", sa.Date(), nullable=False),
        sa.Column("last_serviced_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"], name="fk_vehicle_servicings_dealer_id_dealers"),
        sa.ForeignKeyConstraint(["vehicle_id"], ["vehicles.id"], name="fk_vehicle_servicings_vehicle_id_vehicles"),
        sa.PrimaryKeyConstraint("vehicle_id", "dealer_id", name="pk_vehicle_servicings"),
    )
    op.create_index("ix_vehicle_servicings_dealer", "vehicle_servicings", ["dealer_id", "vehicle_id"])

    op.add_column("vehicle_claims", sa.Column("dealer_id", sa.BigInteger(), nullable=True))
    op.add_column("vehicle_claims", sa.Column("escalated", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("vehicle_claims") as batch:
        batch.create_foreign_key("fk_vehicle_claims_dealer_id_dealers", "dealers", ["dealer_id"], ["id"])
        batch.create_index("ix_vehicle_claims_dealer_id", ["dealer_id"])
    op.drop_index("uq_vehicle_claims_open_vin_index", table_name="vehicle_claims", postgresql_where=_PENDING)
    op.create_index(
        "uq_vehicle_claims_open_vin_member",
        "vehicle_claims",
        ["vin_index", "member_id"],
        unique=True,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.execute(
        "UPDATE vehicle_claims SET status = 'rejected', decided_by = 'migration:e2', note = 'downgrade' "
        "WHERE status = 'pending' AND EXISTS (SELECT 1 FROM vehicle_claims older WHERE older.status = 'pending' "
        "AND older.vin_index = vehicle_claims.vin_index AND older.id < vehicle_claims.id)"
    )
    op.drop_index("uq_vehicle_claims_open_vin_member", table_name="vehicle_claims", postgresql_where=_PENDING)
    op.create_index(
        "uq_vehicle_claims_open_vin_index",
        "vehicle_claims",
        ["vin_index"],
        unique=True,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    with op.batch_alter_table("vehicle_claims") as batch:
        batch.drop_index("ix_vehicle_claims_dealer_id")
        batch.drop_constraint("fk_vehicle_claims_dealer_id_dealers", type_="foreignkey")
        batch.drop_column("escalated")
        batch.drop_column("dealer_id")
    op.drop_index("ix_vehicle_servicings_dealer", table_name="vehicle_servicings")
    op.drop_table("vehicle_servicings")
