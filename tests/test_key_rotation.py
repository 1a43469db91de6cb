"""Key rotation is real: ``flask pii rotate`` re-encrypts every encrypted column under the new key,
batched and resumable, so that the old key can be removed; blind indexes survive it when pinned."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from app import models
from app.core import key_rotation, security
from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import InboundEvent
from app.core.security import PiiCipher
from app.mall.models import CodeBatch, MallItem, PartnerCode, RedemptionOrder, Voucher
from app.members import services
from app.members.models import ConsentLead, Member, MiniappSession, VehicleClaim, WechatIdentity
from tests import factories
from tests.conftest import DATA_KEY

pytestmark = pytest.mark.postgres

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))
EXPECTED = {
    "consent_leads": ("phone", "name", "vin"),
    "inbound_events": ("body", "response"),
    "mall_code_batches": ("payload",),
    "mall_orders": ("address",),
    "mall_partner_codes": ("code",),
    "mall_vouchers": ("code",),
    "members": ("name", "birthday", "phone", "address"),
    "miniapp_sessions": ("session_key",),
    "vehicle_claims": ("vin", "plate"),
    "vehicles": ("vin", "plate"),
    "wechat_identities": ("latitude", "longitude"),
}


@pytest.fixture
def use_keys(monkeypatch):
    """Switch the process's cipher, as a restart with another LOYALTY_DATA_KEY would."""

    def use(keys: list[str], index_key: str = "") -> PiiCipher:
        cipher = PiiCipher(keys, index_key=index_key)
        monkeypatch.setattr(security, "_cipher", cipher)
        return cipher

    return use


def _one_row_per_encrypted_table(n: int) -> Member:
    member = factories.member(phone=f"1390000{n:04d}", name=f"会员{n}", birthday=dt.date(1990, 1, n + 1))
    factories.vehicle(owner=member, plate=f"京A{n:05d}")
    identity = WechatIdentity(app_kind="miniapp", app_id="wxapp", openid=f"o-{n}", latitude=39.9 + n, longitude=116.4)
    db.session.add(identity)
    db.session.flush()
    now = utcnow()
    db.session.add_all(
        [
            MiniappSession(
                identity_id=identity.id, session_key=f"sk{n}", signed_in_at=now, expires_at=now + dt.timedelta(hours=2)
            ),
            VehicleClaim(member_id=member.id, vin=factories.vin(), vin_index=f"idx{n}", plate=f"沪B{n:05d}"),
            InboundEvent(source="dms", external_id=f"e{n}", type="t", body=b'{"phone": "1"}', response=b"ok"),
            ConsentLead(
                dealer_id=factories.dealer().id, phone=f"1370000{n:04d}", phone_index=f"lead{n}", name="线索", vin="V"
            ),
        ]
    )
    db.session.flush()
    _mall_rows(member, n, now)
    return member


def _mall_rows(member: Member, n: int, now: dt.datetime) -> None:
    """A physical order with its address, a voucher, a partner code and its batch (mall tables)."""
    item = MallItem(
        code=f"rot{n}", kind="partner_voucher", name={"zh_CN": "x"}, description={}, points_price=1, stock=1,
        created_by="test",
    )  # fmt: skip
    db.session.add(item)
    db.session.flush()
    order = RedemptionOrder(
        member_id=member.id, request_id=f"rot-{n}", item_id=item.id, quantity=1, unit_points=1, address=f"地址{n}"
    )
    batch = CodeBatch(item_id=item.id, total_rows=1, payload="code\nX1\n", created_by="test")
    db.session.add_all([order, batch])
    db.session.flush()
    db.session.add_all(
        [
            Voucher(order_id=order.id, member_id=member.id, code=f"MV.{n}", code_hash=f"h{n}", expires_at=now),
            PartnerCode(item_id=item.id, batch_id=batch.id, code=f"P{n}", code_hash=f"p{n}"),
        ]
    )
    db.session.flush()


def _stored_values() -> dict[tuple[str, int, str], object]:
    """Every non-null ciphertext as stored, by (table, id, column)."""
    values = {}
    for table in key_rotation.encrypted_tables(models.metadata):
        columns = [table.raw.c[name] for name in table.columns]
        for row in db.session.execute(sa.select(table.raw.c[table.key], *columns)):
            for name, value in zip(table.columns, row[1:], strict=True):
                if value is not None:
                    values[(table.name, row[0], name)] = bytes(value) if isinstance(value, memoryview) else value
    return values


def test_every_encrypting_column_of_the_metadata_is_found(app):
    """A column whose type writes Fernet tokens is rotated, whatever its type is called."""
    probe = security.cipher()
    samples = ("x", b"x", 1.5, dt.date(2000, 1, 1))
    encrypting = set()
    for table in models.metadata.tables.values():
        for column in table.columns:
            if not isinstance(column.type, sa.TypeDecorator):
                continue
            for sample in samples:
                try:
                    stored = column.type.process_bind_param(sample, db_dialect())
                    if isinstance(stored, str | bytes) and probe.made_with_primary(stored):
                        encrypting.add((table.name, column.name))
                except Exception:
                    continue
    found = {(t.name, c) for t in key_rotation.encrypted_tables(models.metadata) for c in t.columns}
    assert encrypting == found
    assert found == {(table, column) for table, columns in EXPECTED.items() for column in columns}


