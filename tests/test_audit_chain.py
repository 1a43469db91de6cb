"""The audit log is tamper-evident: rows are hash-chained by the database and ``flask audit verify``
reports the first broken link (an edit, a deletion), also with 20 writers at once."""

from __future__ import annotations

import datetime as dt
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from app.core import audit, audit_chain
from app.core.audit import AuditEntry
from app.core.db import db
from tests.conftest import run_concurrently

pytestmark = pytest.mark.postgres

TRICKY = 'quote " backslash \\ newline \n tab \t control \x01 中文 😀'


def _record(n: int, **extra) -> None:
    audit.record(actor=("cli", f"op{n}"), action="member.read", subject=("member", n), **extra)


def _raw_count() -> int:
    return db.session.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()


def _tamper(statement: str) -> None:
    """What a database superuser can do: switch the append-only triggers off for a moment."""
    db.session.execute(sa.text("SET LOCAL session_replication_role = replica"))
    db.session.execute(sa.text(statement))
    db.session.execute(sa.text("SET LOCAL session_replication_role = origin"))


def test_python_canonical_text_is_the_sql_functions_text(app_ctx):
    moment = dt.datetime(2026, 12, 2, 3, 4, 5, 60, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    fields = {
        "chain_seq": 9_000_000_000,
        "prev_hash": "ab" * 32,
        "occurred_at": moment,
        "actor_type": "staff",
        "actor_id": TRICKY,
        "action": "member.read",
        "subject_type": "member",
        "subject_id": "42",
        "reason": None,
        "details_text": '{"a": [1.50, 2], "k": "中"}',
        "request_id": "req-1",
    }
    sql = db.session.execute(
        sa.text(
            "SELECT loyalty_audit_canonical(:chain_seq, :prev_hash, :occurred_at, :actor_type, :actor_id, :action,"
            " :subject_type, :subject_id, :reason, :details_text, :request_id),"
            " loyalty_audit_hash(:chain_seq, :prev_hash, :occurred_at, :actor_type, :actor_id, :action,"
            " :subject_type, :subject_id, :reason, :details_text, :request_id)"
        ),
        fields,
    ).one()
    assert sql[0] == audit_chain.canonical(**fields)
    assert sql[1] == audit_chain.row_hash(**fields)
    assert '"2026-12-01T19:04:05.000060Z"' in sql[0]


def test_rows_are_chained_and_verify(app_ctx):
    for n in range(5):
        _record(n, reason=TRICKY, details={"member": n, "note": TRICKY, "ratio": 1.5})
    _record(5, details=None)
    db.session.commit()
    rows = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.chain_seq)).all()
    assert [r.chain_seq for r in rows] == list(range(1, 7))
    assert rows[0].prev_hash == audit_chain.GENESIS_HASH
    assert all(later.prev_hash == earlier.row_hash for earlier, later in itertools.pairwise(rows))
    verdict = audit_chain.verify(db.session())
    assert (verdict.ok, verdict.rows, verdict.head_seq, verdict.head_hash) == (True, 6, 6, rows[-1].row_hash)


def test_an_edited_row_is_reported_at_that_row(app, app_ctx):
    for n in range(4):
        _record(n, details={"member": n})
    db.session.commit()
    _tamper("""UPDATE audit_log SET details = '{"member": 99}' WHERE chain_seq = 3""")

    broken = audit_chain.verify(db.session()).broken
    assert (broken.chain_seq, broken.problem) == (3, "row_hash")
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "BROKEN at seq 3 (row_hash)" in result.output


def test_a_deleted_row_is_reported_where_the_gap_is(app, app_ctx):
    for n in range(5):
        _record(n)
    db.session.commit()
    _tamper("DELETE FROM audit_log WHERE chain_seq = 3")

    broken = audit_chain.verify(db.session()).broken
    assert (broken.chain_seq, broken.problem, broken.expected, broken.found) == (3, "gap", "seq 3", "seq 4")
    assert audit_chain.verify(db.session(), from_seq=4).broken.problem == "gap"  # its anchor is gone
    assert audit_chain.verify(db.session(), from_seq=5).ok


def test_a_rehashed_row_still_breaks_the_next_link(app_ctx):
    """Editing a row and recomputing its hash moves the break to the next row's prev_hash."""
    for n in range(3):
        _record(n)
    db.session.commit()
    _tamper("UPDATE audit_log SET actor_id = 'someone', row_hash = repeat('f', 64) WHERE chain_seq = 2")
    broken = audit_chain.verify(db.session()).broken
    assert broken.chain_seq == 2  # its own hash no longer matches
    _tamper(
        "UPDATE audit_log SET row_hash = loyalty_audit_hash(chain_seq, prev_hash, occurred_at, actor_type, actor_id,"
        " action, subject_type, subject_id, reason, details::text, request_id) WHERE chain_seq = 2"
    )
    broken = audit_chain.verify(db.session()).broken
    assert (broken.chain_seq, broken.problem) == (3, "prev_hash")


