"""consents: the stated time kept apart from the order of recording

Revision ID: c1
Revises: b1
Create Date: 2026-12-01 09:00:00

The current consent per purpose is the last one *recorded* (highest id). The time a partner
states (the DMS ``accepted_at``) used to be stored as ``recorded_at``; it moves to ``stated_at``.
Existing DMS rows keep their ``recorded_at`` (the table is append-only evidence) and get the same
value as ``stated_at``; the append-only trigger is suspended for that one statement.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c1"
down_revision = "b1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("consents", sa.Column("stated_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE consents DISABLE TRIGGER consents_append_only")
        op.execute("UPDATE consents SET stated_at = recorded_at WHERE channel = 'dms'")
        op.execute("ALTER TABLE consents ENABLE TRIGGER consents_append_only")
    op.drop_index("ix_consents_member_purpose", table_name="consents")
    op.create_index("ix_consents_member_purpose_id", "consents", ["member_id", "purpose", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_consents_member_purpose_id", table_name="consents")
    op.create_index("ix_consents_member_purpose", "consents", ["member_id", "purpose", "recorded_at"], unique=False)
    op.drop_column("consents", "stated_at")
