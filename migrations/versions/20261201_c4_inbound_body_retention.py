"""inbound events: raw bodies can be erased (retention, withdrawal), a SHA-256 of each is kept

Revision ID: c4
Revises: c3
Create Date: 2026-12-01 12:00:00

Bodies are erased by the nightly ``purge_inbound_bodies`` job once an event has been processed
for ``inbox.body_retention_days`` (30 by default), not by this migration. A downgrade cannot bring
erased bodies back: it refuses while any is erased.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c4"
down_revision = "c3"
branch_labels = None
depends_on = None

_KEPT = sa.text("body IS NOT NULL")


def upgrade() -> None:
    op.add_column("inbound_events", sa.Column("body_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("inbound_events") as batch:
        batch.alter_column("body", nullable=True, existing_type=sa.LargeBinary())
    op.create_index(
        "ix_inbound_events_body_kept",
        "inbound_events",
        ["processed_at"],
        unique=False,
        postgresql_where=_KEPT,
        sqlite_where=_KEPT,
    )


def downgrade() -> None:
    erased = op.get_bind().scalar(sa.text("SELECT count(*) FROM inbound_events WHERE body IS NULL"))
    if erased:
        raise RuntimeError(f"{erased} inbound events have erased bodies; they cannot be restored")
    op.drop_index("ix_inbound_events_body_kept", table_name="inbound_events", postgresql_where=_KEPT)
    with op.batch_alter_table("inbound_events") as batch:
        batch.alter_column("body", nullable=False, existing_type=sa.LargeBinary())
    op.drop_column("inbound_events", "body_sha256")
