"""The connection pool: a connection the server ended is replaced at checkout, without a ping."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
import sqlalchemy as sa

from app.core.db import HELD_READS, UTCDateTime, create_engine, db
from tests.conftest import PG_URL

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def _backend_pid(connection: sa.Connection) -> int:
    return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def test_pooled_connections_the_server_ended_are_replaced_at_checkout(app):
    engine = db.engine
    with engine.connect() as first, engine.connect() as second:  # two idle connections in the pool
        pooled = {_backend_pid(first), _backend_pid(second)}
    # Autocommit: pg_stat_activity is snapshotted once per transaction, so polling inside one
    # transaction would never see the backends leave.
    outside = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with outside.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(pid) FROM unnest(:pids) AS pid"), {"pids": list(pooled)})
        deadline = time.monotonic() + 10
        while admin.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": list(pooled)}
        ).scalar():
            assert time.monotonic() < deadline, "the backends did not exit"
            time.sleep(0.05)
    outside.dispose()
    for _ in range(3):  # each checkout finds a dead connection first and gets a fresh one
        with engine.connect() as connection:
            assert _backend_pid(connection) not in pooled


def _read(engine: sa.Engine, statement: sa.Select, params: dict | None = None) -> list:
    from app.core.db import _compiled_read, _read_in_autocommit

    return _read_in_autocommit(engine, _compiled_read(engine.dialect, statement), params or {})


def test_read_once_gives_back_converted_rows_and_the_connection_transactional(app):
    """``Database.read_once`` outside a transaction: the driver's connection of a pooled one, in
    autocommit for the statement only; rows as SQLAlchemy's (attributes, ``_mapping``, the types'
    conversions: UTC datetimes), literal parameters included."""
    engine = db.engine
    moment = sa.bindparam("moment", type_=UTCDateTime())
    statement = sa.select(
        moment.label("at"), sa.literal(7).label("seven"), sa.literal("x").label("text"), sa.literal(None).label("none")
    )
    at = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with app.app_context():
        [row] = db.read_once(statement, {"moment": at})
    assert (row.at, row.seven, row.text, row.none) == (at, 7, "x", None)
    assert row.at.tzinfo is dt.UTC and row._mapping["seven"] == 7 and tuple(row) == (at, 7, "x", None)
    pids = {_read(engine, sa.select(sa.func.pg_backend_pid().label("pid")))[0].pid for _ in range(3)}
    assert len(pids) == 1  # the connection held between reads
    assert engine.pool.checkedout() <= HELD_READS
    for _ in range(engine.pool.checkedin()):  # the pool's idle connections: transactional
        with engine.connect() as connection:
            assert connection.connection.driver_connection.autocommit is False
            assert _backend_pid(connection) not in pids


def test_read_once_errors_are_sqlalchemys_and_the_connection_is_reusable(app):
    """A statement the server cancels (``statement_timeout``) is an ``OperationalError`` (a 503 at
    the edge), as through SQLAlchemy; the connection goes back to the pool transactional, and the
    connections held between reads go back when the engine is disposed."""
    engine = create_engine(PG_URL, statement_timeout_ms=50)
    try:
        with pytest.raises(sa.exc.OperationalError):
            _read(engine, sa.select(sa.func.pg_sleep(1).label("slept")))
        with pytest.raises(sa.exc.ProgrammingError):
            _read(engine, sa.select(sa.column("no_such_column")).select_from(sa.table("members")))
        assert engine.pool.checkedout() == 0
        with engine.connect() as connection:
            assert connection.connection.driver_connection.autocommit is False
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
        pid = _read(engine, sa.select(sa.func.pg_backend_pid().label("pid")))[0].pid
        assert engine.pool.checkedout() == 1  # held for the next read
        engine.dispose()
        _wait_until_gone(pid)
    finally:
        engine.dispose()


def test_read_once_with_the_database_unreachable_is_an_operational_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/loyalty", connect_timeout=2)
    try:
        with pytest.raises(sa.exc.OperationalError):
            _read(engine, sa.select(sa.literal(1).label("one")))
    finally:
        engine.dispose()


def _wait_until_gone(pid: int, *, terminate: bool = False) -> None:
    outside = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with outside.connect() as admin:
        if terminate:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = time.monotonic() + 10
        while admin.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar():
            assert time.monotonic() < deadline, "the backend did not exit"
            time.sleep(0.05)
    outside.dispose()


def test_read_once_after_the_server_ended_its_connection_gets_another(app):
    engine = db.engine
    pid = _read(engine, sa.select(sa.func.pg_backend_pid().label("pid")))[0].pid
    _wait_until_gone(pid, terminate=True)
    assert _read(engine, sa.select(sa.func.pg_backend_pid().label("pid")))[0].pid != pid


def test_a_driver_statement_on_a_lost_connection_is_sqlalchemys_error_and_the_connection_is_dropped(app):
    """``driver_execute`` (the hot paths' statements on the session's connection: ledger, session,
    redemption, CRM outbox): the server gone mid-transaction is SQLAlchemy's ``OperationalError``
    (a 503 at the edge, as through ``session.execute``), not the driver's own error (a 500), and the
    connection is invalidated, never handed out again."""
    from app.core.db import driver_execute

    with app.app_context():
        pid = driver_execute("SELECT pg_backend_pid()", ()).fetchone()[0]
        _wait_until_gone(pid, terminate=True)
        with pytest.raises(sa.exc.OperationalError) as lost:
            driver_execute("SELECT 1", ())
        assert lost.value.connection_invalidated
        db.session.rollback()
        assert driver_execute("SELECT pg_backend_pid()", ()).fetchone()[0] != pid
        db.session.rollback()
