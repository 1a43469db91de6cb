"""CRM outbox, per-member sync state, member merges

Revision ID: f2
Revises: g2
Create Date: 2026-12-02 13:15:00

* ``crm_outbox``: changes the CRM must learn, per member in ``seq`` order (ids only, no personal data).
* ``crm_member_sync``: per member the last ``seq`` handed out and the last delivery.
* ``members``: status ``merged`` with ``merged_into_id``; ``profile_updated_at`` (last-writer-wins
  against CRM profile updates).
* ``member_merges``: merge requests (console, supervisor-approved) and applied merges (CRM).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "f2"
down_revision = "g2"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_PENDING = sa.text("status = 'pending'")
_OPEN = sa.text("status IN ('pending', 'dead')")
_OLD_STATUSES = "status IN ('pre_enrolled', 'active', 'frozen', 'closed')"
_NEW_STATUSES = "status IN ('pre_enrolled', 'active', 'frozen', 'closed', 'merged')"


def upgrade() -> None:
    op.add_column("members", sa.Column("profile_updated_at", _TS, nullable=True))
    op.add_column("members", sa.Column("merged_into_id", _BIGINT, nullable=True))
    with op.batch_alter_table("members") as batch:
        batch.create_foreign_key("fk_members_merged_into_id_members", "members", ["merged_into_id"], ["id"])
        batch.drop_constraint(op.f("ck_members_status"), type_="check")
        batch.create_check_constraint(op.f("ck_members_status"), sa.text(_NEW_STATUSES))

    op.create_table(
        "crm_outbox",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("member_id", _BIGINT, nullable=False),
        sa.Column("seq", _BIGINT, nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.CheckConstraint(
            "kind IN ('member', 'identity', 'consent', 'ownership', 'tier', 'balance', 'snapshot', 'merge')",
            name=op.f("ck_crm_outbox_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead', 'skipped')", name=op.f("ck_crm_outbox_status")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_crm_outbox_member_id_members"),
        sa.PrimaryKeyConstraint("id", name="pk_crm_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_crm_outbox_idempotency_key"),
        sa.UniqueConstraint("member_id", "seq", name="uq_crm_outbox_member_id_seq"),
    )
    op.create_index("ix_crm_outbox_due", "crm_outbox", ["next_attempt_at", "id"], postgresql_where=_PENDING)
    op.create_index("ix_crm_outbox_member_open", "crm_outbox", ["member_id", "seq"], postgresql_where=_OPEN)

    op.create_table(
        "crm_member_sync",
        sa.Column("member_id", _BIGINT, nullable=False),
        sa.Column("last_seq", _BIGINT, nullable=False),
        sa.Column("last_delivered_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_crm_member_sync_member_id_members"),
        sa.PrimaryKeyConstraint("member_id", name="pk_crm_member_sync"),
    )

    op.create_table(
        "member_merges",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("request_key", sa.String(length=64), nullable=False),
        sa.Column("survivor_id", _BIGINT, nullable=False),
        sa.Column("merged_ids", _JSON, nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("applied_at", _TS, nullable=True),
        sa.Column("summary", _JSON, nullable=True),
        sa.CheckConstraint("source IN ('crm', 'console')", name=op.f("ck_member_merges_source")),
        sa.CheckConstraint(
            "status IN ('requested', 'applied', 'rejected')", name=op.f("ck_member_merges_status")
        ),
        sa.ForeignKeyConstraint(["survivor_id"], ["members.id"], name="fk_member_merges_survivor_id_members"),
        sa.PrimaryKeyConstraint("id", name="pk_member_merges"),
        sa.UniqueConstraint("request_key", name="uq_member_merges_request_key"),
    )
    op.create_index("ix_member_merges_survivor_id", "member_merges", ["survivor_id"])


def downgrade() -> None:
    op.drop_index("ix_member_merges_survivor_id", table_name="member_merges")
    op.drop_table("member_merges")
    op.drop_table("crm_member_sync")
    op.drop_index("ix_crm_outbox_member_open", table_name="crm_outbox")
    op.drop_index("ix_crm_outbox_due", table_name="crm_outbox")
    op.drop_table("crm_outbox")
    # Merged members cannot stay merged without the column: they become closed.
    op.execute("UPDATE members SET status = 'closed' WHERE status = 'merged'")
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(op.f("ck_members_status"), type_="check")
        batch.create_check_constraint(op.f("ck_members_status"), sa.text(_OLD_STATUSES))
        batch.drop_constraint("fk_members_merged_into_id_members", type_="foreignkey")
        batch.drop_column("merged_into_id")
        batch.drop_column("profile_updated_at")
