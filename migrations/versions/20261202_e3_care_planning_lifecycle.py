"""care planning: birthday month-day, vehicle service and insurance dates, maintenance intervals,
member lifecycle with history, customer-service callback tasks

Revision ID: e3
Revises: e2
Create Date: 2026-12-02 13:00:00

``members.birth_month_day`` (MMDD) is backfilled from the encrypted birthday, decrypted in Python
with the app's cipher, ``BATCH`` members at a time in id order. ``vehicles.last_service_km`` starts
as the last known mileage of cars with a service date (the only odometer reading we had).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import context, op

from app.config import load_settings
from app.core.security import PiiCipher

revision = "e3"
down_revision = "e2"
branch_labels = None
depends_on = None

BATCH = 1000
BIRTH_MONTH_DAY_COMMENT = (
    "MMDD of the encrypted birthday, in the clear for set-based birthday planning; "
    "not identifying without the year"
)
_OPEN = sa.text("status = 'open'")
_STAGES = ("new", "growing", "mature", "churn_risk", "churned")
#: Defaults an operator edits in the table: 12 months or 10,000 km, whichever comes first.
INTERVALS = [
    {"model_code": "default", "months": 12, "km": 10_000},
    {"model_code": "MAGOTAN", "months": 12, "km": 10_000},
    {"model_code": "SAGITAR", "months": 12, "km": 7_500},
    {"model_code": "TIGUAN", "months": 12, "km": 10_000},
    {"model_code": "ID4", "months": 24, "km": 30_000},
]


def _backfill_birth_month_day(cipher: PiiCipher) -> None:
    """Decrypt the birthdays ``BATCH`` members at a time (id order) and store their MMDD."""
    bind = op.get_bind()
    select = sa.text(
        "SELECT id, birthday FROM members WHERE birthday IS NOT NULL AND id > :after ORDER BY id LIMIT :batch"
    )
    after = 0
    while True:
        rows = bind.execute(select, {"after": after, "batch": BATCH}).all()
        if not rows:
            return
        updates = []
        for member_id, ciphertext in rows:
            day = dt.date.fromisoformat(cipher.decrypt(ciphertext))
            updates.append({"id": member_id, "mmdd": day.month * 100 + day.day})
        bind.execute(sa.text("UPDATE members SET birth_month_day = :mmdd WHERE id = :id"), updates)
        after = rows[-1][0]


def upgrade() -> None:
    op.add_column(
        "members", sa.Column("birth_month_day", sa.SmallInteger(), nullable=True, comment=BIRTH_MONTH_DAY_COMMENT)
    )
    _backfill_birth_month_day(PiiCipher(context.config.attributes.get("data_keys") or load_settings().data_keys))
    op.create_index("ix_members_birth_month_day", "members", ["birth_month_day"])

    op.add_column("vehicles", sa.Column("last_service_km", sa.Integer(), nullable=True))
    op.add_column("vehicles", sa.Column("insurance_ends_on", sa.Date(), nullable=True))
    op.add_column("vehicles", sa.Column("insurer", sa.String(length=64), nullable=True))
    op.execute("UPDATE vehicles SET last_service_km = last_mileage_km WHERE last_service_on IS NOT NULL")
    op.create_index(op.f("ix_vehicles_insurance_ends_on"), "vehicles", ["insurance_ends_on"])

    intervals = op.create_table(
        "maintenance_intervals",
        sa.Column("model_code", sa.String(length=32), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("km", sa.Integer(), nullable=False),
        sa.CheckConstraint("months > 0 AND km > 0", name=op.f("ck_maintenance_intervals_positive")),
        sa.PrimaryKeyConstraint("model_code", name=op.f("pk_maintenance_intervals")),
    )
    op.bulk_insert(intervals, INTERVALS)

    op.create_table(
        "member_lifecycle",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_interaction_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"stage IN {_STAGES}", name=op.f("ck_member_lifecycle_stage")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_member_lifecycle_member_id_members")),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_lifecycle")),
    )
    op.create_index("ix_member_lifecycle_stage", "member_lifecycle", ["stage"])

    op.create_table(
        "member_lifecycle_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=True),
        sa.Column("to_stage", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_lifecycle_history_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_lifecycle_history")),
    )
    op.create_index("ix_member_lifecycle_history_member_at", "member_lifecycle_history", ["member_id", "at"])
    if op.get_bind().dialect.name == "postgresql":  # loyalty_forbid_mutation() comes from revision 0001
        op.execute(
            "CREATE TRIGGER member_lifecycle_history_append_only BEFORE UPDATE OR DELETE ON member_lifecycle_history "
            "FOR EACH ROW EXECUTE FUNCTION loyalty_forbid_mutation()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER member_lifecycle_history_no_{action.lower()} BEFORE {action} "
                "ON member_lifecycle_history BEGIN SELECT RAISE(ABORT, 'member_lifecycle_history is append-only'); END"
            )

    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.CheckConstraint("status IN ('open', 'claimed', 'closed')", name=op.f("ck_callback_tasks_status")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_callback_tasks_member_id_members")),
        sa.ForeignKeyConstraint(["claimed_by"], ["operators.id"], name=op.f("fk_callback_tasks_claimed_by_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_tasks")),
        sa.UniqueConstraint("member_id", "reason", "period", name=op.f("uq_callback_tasks_member_id_reason_period")),
    )
    op.create_index("ix_callback_tasks_open", "callback_tasks", ["created_at"], postgresql_where=_OPEN, sqlite_where=_OPEN)


def downgrade() -> None:
    op.drop_index("ix_callback_tasks_open", table_name="callback_tasks")
    op.drop_table("callback_tasks")
    op.drop_table("member_lifecycle_history")  # its triggers go with it
    op.drop_index("ix_member_lifecycle_stage", table_name="member_lifecycle")
    op.drop_table("member_lifecycle")
    op.drop_table("maintenance_intervals")
    op.drop_index(op.f("ix_vehicles_insurance_ends_on"), table_name="vehicles")
    with op.batch_alter_table("vehicles") as batch:
        batch.drop_column("insurer")
        batch.drop_column("insurance_ends_on")
        batch.drop_column("last_service_km")
    op.drop_index("ix_members_birth_month_day", table_name="members")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("birth_month_day")
