"""The mini-app balance read (``GET /api/v1/me/points``): it resolves its session itself, with the
balance, in one statement, so every check ``member_required`` makes is pinned here again: bad and
expired tokens, signed-out and rotated sessions, the absolute lifetime, visitors, closed and frozen
memberships; the document is the schema's to the byte; on PostgreSQL it is one round trip."""

from __future__ import annotations

import dataclasses
import datetime as dt

import psycopg
import pytest
import sqlalchemy as sa

from app.core import tunables
from app.core.clock import utcnow
from app.core.db import HELD_READS, db
from app.core.errors import Unauthenticated
from app.core.i18n import _l
from app.members import services, sessions
from app.members.models import Member
from app.points import ledger, queries
from app.points.models import PointAccount, PointEntry, PointLot
from app.points.schemas import MemberBalanceSchema
from app.wechat import clients
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


@pytest.fixture
def mini(client, wechat):
    return MiniClient(client, wechat)


def join(mini: MiniClient, openid: str, phone: str) -> Member:
    mini.sign_in(openid)
    assert mini.register(phone).status_code == 201
    return services.find_by_phone(phone)


def earn_lots(member_id: int, key: str) -> None:
    """Lots of 100, 200, 300 and 400 points expiring in 10 days (two), 60 days and 2 years."""
    now = utcnow()
    for lot, days in enumerate((10, 10, 60, 730)):
        ledger.earn(
            ledger.Earning(
                member_id=member_id,
                currency="reward",
                points=100 * (lot + 1),
                idempotency_key=f"{key}-{lot}",
                source_type="test",
            )
        )
        db.session.flush()
        db.session.execute(
            sa.update(PointLot)
            .where(
                PointLot.entry_id
                == sa.select(sa.func.max(PointEntry.id)).where(PointEntry.member_id == member_id).scalar_subquery()
            )
            .values(expires_at=now + dt.timedelta(days=days))
        )


def test_the_document_is_the_schemas_to_the_byte(mini, app_ctx):
    member = join(mini, "o-bal-doc", "13911113333")
    earn_lots(member.id, "doc")
    response = mini.get("/api/v1/me/points")
    assert response.status_code == 200
    expected = MemberBalanceSchema().dumps(
        {"member_no": member.member_no, **dataclasses.asdict(queries.balance(member.id))}
    )
    assert response.get_data(as_text=True) == expected
    body = response.json
    assert (body["expiring_30_days"], body["expiring_90_days"], body["next_expiry_points"]) == (300, 600, 300)
    assert response.headers["Cache-Control"] == "no-store"  # the API's own header wins, as before
    assert response.headers["ETag"]


def test_a_member_without_lots_or_account_reads_zeros(mini, app_ctx):
    member = join(mini, "o-bal-zero", "13911114444")
    db.session.execute(sa.delete(PointLot).where(PointLot.member_id == member.id))
    db.session.execute(sa.delete(PointAccount).where(PointAccount.member_id == member.id))
    response = mini.get("/api/v1/me/points")
    assert response.status_code == 200
    expected = MemberBalanceSchema().dumps(
        {"member_no": member.member_no, **dataclasses.asdict(queries.balance(member.id))}
    )
    assert response.get_data(as_text=True) == expected


def test_the_etag_changes_with_every_ledger_write(mini, app_ctx):
    member = join(mini, "o-bal-etag", "13911115555")
    etag = mini.get("/api/v1/me/points").headers["ETag"]
    assert mini.get("/api/v1/me/points", headers={"If-None-Match": etag}).status_code == 304
    ledger.earn(
        ledger.Earning(member_id=member.id, currency="reward", points=7, idempotency_key="etag", source_type="test")
    )
    db.session.flush()
    changed = mini.get("/api/v1/me/points", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", "Bearer not-a-token"])
def test_a_missing_or_forged_token_is_401(client, header, app_ctx):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/me/points", headers=headers)
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthenticated"


def test_signed_out_rotated_and_expired_sessions_are_401(mini, app_ctx, time_machine):
    join(mini, "o-bal-rot", "13911116666")
    old = mini.token
    refreshed = mini.post("/api/v1/sessions/refresh")
    assert refreshed.status_code == 201
    assert mini.get("/api/v1/me/points").status_code == 401  # the old token, rotated away
    mini.token = refreshed.json["token"]
    assert mini.get("/api/v1/me/points").status_code == 200
    assert mini.delete("/api/v1/sessions/current").status_code == 204
    assert mini.get("/api/v1/me/points").status_code == 401  # signed out
    mini.token = old
    assert mini.get("/api/v1/me/points").status_code == 401
    mini.sign_in("o-bal-rot")
    assert mini.get("/api/v1/me/points").status_code == 200
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2, minutes=1))
    expired = mini.get("/api/v1/me/points")
    assert expired.status_code == 401
    assert expired.json["error"]["message"] == mini.get("/api/v1/me").json["error"]["message"]


