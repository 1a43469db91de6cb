"""The redemption hot path stays short: a points-only coupon redeemed through the API costs a fixed,
small number of SQL statements (the bench's path, ``bench/mall.py``), so nothing creeps back in."""

from __future__ import annotations

import pytest

from app.core import tunables
from app.core.db import db
from app.members import services
from app.wechat import clients
from tests.benefit_helpers import give_points
from tests.mall_helpers import item
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient
from tests.statement_helpers import Statements

pytestmark = pytest.mark.postgres


@pytest.fixture
def mini(client, fakes, app, http_mock, app_ctx):
    clients.forget_clients(app)
    mini = MiniClient(client, FakeMiniappWeChat(fakes.mini_app))
    mini.sign_in("o-mall-hot")
    assert mini.register("13955557091").status_code == 201
    give_points(services.find_by_phone("13955557091"), 5000)
    return mini


def statements_of(fn, monkeypatch) -> tuple[list[str], list[str]]:
    """The statements ``fn`` sends through SQLAlchemy, and those sent straight to the driver's
    connection (``psycopg.Connection.execute``: the hot path's raw statements)."""
    import psycopg

    raw: list[str] = []
    original = psycopg.Connection.execute

    def kept(self, query, *args, **kwargs):
        raw.append(str(query))
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", kept)
    try:
        with Statements(keep=lambda _connection, statement, _parameters: statement) as seen:
            fn()
    finally:
        monkeypatch.undo()
    return seen, raw


def test_a_redemption_costs_a_fixed_number_of_statements(mini, monkeypatch):
    """Nothing goes through SQLAlchemy's execute: the session (with identity, member and tier, as
    plain values, and the member's accepted policy version: no consent read of its own), the item +
    flash offer + resend check (one SELECT), the order INSERT, the ledger's lock and spend, the stock
    UPDATE with the voucher INSERT (one statement) and the CRM outbox's one statement (numbering and
    row together, one member's one row) go through the driver connection: 7 in all."""
    item("coupon", points=100, stock=100, code="hotpath")
    first = mini.post("/api/v1/me/redemptions", json={"item": "hotpath", "quantity": 1, "request_id": "warm-00001"})
    assert first.status_code == 201, first.json
    answers = []
    seen, raw = statements_of(
        lambda: answers.append(
            mini.post("/api/v1/me/redemptions", json={"item": "hotpath", "quantity": 1, "request_id": "hot-000002"})
        ),
        monkeypatch,
    )
    assert answers[0].status_code == 201 and answers[0].json["vouchers"], answers[0].json
    savepoints = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
    work = [s for s in seen if not s.startswith(savepoints)]
    assert work == [], work
    # the member's accepted policy version is a column of the session's statement: no read of its own
    assert [s for s in raw if "FROM consents" in s] == [s for s in raw if "FROM miniapp_sessions" in s]
    direct = [s for s in raw if not s.startswith(savepoints)]
    assert len(direct) == 7, direct
    assert sum("INSERT INTO crm_outbox" in s for s in direct) == 1  # the outbox row, numbered in it
    assert sum("FROM miniapp_sessions" in s for s in direct) == 1  # the session, read once
    assert sum("FROM mall_items LEFT OUTER JOIN mall_flash_offers" in s for s in direct) == 1  # + resend


def test_a_resend_is_answered_from_the_same_single_lookup(mini):
    item("coupon", points=100, stock=100, code="hotpath")
    body = {"item": "hotpath", "quantity": 1, "request_id": "same-00001"}
    first = mini.post("/api/v1/me/redemptions", json=body)
    again = mini.post("/api/v1/me/redemptions", json=body)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"]
    assert [v["id"] for v in again.json["vouchers"]] == [v["id"] for v in first.json["vouchers"]]
    other = mini.post("/api/v1/me/redemptions", json=body | {"quantity": 2})
    assert other.status_code == 409 and other.json["error"]["code"] == "request_id_reused"


