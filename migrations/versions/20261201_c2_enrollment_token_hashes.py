"""enrollment tokens: keep only the SHA-256 of the bearer secret

Revision ID: c2
Revises: c1
Create Date: 2026-12-01 10:00:00

Existing tokens are hashed in place, so a code already shown keeps working. Order QR rows kept
the secret in ``scene`` and a working ``ticket``/``url``; those are redacted (the token id stays).
A downgrade cannot bring plaintext back: tokens get an unusable placeholder and must be shown
again (which issues a fresh secret).
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "c2"
down_revision = "c1"
branch_labels = None
depends_on = None

tokens = sa.table("enrollment_tokens", sa.column("id", sa.BigInteger), sa.column("token", sa.String))


def upgrade() -> None:
    op.add_column("enrollment_tokens", sa.Column("token_hash", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    for row_id, token in bind.execute(sa.select(tokens.c.id, tokens.c.token)).all():
        bind.execute(
            sa.text("UPDATE enrollment_tokens SET token_hash = :h WHERE id = :id"),
            {"h": hashlib.sha256(token.encode()).hexdigest(), "id": row_id},
        )
    op.execute(
        "UPDATE qr_codes SET scene = 'order:#' || enrollment_token_id, ticket = '', url = '' WHERE kind = 'order'"
    )
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.alter_column("token_hash", nullable=False)
        batch.drop_constraint("uq_enrollment_tokens_token", type_="unique")
        batch.drop_column("token")
        batch.create_unique_constraint("uq_enrollment_tokens_token_hash", ["token_hash"])


def downgrade() -> None:
    op.add_column("enrollment_tokens", sa.Column("token", sa.String(length=32), nullable=True))
    op.execute("UPDATE enrollment_tokens SET token = substr(token_hash, 1, 32)")  # unusable: show again
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.alter_column("token", nullable=False)
        batch.drop_constraint("uq_enrollment_tokens_token_hash", type_="unique")
        batch.drop_column("token_hash")
        batch.create_unique_constraint("uq_enrollment_tokens_token", ["token"])
