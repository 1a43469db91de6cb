"""The connection pool: a connection the server ended is replaced at checkout, without a ping."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from app.core.db import db
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