def test_the_remembered_acceptance_gives_way_to_a_new_policy_version_at_once(mini):
    item("coupon", points=100, stock=100, code="hotpath")
    body = {"item": "hotpath", "quantity": 1}
    assert mini.post("/api/v1/me/redemptions", json=body | {"request_id": "cons-00001"}).status_code == 201
    tunables.set_value("privacy.policy_version", "2026.2", actor=("test", "t"))
    db.session.flush()
    refused = mini.post("/api/v1/me/redemptions", json=body | {"request_id": "cons-00002"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "consent_required"


def test_the_answer_is_the_document_the_schema_describes(mini):
    """The hot path writes its answer without marshmallow's dump: same fields, same formats."""
    from app.mall.schemas import OrderSchema

    item("coupon", points=100, stock=100, code="hotpath")
    answer = mini.post("/api/v1/me/redemptions", json={"item": "hotpath", "quantity": 2, "request_id": "shape-0001"})
    assert answer.status_code == 201, answer.json
    assert set(answer.json) == set(OrderSchema().fields)
    assert OrderSchema().validate(answer.json) == {}
    assert len(answer.json["vouchers"]) == 2 and answer.json["vouchers"][0]["code"].startswith("MV.")
    listed = mini.get("/api/v1/me/redemptions").json[0]  # through the schema's dump
    assert listed == answer.json


def test_the_rate_limit_costs_one_redis_call_and_its_headers_still_count_down(mini, monkeypatch):
    """The fixed window's increment answers the TTL too; the headers come from that answer."""
    import redis

    from app.core.ratelimit import OneTripFixedWindow, limiter

    if not isinstance(limiter.limiter, OneTripFixedWindow):
        pytest.skip("the memory:// storage (no Redis here) keeps limits' own fixed window")
    item("coupon", points=100, stock=100, code="hotpath")
    body = {"item": "hotpath", "quantity": 1}
    first = mini.post("/api/v1/me/redemptions", json=body | {"request_id": "rate-00001"})
    calls: list[str] = []
    original = redis.Redis.execute_command

    def counted(self, *args, **kwargs):
        calls.append(str(args[0]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    second = mini.post("/api/v1/me/redemptions", json=body | {"request_id": "rate-00002"})
    assert first.status_code == second.status_code == 201
    assert calls == ["EVALSHA"]
    assert first.headers["X-RateLimit-Limit"] == second.headers["X-RateLimit-Limit"] == "30"
    assert int(second.headers["X-RateLimit-Remaining"]) == int(first.headers["X-RateLimit-Remaining"]) - 1
    assert int(second.headers["X-RateLimit-Reset"]) - int(first.headers["X-RateLimit-Reset"]) in (-1, 0, 1)


def test_the_limit_counted_by_the_route_answers_as_flask_limiters_did(mini, client):
    """``ratelimit.counted`` (the per-user limit without flask-limiter's bookkeeping): flask-limiter's
    counter key, the same 429 body and the same headers as a route flask-limiter still limits."""
    from app.core.ratelimit import limiter

    item("coupon", points=100, stock=100, code="hotpath")
    body = {"item": "hotpath", "quantity": 1}
    answers = [mini.post("/api/v1/me/redemptions", json=body | {"request_id": f"lim-{i:05d}"}) for i in range(31)]
    assert [a.status_code for a in answers] == [201] * 30 + [429]
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers] == [*range(29, -1, -1), 0]
    refused = answers[-1]
    assert refused.json["error"]["code"] == "rate_limited" and refused.json["error"]["message"]
    assert refused.headers["X-RateLimit-Limit"] == "30"
    assert 0 <= int(refused.headers["Retry-After"]) <= 61
    assert abs(int(refused.headers["X-RateLimit-Reset"]) - int(answers[0].headers["X-RateLimit-Reset"])) <= 1
    # flask-limiter's own limit on another route: the same headers, the same error body
    ip_limited = [client.post("/api/v1/sessions", json={"code": f"x{i}"}) for i in range(21)]
    assert ip_limited[-1].status_code == 429
    names = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"}
    assert names <= set(ip_limited[-1].headers.keys()) and names <= set(refused.headers.keys())
    assert ip_limited[-1].json["error"] | {"message": ""} == refused.json["error"] | {"message": ""}
    if limiter._storage is not None and hasattr(limiter._storage, "get_connection"):
        keys = [k.decode() for k in limiter._storage.get_connection().keys("*LIMITER/ratelimit/identity:*")]
        assert any(k.endswith("/mall.redeem/30/1/minute") for k in keys), keys


def test_a_refusal_stands_when_the_window_for_the_headers_cannot_be_read(mini, monkeypatch):
    """The limit's decision is made by the hit; failing to read the window afterwards (for the
    headers) loses only the headers, it does not serve a request that was over the limit."""
    from app.core.ratelimit import limiter

    item("coupon", points=100, stock=100, code="hotpath")
    body = {"item": "hotpath", "quantity": 1}
    assert all(
        mini.post("/api/v1/me/redemptions", json=body | {"request_id": f"win-{i:05d}"}).status_code == 201
        for i in range(30)
    )

    def unreadable(*_args, **_kwargs):
        raise ConnectionError("the window cannot be read")

    monkeypatch.setattr(type(limiter.limiter), "get_window_stats", unreadable)
    over = mini.post("/api/v1/me/redemptions", json=body | {"request_id": "win-00030"})
    assert over.status_code == 429, over.json


REDEMPTION_BODIES = [
    {"item": "hotpath", "quantity": 1, "request_id": "body-00001"},
    {"item": "hotpath", "request_id": "body-00002"},
    {"item": "hotpath", "quantity": 3, "request_id": "body-00003", "address": None},
    {"item": "hotpath", "quantity": 1, "request_id": "body-00004", "address": "上海市 1 号"},
    {"item": "hotpath", "quantity": "2", "request_id": "body-00005"},
    {"item": "hotpath", "quantity": 1.0, "request_id": "body-00006"},
    {"item": "hotpath", "quantity": True, "request_id": "body-00007"},
    {"item": "hotpath", "quantity": 0, "request_id": "body-00008"},
    {"item": "hotpath", "quantity": 101, "request_id": "body-00009"},
    {"item": "hot path", "quantity": 1, "request_id": "body-00010"},
    {"item": "", "quantity": 1, "request_id": "body-00011"},
    {"item": "hotpath", "quantity": 1, "request_id": "short"},
    {"item": "hotpath", "quantity": 1},
    {"quantity": 1, "request_id": "body-00012"},
    {"item": "hotpath", "quantity": 1, "request_id": "body-00013", "extra": 1},
    {"item": 5, "quantity": 1, "request_id": "body-00014"},
    {"item": "hotpath", "quantity": 1, "request_id": "body-00015", "address": "x" * 301},
    {"item": "hotpath", "quantity": None, "request_id": "body-00016"},
]


@pytest.mark.parametrize("body", REDEMPTION_BODIES)
def test_the_quick_load_of_a_redemption_is_marshmallows_or_none(body):
    """``RedemptionArgs.QUICK_LOAD``: what the quick check loads is what marshmallow loads; what
    marshmallow refuses, it leaves to marshmallow (so every 422 keeps marshmallow's messages)."""
    import marshmallow as ma

    from app.core.schemas import quick_load
    from app.mall.schemas import RedemptionArgs

    schema = RedemptionArgs()
    quick = quick_load(schema, body)
    try:
        loaded = schema.load(body)
    except ma.ValidationError:
        assert quick is None
    else:
        assert quick is None or quick == loaded


def test_a_refused_redemption_body_has_marshmallows_messages(mini):
    from app.mall.schemas import RedemptionArgs

    for body in REDEMPTION_BODIES:
        expected = RedemptionArgs().validate(body)
        if not expected:
            continue
        answer = mini.post("/api/v1/me/redemptions", json=body)
        assert answer.status_code == 422, (body, answer.json)
        fields = answer.json["error"]["fields"]  # marshmallow's messages, in the member's language
        assert {k: len(v) for k, v in fields.items()} == {k: len(v) for k, v in expected.items()}, body
