"""Test harness: real PostgreSQL and Redis, one rolled-back transaction per test.

* PostgreSQL ``LOYALTY_TEST_DATABASE_URL`` (default the local ``test`` database) is rebuilt from
  the migrations once per run; each test runs inside a transaction that is rolled back, with
  savepoints standing in for the app's commits.
* Tests marked ``committed`` commit for real (threads, separate connections); the tables are
  truncated after each of them.
* Redis ``LOYALTY_TEST_REDIS_URL`` (default db 14, RQ on 15) is flushed before every test.
* If the services are unreachable the suite falls back to SQLite + fakeredis, skips the tests
  marked ``postgres`` and says so loudly. ``LOYALTY_REQUIRE_SERVICES=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import responses
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app, gateways
from app.benefits import catalog as benefit_catalog
from app.core import ratelimit, tunables
from app.core.db import db
from app.core.security import sign_timestamped
from app.dealers import services as dealer_services

PG_URL = os.environ.get("LOYALTY_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
REQUIRE_SERVICES = os.environ.get("LOYALTY_REQUIRE_SERVICES") == "1"
DMS_SECRET = "test-dms-secret"
WECHAT = {
    "WECHAT_APP_ID": "wx49f0ab532d5d035a",  # the app id of wechatpy's own AES test vector
    "WECHAT_APP_SECRET": "test-app-secret",
    "WECHAT_TOKEN": "123456",
    "WECHAT_AES_KEY": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    # The in-process fakes (app.gateways.fakes); the real gateways are tested on their own with
    # `responses` (tests/test_wechat_gateways.py, tests/test_wechat_clients.py).
    "WECHAT_API_BASE": "sandbox",
    "WECHAT_PAY_API_BASE": "sandbox",
    "WECHAT_PAY_MCH_ID": "1900000109",
    "MINIAPP_APP_ID": "wxminiapptest00001",
    "MINIAPP_APP_SECRET": "test-miniapp-secret",
}
DATA_KEY = "Q1vDZ8jOTtYbsv0J6OzqzTjN2M8r7EUwI3UwBzS2rRs="

#: Reference data the migrations seed (the default rule set); committed tests must not change it.
SEEDED_BY_MIGRATIONS = {"rule_sets", "earning_rules", "maintenance_intervals"}

_backend: dict[str, Any] = {}
_skipped_for_services: list[str] = []


def _postgres_reachable() -> bool:
    try:
        engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False


def _redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


def pytest_configure(config: pytest.Config) -> None:
    pg, rd = _postgres_reachable(), _redis_reachable()
    if REQUIRE_SERVICES and not (pg and rd):
        missing = [name for name, ok in (("PostgreSQL", pg), ("Redis", rd)) if not ok]
        pytest.exit(
            f"LOYALTY_REQUIRE_SERVICES=1 but {' and '.join(missing)} unreachable "
            f"({PG_URL}, {REDIS_URL}). Start them: pg_ctlcluster 15 main start; redis-server --daemonize yes",
            returncode=3,
        )
    _backend["postgres"] = pg
    _backend["database_url"] = PG_URL if pg else f"sqlite:///{tempfile.mkdtemp()}/test.db"
    _backend["redis_url"] = REDIS_URL if rd else "memory://test"
    _backend["real_redis"] = rd


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _backend.get("postgres"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (unreachable; running on the SQLite fallback)")
    for item in items:
        if item.get_closest_marker("postgres") or item.get_closest_marker("committed"):
            item.add_marker(skip)
            _skipped_for_services.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _backend.get("postgres") and _backend.get("real_redis"):
        return
    write = terminalreporter.write_line
    write("!" * 100, red=True, bold=True)
    write("SERVICES UNREACHABLE: this run used the fallback (SQLite and/or fakeredis), NOT the real stack.")
    write(
        f"PostgreSQL {'ok' if _backend.get('postgres') else 'DOWN'} ({PG_URL}); "
        f"Redis {'ok' if _backend.get('real_redis') else 'DOWN'} ({REDIS_URL})"
    )
    write(f"{len(_skipped_for_services)} tests needing PostgreSQL were SKIPPED:")
    for nodeid in _skipped_for_services:
        write(f"  - {nodeid}")
    write("!" * 100, red=True, bold=True)


def _rebuild_schema(app: Flask) -> None:
    from alembic import command

    from app.cli import alembic_config

    engine = db.engine
    assert engine is not None
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    with app.app_context():
        command.upgrade(alembic_config(), "head")


@pytest.fixture(scope="session")
def app() -> Iterator[Flask]:
    app = create_app(
        overrides={
            "ENV": "test",
            "DATABASE_URL": _backend["database_url"],
            "REDIS_URL": _backend["redis_url"],
            "JOBS_MODE": "eager",
            "DMS_SECRET": DMS_SECRET,
            "DATA_KEY": DATA_KEY,
            "LOG_LEVEL": "WARNING",
            **WECHAT,
        }
    )
    app.config["TESTING"] = True
    _rebuild_schema(app)
    yield app
    assert db.engine is not None
    db.engine.dispose()


def _truncate_all() -> None:
    engine = db.engine
    assert engine is not None
    from app.core.db import Base

    tables = [name for name in Base.metadata.tables if name not in SEEDED_BY_MIGRATIONS]
    # TRUNCATE skips the row triggers that keep audit_log and the ledger append-only.
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(autouse=True)
def _isolation(request: pytest.FixtureRequest, app: Flask) -> Iterator[None]:
    """Flush Redis; wrap the test in a rolled-back transaction unless it is marked ``committed``."""
    ratelimit.forget_local_counts()  # a previous test's senders, counted in this process
    for key in ("loyalty.redis", "loyalty.rq_redis"):
        app.extensions[key].flushdb()
    tunables.forget_shared_snapshot()  # a previous test's (rolled back) settings must not leak
    benefit_catalog.forget_cached()  # nor its benefit catalog
    dealer_services.forget_dealer_codes()  # nor the dealer codes it created
    engine = db.engine
    assert engine is not None
    if request.node.get_closest_marker("committed"):
        db.bind_to(engine)
        try:
            yield
        finally:
            db.remove()
            _truncate_all()
        return
    connection = engine.connect()
    transaction = connection.begin()
    db.bind_to(connection, savepoints=True)
    try:
        yield
    finally:
        db.remove()
        transaction.rollback()
        connection.close()
        db.bind_to(engine)


@pytest.fixture(autouse=True)
def fakes(app: Flask) -> Iterator[gateways.Gateways]:
    """The partner fakes the app talks to (WeChat, WeChat Pay, SMS), fresh for every test."""
    installed = gateways.installed(app)
    for fake in (
        installed.official_account,
        installed.mini_app,
        installed.payments,
        installed.sms,
        installed.pay_orders,
    ):
        fake.reset()  # type: ignore[union-attr]
    yield installed


@pytest.fixture(autouse=True)
def _network_off() -> Iterator[responses.RequestsMock]:
    """Outbound HTTP through requests fails unless a test registers the exact response."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def http_mock(_network_off: responses.RequestsMock) -> responses.RequestsMock:
    return _network_off


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def post_dms(client: FlaskClient) -> Callable[..., Any]:
    """POST a DMS event signed like the real DMS; pass ``sign=False`` or headers to break it."""

    def post(
        document: dict[str, Any] | bytes,
        *,
        secret: str = DMS_SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        **kwargs: Any,
    ) -> Any:
        body = document if isinstance(document, bytes) else json.dumps(document, ensure_ascii=False).encode()
        all_headers = {"Content-Type": "application/json"}
        if sign:
            all_headers.update(sign_timestamped(secret, body, timestamp))
        all_headers.update(headers or {})
        return client.post("/api/v1/dms/events", data=body, headers=all_headers, **kwargs)

    return post


def run_concurrently(count: int, fn: Callable[[int], Any]) -> list[Any]:
    """Start ``count`` threads that call ``fn(i)`` at the same instant; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results
