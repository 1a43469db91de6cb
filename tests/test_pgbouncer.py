"""The service behind PgBouncer in transaction pooling (docs/scaling.md): a real PgBouncer (Debian's
package, started here on a free port) in front of the test database, with fewer server connections
than clients, so server connections change hands between transactions.

What breaks there is anything kept on a server connection between transactions: psycopg's
automatic server-side prepared statements and startup ``options``. ``LOYALTY_DB_POOLER=pgbouncer``
turns both off; the tests show each failure with the defaults, then the exactly-once paths
(row-locked spends, advisory-locked quota) holding under 200 threads through 3 server connections.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.core.db import create_engine, db
from app.points import ledger
from app.points.models import PointAccount, PointEntry, PointLot
from bench.common import PGBOUNCER, pgbouncer
from tests import factories
from tests.conftest import PG_URL, REQUIRE_SERVICES, run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.committed]
SERVER_CONNECTIONS = 3


@pytest.fixture(scope="module")
def pgbouncer_url() -> Iterator[str]:
    """A PgBouncer in transaction pooling in front of the test database; its SQLAlchemy URL."""
    if PGBOUNCER is None:
        if REQUIRE_SERVICES:
            pytest.fail("pgbouncer is not installed (.ci/run installs Debian's package)")
        pytest.skip("pgbouncer is not installed: apt-get install -y pgbouncer")
    upstream = make_url(PG_URL)
    with pgbouncer(
        upstream.database,
        SERVER_CONNECTIONS,
        host=upstream.host or "127.0.0.1",
        port=upstream.port or 5432,
        user=upstream.username or "postgres",
    ) as port:
        yield upstream.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _libpq(url: str) -> str:
    parsed = make_url(url)
    return f"host={parsed.host} port={parsed.port} dbname={parsed.database} user={parsed.username}"


def test_psycopgs_automatic_prepared_statements_collide_behind_transaction_pooling(pgbouncer_url):
    """Why ``prepare_threshold`` is off: two clients sharing server connections both prepare
    ``_pg3_0`` on their fifth execution of a statement."""
    for threshold, collides in ((5, True), (None, False)):
        clients = [
            psycopg.connect(_libpq(pgbouncer_url), autocommit=True, prepare_threshold=threshold) for _ in range(4)
        ]
        try:
            failures = []
            for round_no in range(8):
                for client in clients:
                    try:
                        client.execute("SELECT %s::int", (round_no,))
                    except psycopg.errors.DuplicatePreparedStatement as error:
                        failures.append(error)
                    except psycopg.errors.InvalidSqlStatementName as error:  # prepared elsewhere
                        failures.append(error)
            assert bool(failures) is collides, (threshold, failures[:1])
        finally:
            for client in clients:
                client.close()


def test_startup_options_are_refused_so_the_pgbouncer_engine_sends_none(pgbouncer_url):
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(_libpq(pgbouncer_url), options="-c statement_timeout=1000").close()
    engine = create_engine(pgbouncer_url, pooler="pgbouncer")
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.fixture
def through_pgbouncer(app, pgbouncer_url) -> Iterator[sa.Engine]:
    """Every session of this test talks to PostgreSQL through PgBouncer."""
    engine = create_engine(pgbouncer_url, pooler="pgbouncer")
    db.bind_to(engine)
    try:
        yield engine
    finally:
        db.remove()
        assert db.engine is not None
        db.bind_to(db.engine)
        engine.dispose()


def test_200_concurrent_spends_through_pgbouncer_spend_exactly_what_there_is(app, through_pgbouncer):
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
        member = factories.member(status="active", enrolling_dealer_id=dealer.id)
        factories.vehicle(owner=member, selling_dealer_id=dealer.id)
        ledger.earn(
            ledger.Earning(
                member_id=member.id, currency="reward", points=1_000, idempotency_key="seed", source_type="test"
            )
        )
        db.session.commit()
        member_id, member_no = member.id, member.member_no

    def spend(i: int) -> tuple[int, str | None]:
        response = app.test_client().post(
            f"/api/v1/cs/members/{member_no}/deductions",
            json={"points": 10, "request_id": f"r-{i % 150}", "purpose": "保养抵扣"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status_code, (response.json or {}).get("error", {}).get("code")

    results = run_concurrently(200, spend)
    assert not [r for r in results if isinstance(r, Exception)], results
    statuses = {status for status, _code in results}
    assert statuses <= {200, 201, 409}, results  # a resent request id answers its first outcome again
    with app.app_context():
        account = db.session.get(PointAccount, member_id)
        entries = db.session.scalars(sa.select(PointEntry.points).where(PointEntry.member_id == member_id)).all()
        lots_left = db.session.scalar(sa.select(sa.func.sum(PointLot.remaining)).where(PointLot.member_id == member_id))
        spends = len([points for points in entries if points < 0])
    # 150 distinct request ids for 100 possible spends of 10: exactly 100 happen, once each.
    assert spends == 100
    assert (account.reward_available, account.lifetime_spent, lots_left) == (0, 1_000, 0)
    assert sum(entries) == account.reward_available


def test_reads_in_autocommit_on_held_connections_work_through_pgbouncer(app, through_pgbouncer):
    """``Database.read_once`` keeps client connections in autocommit between reads: nothing of it
    lives on a server connection, so 50 threads reading 10 times each through 3 server connections
    each get their own answers (the held connections keep the engine's connect arguments: no
    automatic prepared statements, see the collision test above)."""
    statement = sa.select(sa.bindparam("n", type_=sa.Integer()).label("n"), sa.literal("x").label("x"))

    def read(i: int) -> list[tuple[int, str]]:
        with app.app_context():
            return [tuple(db.read_once(statement, {"n": i * 100 + k})[0]) for k in range(10)]

    results = run_concurrently(50, read)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert results == [[(i * 100 + k, "x") for k in range(10)] for i in range(50)]
