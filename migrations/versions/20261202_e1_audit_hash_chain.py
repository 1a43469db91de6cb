"""audit log hash chain: chain_seq, prev_hash, row_hash, assigned by a trigger on INSERT

Revision ID: e1
Revises: d1
Create Date: 2026-12-02 12:00:00

Each audit row carries the SHA-256 of its fields and of the previous row's hash
(``app/core/audit_chain.py`` defines the text hashed; ``loyalty_audit_canonical`` here builds the
same). On PostgreSQL a BEFORE INSERT trigger assigns the chain under an advisory lock; existing rows
are chained in ``id`` order. On SQLite (``make run``) the app's flush assigns it (the table is
rebuilt, so its append-only triggers are dropped and created again).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from app.core.audit_chain import CHAIN_LOCK, GENESIS_HASH, row_hash

revision = "e1"
down_revision = "d1"
branch_labels = None
depends_on = None

CANONICAL_SQL = """
CREATE OR REPLACE FUNCTION loyalty_audit_canonical(
    seq bigint, prev text, at timestamptz, actor_type text, actor_id text, action text,
    subject_type text, subject_id text, reason text, details text, request_id text
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT json_build_array(
        seq, prev, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        actor_type, actor_id, action, subject_type, subject_id, reason, details, request_id
    )::text
$$;

CREATE OR REPLACE FUNCTION loyalty_audit_hash(
    seq bigint, prev text, at timestamptz, actor_type text, actor_id text, action text,
    subject_type text, subject_id text, reason text, details text, request_id text
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(loyalty_audit_canonical(
        seq, prev, at, actor_type, actor_id, action, subject_type, subject_id, reason, details, request_id
    ), 'UTF8')), 'hex')
$$;
"""

# The lock serializes the writers; each statement of this (volatile) function sees the rows
# committed before the lock was granted and those inserted earlier by the same statement.
TRIGGER_SQL = f"""
CREATE OR REPLACE FUNCTION loyalty_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('{CHAIN_LOCK}'));
    SELECT chain_seq, row_hash INTO last_seq, last_hash FROM audit_log ORDER BY chain_seq DESC LIMIT 1;
    NEW.chain_seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, '{GENESIS_HASH}');
    NEW.row_hash := loyalty_audit_hash(
        NEW.chain_seq, NEW.prev_hash, NEW.occurred_at, NEW.actor_type, NEW.actor_id, NEW.action,
        NEW.subject_type, NEW.subject_id, NEW.reason, NEW.details::text, NEW.request_id
    );
    RETURN NEW;
END $$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION loyalty_audit_chain();
"""

BACKFILL_SQL = f"""
DO $$
DECLARE
    r record;
    seq bigint := 0;
    previous text := '{GENESIS_HASH}';
    current_hash text;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        seq := seq + 1;
        current_hash := loyalty_audit_hash(
            seq, previous, r.occurred_at, r.actor_type, r.actor_id, r.action,
            r.subject_type, r.subject_id, r.reason, r.details::text, r.request_id
        );
        UPDATE audit_log SET chain_seq = seq, prev_hash = previous, row_hash = current_hash WHERE id = r.id;
        previous := current_hash;
    END LOOP;
END $$;
"""

_COLUMNS = (("chain_seq", sa.BigInteger()), ("prev_hash", sa.String(length=64)), ("row_hash", sa.String(length=64)))
_SQLITE_GUARDS = {
    "update": "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "delete": "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
}


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("audit_log", sa.Column(name, type_, nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        _upgrade_sqlite()
        return
    op.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
    op.execute(CANONICAL_SQL)
    op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    op.execute(BACKFILL_SQL)
    op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    for name, type_ in _COLUMNS:
        op.alter_column("audit_log", name, nullable=False, existing_type=type_)
    op.create_unique_constraint(op.f("uq_audit_log_chain_seq"), "audit_log", ["chain_seq"])
    op.execute(TRIGGER_SQL)


def _upgrade_sqlite() -> None:
    """Chain the existing rows in Python (the same ``row_hash`` the app uses on SQLite)."""
    bind = op.get_bind()
    for name in _SQLITE_GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{name}")
    rows = bind.execute(
        sa.text(
            "SELECT id, occurred_at, actor_type, actor_id, action, subject_type, subject_id, reason, "
            "CAST(details AS TEXT) AS details_text, request_id FROM audit_log ORDER BY id"
        )
    ).mappings()
    previous, updates = GENESIS_HASH, []
    for seq, row in enumerate(rows, start=1):
        fields = {k: v for k, v in row.items() if k != "id"}
        fields["occurred_at"] = dt.datetime.fromisoformat(str(row["occurred_at"])).replace(tzinfo=dt.UTC)
        current = row_hash(chain_seq=seq, prev_hash=previous, **fields)
        updates.append({"id": row["id"], "seq": seq, "prev": previous, "hash": current})
        previous = current
    if updates:
        bind.execute(
            sa.text("UPDATE audit_log SET chain_seq = :seq, prev_hash = :prev, row_hash = :hash WHERE id = :id"),
            updates,
        )
    with op.batch_alter_table("audit_log") as batch:  # SQLite: the table is rebuilt, its triggers dropped
        for name, type_ in _COLUMNS:
            batch.alter_column(name, nullable=False, existing_type=type_)
        batch.create_unique_constraint(op.f("uq_audit_log_chain_seq"), ["chain_seq"])
    for guard in _SQLITE_GUARDS.values():
        op.execute(guard)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_chain ON audit_log")
        op.execute("DROP FUNCTION loyalty_audit_chain()")
        op.drop_constraint(op.f("uq_audit_log_chain_seq"), "audit_log", type_="unique")
        for name, _type in reversed(_COLUMNS):
            op.drop_column("audit_log", name)
        op.execute(
            "DROP FUNCTION loyalty_audit_hash(bigint, text, timestamptz, text, text, text, text, text, text, text, text)"
        )
        op.execute(
            "DROP FUNCTION loyalty_audit_canonical(bigint, text, timestamptz, text, text, text, text, text, text, text, text)"
        )
        return
    for name in _SQLITE_GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{name}")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint(op.f("uq_audit_log_chain_seq"), type_="unique")
        for name, _type in reversed(_COLUMNS):
            batch.drop_column(name)
    for guard in _SQLITE_GUARDS.values():
        op.execute(guard)