def db_dialect() -> sa.Dialect:
    return sa.create_engine("sqlite://").dialect


def test_after_rotation_no_row_needs_the_old_key_and_lookups_still_work(app, app_ctx, use_keys):
    use_keys([KEY_A])
    members = [_one_row_per_encrypted_table(n) for n in range(5)]
    db.session.commit()
    before = _stored_values()
    assert {table for table, _id, _column in before} == set(EXPECTED)  # every table has data to rotate

    use_keys([KEY_B, KEY_A])
    result = app.test_cli_runner().invoke(args=["pii", "rotate", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert f"re-encrypted {len(before)} values" in result.output
    after = _stored_values()
    assert after.keys() == before.keys()
    assert all(after[key] != before[key] for key in before)

    new_only = use_keys([KEY_B], index_key=security.derived_index_key_text(KEY_A))
    assert all(new_only.made_with_primary(token) for token in after.values())
    db.session.expire_all()
    for n, member in enumerate(members):
        loaded = db.session.get(Member, member.id)
        assert (loaded.name, loaded.birthday) == (f"会员{n}", dt.date(1990, 1, n + 1))
        assert services.find_by_phone(f"1390000{n:04d}").id == member.id  # the pinned index key
    assert {e.body for e in db.session.scalars(sa.select(InboundEvent))} == {b'{"phone": "1"}'}
    assert sorted(i.latitude for i in db.session.scalars(sa.select(WechatIdentity))) == [39.9 + n for n in range(5)]
    audit = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "pii.rotated"))
    assert audit.subject_id == new_only.primary_key_id and audit.details["rewritten"]["members"] == 15

    again = app.test_cli_runner().invoke(args=["pii", "rotate"])
    assert again.exit_code == 0 and "re-encrypted 0 values" in again.output
    assert _stored_values() == after  # a re-run rewrites nothing


def test_an_interrupted_rotation_resumes_where_it_stopped(app_ctx, use_keys):
    use_keys([KEY_A])
    for n in range(6):
        factories.member(phone=f"1390000{n:04d}", name=f"会员{n}")
    db.session.commit()
    cipher = use_keys([KEY_B, KEY_A])
    (members,) = [t for t in key_rotation.encrypted_tables(models.metadata) if t.name == "members"]

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(_rows: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        key_rotation.rotate_table(db.session(), members, cipher, batch=4, progress=stop_after_first_batch)
    resumed = key_rotation.rotate_table(db.session(), members, cipher, batch=4)
    assert (resumed.rows_read, resumed.values_rewritten) == (6, 4)  # 2 members x (name, phone) were left


def test_a_value_changed_during_the_rotation_is_not_overwritten(app_ctx, use_keys):
    use_keys([KEY_A])
    member = factories.member(name="旧名")
    db.session.commit()
    cipher = use_keys([KEY_B, KEY_A])
    (members,) = [t for t in key_rotation.encrypted_tables(models.metadata) if t.name == "members"]

    class ChangedMeanwhile(PiiCipher):
        def rotate(self, token: str) -> str:
            db.session.execute(sa.update(Member).where(Member.id == member.id).values(name="新名"))
            return super().rotate(token)

    racing = ChangedMeanwhile([KEY_B, KEY_A])
    outcome = key_rotation.rotate_table(db.session(), members, racing, batch=10)
    assert (outcome.values_rewritten, outcome.rows_changed_meanwhile) == (0, 1)
    db.session.expire_all()
    assert db.session.get(Member, member.id).name == "新名"  # the app's write wins
    assert key_rotation.rotate_table(db.session(), members, cipher).values_rewritten == 1  # the phone, next run
    stored = db.session.execute(sa.text("SELECT name, phone FROM members")).one()
    assert all(cipher.made_with_primary(token) for token in stored)


def test_a_value_no_key_opens_is_reported_and_the_rest_rotated(app, app_ctx, use_keys):
    use_keys([KEY_C])
    stranger = factories.member(name="陌生")
    use_keys([KEY_A])
    factories.member(name="熟人")
    db.session.commit()
    use_keys([KEY_B, KEY_A])
    result = app.test_cli_runner().invoke(args=["pii", "rotate"])
    assert result.exit_code == 1
    assert f"members.name id {stranger.id}" in result.output and f"members.phone id {stranger.id}" in result.output
    assert "re-encrypted 2 values" in result.output


def test_a_pinned_index_key_keeps_lookups_when_the_anchor_key_goes():
    old = PiiCipher([KEY_A])
    pinned = PiiCipher([KEY_B], index_key=security.derived_index_key_text(KEY_A))
    assert pinned.blind_index("13800000000", "phone") == old.blind_index("13800000000", "phone")
    assert PiiCipher([KEY_B]).blind_index("13800000000", "phone") != old.blind_index("13800000000", "phone")
    with pytest.raises(ValueError, match="LOYALTY_BLIND_INDEX_KEY"):
        PiiCipher([KEY_B], index_key="too-short")


def test_the_index_key_and_new_key_commands(app, app_ctx):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["pii", "index-key"]).output.strip() == security.derived_index_key_text(DATA_KEY)
    Fernet(runner.invoke(args=["pii", "new-key"]).output.strip().encode())  # a valid key
