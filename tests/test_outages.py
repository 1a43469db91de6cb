"""PostgreSQL or Redis down: every endpoint answers 503 with Retry-After (or keeps working where it
fails open), never a 500. Statements and connection attempts are bounded in time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from app.core.db import create_engine, db
from tests.conftest import PG_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _probe(database_url: str, redis_url: str) -> dict[str, list]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.outage_probe", database_url, redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.postgres
def test_with_postgresql_unreachable_every_endpoint_is_a_503_with_retry_after():
    port = _closed_port()
    results = _probe(f"postgresql+psycopg://postgres@127.0.0.1:{port}/loyalty", REDIS_URL)
    assert results["/healthz"][0] == 200
    assert results["/readyz"][0] == 503
    assert results["/api/v1/dms/events"][0] == 401  # refused before it needs the database
    for path in ("/api/v1/cs/sessions", "/api/v1/sessions", "/api/v1/dealers"):
        status, retry_after, code = results[path]
        # flask-limiter merges its own Retry-After on rate-limited routes (the later of the two)
        assert (status, code) == (503, "service_unavailable"), (path, results)
        assert int(retry_after) >= 5, (path, results)


@pytest.mark.postgres
def test_with_redis_unreachable_nothing_is_a_500():
    port = _closed_port()
    results = _probe(PG_URL, f"redis://127.0.0.1:{port}/0")
    assert results["/readyz"][0] == 503
    assert results["/probe/redis"] == [503, "5", "service_unavailable"]
    assert all(status < 500 for path, (status, *_rest) in results.items() if path not in {"/readyz", "/probe/redis"})
    assert results["/api/v1/dealers"][0] == 200  # rate limits fail open


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
        sa.exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
        redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        redis.TimeoutError("Timeout reading from socket"),
    ],
    ids=["pg-operational", "pool-timeout", "redis-connection", "redis-timeout"],
)
def test_infrastructure_errors_in_a_handler_are_503(client, monkeypatch, error):
    from app.sync import intake

    def fail(*_a, **_k):
        raise error

    monkeypatch.setattr(intake, "accept_event", fail)
    response = client.post("/api/v1/dms/events", data=b"{}")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"]["code"] == "service_unavailable"
    assert "refused" not in response.get_data(as_text=True)  # no internals


def test_a_commit_that_fails_at_the_edge_is_a_503(app, client, monkeypatch, app_ctx):
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)

    def fail() -> None:
        raise sa.exc.OperationalError("COMMIT", {}, Exception("terminating connection due to administrator command"))

    monkeypatch.setattr(db.session, "commit", fail)
    response = client.get("/api/v1/dealers")
    assert (response.status_code, response.json["error"]["code"]) == (503, "service_unavailable")
    assert int(response.headers["Retry-After"]) >= 5


@pytest.mark.postgres
def test_every_connection_carries_the_statement_timeout(app_ctx):
    assert db.session.execute(sa.text("SHOW statement_timeout")).scalar_one() == "30s"
    engine = create_engine(PG_URL, connect_timeout=2, statement_timeout_ms=200)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SHOW statement_timeout")).scalar_one() == "200ms"
            with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
                connection.execute(sa.text("SELECT pg_sleep(2)"))
    finally:
        engine.dispose()


def test_timeouts_are_settings():
    from app.config import load_settings

    settings = load_settings({"LOYALTY_DB_CONNECT_TIMEOUT": "3", "LOYALTY_DB_STATEMENT_TIMEOUT_MS": "600000"})
    assert (settings.DB_CONNECT_TIMEOUT, settings.DB_STATEMENT_TIMEOUT_MS) == (3, 600_000)
    assert (load_settings({}).DB_CONNECT_TIMEOUT, load_settings({}).DB_STATEMENT_TIMEOUT_MS) == (5, 30_000)