def test_the_cli_reports_ok_with_the_head(app, app_ctx):
    _record(1)
    _record(2)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    head = db.session.scalar(sa.select(AuditEntry.row_hash).where(AuditEntry.chain_seq == 2))
    assert result.output.strip() == f"ok, 2 rows; head seq 2 hash {head}"
    assert "ok, 1 rows" in app.test_cli_runner().invoke(args=["audit", "verify", "--from-seq", "2"]).output


def test_the_insert_waits_for_the_commit_so_the_chain_lock_is_held_briefly(app_ctx):
    _record(1)
    db.session.flush()
    assert _raw_count() == 0  # other work flushes; the audit row does not
    db.session.commit()
    assert _raw_count() == 1


def test_a_query_of_the_log_sees_the_rows_recorded_in_its_unit_of_work(app_ctx):
    _record(1)
    assert db.session.scalar(sa.select(AuditEntry.subject_id)) == "1"


def test_a_row_recorded_in_a_rolled_back_savepoint_is_dropped(app_ctx):
    _record(1)
    savepoint = db.session.begin_nested()
    _record(2)
    savepoint.rollback()
    db.session.commit()
    assert db.session.scalars(sa.select(AuditEntry.subject_id)).all() == ["1"]


def test_the_sqlite_fallback_chains_in_python_and_verifies(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/audit.db")
    AuditEntry.__table__.create(engine)
    factory = sessionmaker(bind=engine)
    audit_chain.init_session_factory(factory)
    with factory() as session:
        for n in range(3):
            session.add(audit._entry(actor=("cli", "x"), action="a", subject=("member", n), details={"n": TRICKY}))
            session.add(audit._entry(actor=("cli", "y"), action="b", subject=("member", n), reason=TRICKY))
            session.commit()
        assert session.scalars(sa.select(AuditEntry.chain_seq).order_by(AuditEntry.id)).all() == list(range(1, 7))
        assert audit_chain.verify(session).ok
        session.execute(sa.text("""UPDATE audit_log SET details = '{"n": 1}' WHERE chain_seq = 5"""))
        broken = audit_chain.verify(session).broken
        assert (broken.chain_seq, broken.problem) == (5, "row_hash")
    engine.dispose()


def test_on_sqlite_a_row_held_back_and_one_kept_regardless_are_chained_in_the_same_flush(tmp_path):
    """A refused read (kept regardless) flushed while an earlier row waits for the commit: the
    chain's tail query releases the waiting row into that flush, and it must be chained too."""
    engine = sa.create_engine(f"sqlite:///{tmp_path}/audit.db")
    AuditEntry.__table__.create(engine)
    factory = sessionmaker(bind=engine)
    audit_chain.init_session_factory(factory)
    audit.init_session_factory(factory)
    with factory() as session:
        session.connection()
        held = audit._entry(actor=("staff", "x"), action="slot.published", subject=("dealer_slot", 1))
        session.info.setdefault(audit._held_back.key, []).append((session.get_transaction(), held))
        session.add(audit._entry(actor=("staff", "x"), action="member.read", subject=("member", 1)))
        session.flush()
        session.commit()
        assert sorted(session.scalars(sa.select(AuditEntry.chain_seq))) == [1, 2]
        assert audit_chain.verify(session).ok
    engine.dispose()


@pytest.mark.committed
def test_twenty_concurrent_writers_make_one_chain_without_gaps_or_forks(app):
    def write(i: int) -> None:
        with app.app_context():
            for round_ in range(5):
                audit.record(actor=("staff", f"s{i}"), action="member.read", subject=("member", i * 100 + round_))
                db.session.execute(sa.text("SELECT pg_sleep(0.001)"))
                db.session.commit()

    results = run_concurrently(20, write)
    assert [r for r in results if r is not None] == []
    with app.app_context():
        seqs = db.session.scalars(sa.select(AuditEntry.chain_seq).order_by(AuditEntry.chain_seq)).all()
        assert seqs == list(range(1, 101))
        prevs = db.session.scalars(sa.select(AuditEntry.prev_hash)).all()
        assert len(set(prevs)) == 100  # no fork: no two rows claim the same predecessor
        verdict = audit_chain.verify(db.session())
        assert (verdict.ok, verdict.rows) == (True, 100)


@pytest.mark.committed
def test_writers_in_one_statement_and_in_parallel_sessions_interleave_cleanly(app):
    """Many rows in one flush (one multi-row INSERT) while others write: still one chain."""

    def write(i: int) -> None:
        with app.app_context():
            for n in range(10):
                _record(i * 10 + n)
            db.session.commit()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(8)))
    with app.app_context():
        verdict = audit_chain.verify(db.session())
        assert (verdict.ok, verdict.rows) == (True, 80)
