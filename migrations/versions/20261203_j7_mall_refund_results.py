"""mall payments: WeChat Pay's refund result (notification or query) before a refund counts as done

Revision ID: j7
Revises: i7
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "j7"
down_revision = "i7"
branch_labels = None
depends_on = None

_OLD = "status IN ('awaiting', 'paid', 'closed', 'refunding', 'refunded')"
_NEW = "status IN ('awaiting', 'paid', 'closed', 'refunding', 'refunded', 'refund_failed')"


def upgrade() -> None:
    with op.batch_alter_table("mall_payments") as batch:
        batch.add_column(sa.Column("refund_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("refund_state", sa.String(length=16), nullable=True))
        batch.alter_column("status", existing_type=sa.String(length=10), type_=sa.String(length=16))
        batch.drop_constraint(op.f("ck_mall_payments_status"), type_="check")
        batch.create_check_constraint(op.f("ck_mall_payments_status"), _NEW)
    # Refunds WeChat accepted before this release were counted done at acceptance; keep them so.
    op.execute("UPDATE mall_payments SET refund_state = 'SUCCESS' WHERE status = 'refunded'")


def downgrade() -> None:
    op.execute("UPDATE mall_payments SET status = 'refunding' WHERE status = 'refund_failed'")
    with op.batch_alter_table("mall_payments") as batch:
        batch.drop_constraint(op.f("ck_mall_payments_status"), type_="check")
        batch.create_check_constraint(op.f("ck_mall_payments_status"), _OLD)
        batch.alter_column("status", existing_type=sa.String(length=16), type_=sa.String(length=10))
        batch.drop_column("refund_state")
        batch.drop_column("refund_requested_at")
