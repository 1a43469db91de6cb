"""care: callback tasks close with an outcome; agents' notes on a task (append-only)

Revision ID: i3
Revises: i2
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i3"
down_revision = "i2"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("callback_tasks") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch.create_check_constraint(
            "outcome", "outcome IN ('resolved', 'follow_up', 'unreachable', 'declined')"
        )
    op.create_table(
        "callback_task_notes",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("task_id", _BIGINT, nullable=False),
        sa.Column("author_id", _BIGINT, nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("body", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["callback_tasks.id"], name=op.f("fk_callback_task_notes_task_id_callback_tasks")
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["operators.id"], name=op.f("fk_callback_task_notes_author_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_task_notes")),
    )
    op.create_index(op.f("ix_callback_task_notes_task_id"), "callback_task_notes", ["task_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_task_notes_task_id"), table_name="callback_task_notes")
    op.drop_table("callback_task_notes")
    with op.batch_alter_table("callback_tasks") as batch:
        batch.drop_constraint("outcome", type_="check")
        batch.drop_column("outcome")