def test_the_absolute_lifetime_ends_the_balance_read_too(mini, app_ctx, time_machine):
    tunables.set_value("miniapp.session_max_hours", 3, actor=("test", "t"))
    db.session.flush()
    start = dt.datetime.now(dt.UTC)
    time_machine.move_to(start, tick=False)
    join(mini, "o-bal-long", "13911117777")
    for hours in (1.5, 2.9):
        time_machine.move_to(start + dt.timedelta(hours=hours), tick=False)
        refreshed = mini.post("/api/v1/sessions/refresh")
        assert refreshed.status_code == 201
        mini.token = refreshed.json["token"]
        assert mini.get("/api/v1/me/points").status_code == 200
    time_machine.move_to(start + dt.timedelta(hours=3, seconds=1), tick=False)
    assert mini.get("/api/v1/me/points").status_code == 401


def test_visitors_and_closed_memberships_are_403_frozen_ones_read(mini, app_ctx):
    mini.sign_in("o-bal-visitor")
    response = mini.get("/api/v1/me/points")
    assert response.status_code == 403 and response.json["error"]["code"] == "not_a_member"
    member = join(mini, "o-bal-frozen", "13911118888")
    member.status = "frozen"
    db.session.flush()
    assert mini.get("/api/v1/me/points").status_code == 200
    member.status = "closed"
    db.session.flush()
    refused = mini.get("/api/v1/me/points")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "not_a_member"


def test_a_member_reads_in_their_locale(mini, app_ctx):
    member = join(mini, "o-bal-en", "13911119999")
    member.status, member.locale = "closed", "en"
    db.session.flush()
    assert mini.get("/api/v1/me/points").json["error"]["message"] == "Please join the membership first."  # not zh_CN


@pytest.mark.postgres
@pytest.mark.committed
def test_on_postgresql_it_is_one_statement_outside_a_transaction_and_sees_every_commit(app, wechat, monkeypatch):
    mini = MiniClient(app.test_client(), wechat)
    with app.app_context():
        member = join(mini, "o-bal-one", "13911110000")
    seen: list[tuple[str, bool]] = []
    execute = psycopg.Cursor.execute

    def note(cursor, query, *args, **kwargs):  # every statement psycopg sends, SQLAlchemy's or not
        seen.append((str(query), cursor.connection.autocommit))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", note)
    first = mini.get("/api/v1/me/points")
    assert first.status_code == 200
    assert len(seen) == 1 and seen[0][1] is True, seen  # autocommit: no BEGIN, no COMMIT on the wire
    with app.app_context():
        ledger.earn(
            ledger.Earning(member_id=member.id, currency="reward", points=9, idempotency_key="one", source_type="t")
        )
        db.session.commit()
    again = mini.get("/api/v1/me/points", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and again.json["available"] == first.json["available"] + 9
    assert db.engine.pool.checkedout() <= HELD_READS  # kept in autocommit between reads
    for _ in range(db.engine.pool.checkedin()):  # the pool's idle connections are transactional
        with db.engine.connect() as connection:
            assert connection.connection.driver_connection.autocommit is False


def test_a_verified_token_is_still_checked_for_age_every_time(app, time_machine):
    """The signature of a token is checked once per process (``sessions._verified``), its age
    (``miniapp.session_hours``) on every request; forged tokens are never remembered."""
    start = dt.datetime.now(dt.UTC)
    time_machine.move_to(start, tick=False)
    with app.test_request_context("/"):
        token = sessions._serializer().dumps(12345)
        assert sessions._session_id_of(token) == 12345
        assert sessions._session_id_of(token) == 12345  # remembered
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                sessions._session_id_of(forged)
        time_machine.move_to(start + dt.timedelta(hours=2, seconds=1), tick=False)
        with pytest.raises(Unauthenticated) as expired:
            sessions._session_id_of(token)
        assert str(expired.value.message) == str(_l("Your session has expired. Please sign in again."))
        time_machine.move_to(start - dt.timedelta(seconds=5), tick=False)  # signed in the future
        with pytest.raises(Unauthenticated):
            sessions._session_id_of(token)


def test_the_read_takes_program_settings_from_the_process_snapshot_without_a_session(app):
    """``tunables.shared``: what ``get`` returns, without making the unit of work's session."""
    tunables.forget_shared_snapshot()
    with app.test_request_context("/"):
        assert tunables.shared("miniapp.session_hours") == 2  # a stale snapshot: read through a session
        assert db.session.registry.has()
    with app.test_request_context("/"):
        assert tunables.shared("miniapp.session_max_hours") == tunables.REGISTRY["miniapp.session_max_hours"].default
        assert not db.session.registry.has()
        assert tunables.get("miniapp.session_max_hours") == 720


def test_the_endpoints_that_skip_the_limiters_hook_have_no_limit_to_check(app):
    """``ratelimit.skip_request_check`` (the balance read, the WeChat callback): flask-limiter's
    per-request hook would find nothing to check there; it must stay so."""
    from flask_limiter.util import get_qualified_name

    from app.core import ratelimit

    manager = ratelimit.limiter.limit_manager
    assert "points.points" in ratelimit._UNCHECKED
    assert not manager.application_limits and not manager.default_limits
    for endpoint in ratelimit._UNCHECKED:
        view = app.view_functions[endpoint]
        assert not manager.decorated_limits(get_qualified_name(view)), endpoint
        assert not manager.blueprint_limits(app, endpoint.rpartition(".")[0]), endpoint
