"""Back-office accounts: sign-out, deactivation and password reset revoke tokens at once; sign-in is
throttled per account and per IP with a lockout; sign-ins are audited, failed ones too."""

from __future__ import annotations

import sqlalchemy as sa

from app.core import tunables
from app.core.audit import AuditEntry
from app.core.db import db
from app.operators.models import Operator
from tests import factories

SIGN_IN = "/api/v1/cs/sessions"
PENDING = "/api/v1/cs/adjustments/pending"


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def sign_in(client, username, password="correct horse", ip="10.0.0.1"):
    return client.post(
        SIGN_IN, json={"username": username, "password": password}, environ_overrides={"REMOTE_ADDR": ip}
    )


def _audit(action):
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_signing_out_revokes_the_operators_tokens_at_once(client, app_ctx):
    factories.operator("supervisor", username="wang.sup")
    first = sign_in(client, "wang.sup").json["token"]
    second = sign_in(client, "wang.sup").json["token"]
    assert client.get(PENDING, headers=auth(first)).status_code == 200
    assert client.delete(f"{SIGN_IN}/current", headers=auth(first)).status_code == 204
    assert client.get(PENDING, headers=auth(first)).status_code == 401
    assert client.get(PENDING, headers=auth(second)).status_code == 401
    assert client.get(PENDING, headers=auth(sign_in(client, "wang.sup").json["token"])).status_code == 200
    assert [e.actor_id for e in _audit("operator.signed_out")] == ["operator:wang.sup"]


def test_deactivating_an_operator_revokes_their_tokens(app, client, app_ctx):
    _row, token = factories.operator("supervisor", username="zhao.sup")
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["operators", "deactivate", "zhao.sup", "--reason", "left the company"])
    assert result.exit_code == 0, result.output
    assert client.get(PENDING, headers=auth(token)).status_code == 401
    assert sign_in(client, "zhao.sup").status_code == 401
    (entry,) = _audit("operator.deactivated")
    assert (entry.subject_id, entry.reason) == ("zhao.sup", "left the company")
    unknown = app.test_cli_runner().invoke(args=["operators", "deactivate", "nobody", "--reason", "x"])
    assert unknown.exit_code != 0 and "unknown operator" in unknown.output


def test_a_password_reset_revokes_tokens_and_the_old_password(app, client, app_ctx):
    _row, token = factories.operator("supervisor", username="qian.sup")
    db.session.commit()
    result = app.test_cli_runner().invoke(
        args=["operators", "reset-password", "qian.sup", "--reason", "forgotten"], input="new battery staple\n" * 2
    )
    assert result.exit_code == 0, result.output
    assert client.get(PENDING, headers=auth(token)).status_code == 401
    assert sign_in(client, "qian.sup").status_code == 401
    assert sign_in(client, "qian.sup", "new battery staple").status_code == 201
    assert [e.subject_id for e in _audit("operator.password_reset")] == ["qian.sup"]


def test_five_failures_lock_the_account_for_a_while_and_every_attempt_is_audited(client, app_ctx):
    factories.operator("agent", username="li.agent")
    for _ in range(5):
        assert sign_in(client, "li.agent", "wrong").status_code == 401
    locked = sign_in(client, "li.agent")  # the right password, but locked
    assert locked.status_code == 429 and locked.json["error"]["code"] == "rate_limited"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert sign_in(client, "li.agent", ip="10.0.0.2").status_code == 429  # per account, from anywhere
    failed = _audit("operator.sign_in_failed")
    assert [e.details["locked"] for e in failed] == [False] * 4 + [True] * 3  # the 5th failure locks
    assert [e.details["ip"] for e in failed] == ["10.0.0.1"] * 6 + ["10.0.0.2"]
    factories.operator("agent", username="chen.agent")  # another account from the same IP still works
    assert sign_in(client, "chen.agent").status_code == 201
    assert [e.actor_id for e in _audit("operator.signed_in")] == ["operator:chen.agent"]


def test_many_failures_from_one_ip_lock_that_ip(client, app_ctx):
    tunables.set_value("operators.sign_in_ip_failures", 3, actor=("test", "t"))
    db.session.flush()
    factories.operator("agent", username="sun.agent")
    for name in ("a", "b", "c"):
        assert sign_in(client, name, "guess", ip="10.9.9.9").status_code == 401
    assert sign_in(client, "sun.agent", ip="10.9.9.9").status_code == 429
    assert sign_in(client, "sun.agent", ip="10.0.0.3").status_code == 201


def test_a_success_before_the_limit_starts_the_count_again(client, app_ctx):
    factories.operator("agent", username="zhou.agent")
    for _ in range(4):
        sign_in(client, "zhou.agent", "wrong")
    assert sign_in(client, "zhou.agent").status_code == 201
    for _ in range(4):
        sign_in(client, "zhou.agent", "wrong")
    assert sign_in(client, "zhou.agent").status_code == 201
    assert db.session.scalar(sa.select(Operator.active).where(Operator.username == "zhou.agent"))
