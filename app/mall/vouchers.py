"""Vouchers: issued with the order, shown as a QR, consumed once by a dealer's scan.

The code is a bearer secret (``MV.`` + 128 random bits): stored encrypted, found by its SHA-256.
A scan locks the voucher row, so two scans at once consume it once; the other is refused.

**Expired unused vouchers (the rule):** a voucher is usable until ``expires_at``
(``voucher_valid_days`` after issue, default 90, end of that business day). The nightly job then
marks it ``expired``; its points are *not* refunded and its unit does not return to stock (the
member chose the item and held it for its validity, as with a paper coupon; the reminder to use it
is the member's notice). An order whose vouchers are all expired unused becomes ``expired``; one
with a voucher used becomes ``completed``. Partner codes follow the partner's own expiry and are
not scanned by dealers.
"""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.core import audit
from app.core.clock import business_day_start, to_business, utcnow
from app.core.db import adopt_inserted, db, driver_execute
from app.core.errors import Conflict, NotFound
from app.core.i18n import _l
from app.core.qr import qr_png
from app.core.security import cipher, sha256_hex
from app.dealers.models import Staff
from app.jobs import job
from app.mall.models import MallItem, PartnerCode, RedemptionOrder, Voucher


class VoucherUsed(Conflict):
    code = "voucher_used"
    default_message = _l("This voucher has already been used.")


class VoucherExpired(Conflict):
    code = "voucher_expired"
    default_message = _l("This voucher has expired.")


class NoPartnerCodes(Conflict):
    code = "out_of_stock"
    default_message = _l("This item is out of stock.")


def new_code() -> str:
    return f"MV.{secrets.token_urlsafe(16)}"


def expiry_for(item: MallItem, now: dt.datetime) -> dt.datetime:
    """The end of the business day ``voucher_valid_days`` from now."""
    last_day = to_business(now).date() + dt.timedelta(days=item.voucher_valid_days)
    return business_day_start(last_day + dt.timedelta(days=1))


def issue(order: RedemptionOrder, item: MallItem, now: dt.datetime) -> list[Voucher]:
    """One code per unit: ours, or (partner voucher) the next codes a partner uploaded."""
    if item.kind == "partner_voucher":
        return _hand_out_partner_codes(order, item, now)
    rows = []
    for _ in range(order.quantity):
        code = new_code()
        rows.append(
            Voucher(
                order_id=order.id,
                member_id=order.member_id,
                code=code,
                code_hash=sha256_hex(code),
                issued_at=now,
                expires_at=expiry_for(item, now),
            )
        )
    db.session.add_all(rows)
    db.session.flush()
    return rows


#: Take the stock and write the order's vouchers in one round trip (PostgreSQL): no voucher row
#: unless the conditional UPDATE took the units. Straight to the session's psycopg connection and
#: transaction, like the ledger's fast path: the unit of work's flush was most of the CPU here.
_TAKE_STOCK_AND_ISSUE = """
WITH taken AS (
    UPDATE mall_items SET stock = stock - %(quantity)s
    WHERE id = %(item_id)s AND stock >= %(quantity)s
    RETURNING id
)
INSERT INTO mall_vouchers (order_id, member_id, code, code_hash, status, issued_at, expires_at)
SELECT %(order_id)s, %(member_id)s, v.code, v.code_hash, 'issued', %(now)s, %(expires_at)s
FROM taken, unnest(%(codes)s::text[], %(hashes)s::text[]) AS v(code, code_hash)
RETURNING id, code_hash
"""


def take_stock_and_issue(order: RedemptionOrder, item: MallItem, now: dt.datetime) -> list[Voucher] | None:
    """Our own codes (not a partner's) for a new order, the units taken from the item's stock in the
    same statement (PostgreSQL only); None, and nothing written, if the stock is short."""
    assert item.kind != "partner_voucher" and db.dialect == "postgresql"
    codes = [new_code() for _ in range(order.quantity)]
    hashes = [sha256_hex(code) for code in codes]
    expires_at = expiry_for(item, now)
    encrypt = cipher().encrypt
    db.session.flush()  # ORM changes must reach the database before raw statements run
    rows = driver_execute(
        _TAKE_STOCK_AND_ISSUE,
        {
            "quantity": order.quantity,
            "item_id": item.id,
            "order_id": order.id,
            "member_id": order.member_id,
            "now": now,
            "expires_at": expires_at,
            "codes": [encrypt(code) for code in codes],
            "hashes": hashes,
        },
    ).fetchall()
    if not rows:
        return None
    ids = {code_hash: voucher_id for voucher_id, code_hash in rows}
    issued = []
    for code, code_hash in zip(codes, hashes, strict=True):
        written = {"order_id": order.id, "member_id": order.member_id, "code": code, "code_hash": code_hash}
        voucher = adopt_inserted(  # the row as written: persistent, nothing to load or flush
            Voucher, ids[code_hash], written | {"status": "issued", "issued_at": now, "expires_at": expires_at}
        )
        set_committed_value(voucher, "order", order)
        issued.append(voucher)
    return issued


def _hand_out_partner_codes(order: RedemptionOrder, item: MallItem, now: dt.datetime) -> list[Voucher]:
    # SKIP LOCKED: concurrent orders take different codes without waiting for each other
    codes = db.session.scalars(
        sa.select(PartnerCode)
        .where(
            PartnerCode.item_id == item.id,
            PartnerCode.order_id.is_(None),
            sa.or_(PartnerCode.expires_at.is_(None), PartnerCode.expires_at > now),
        )
        .order_by(PartnerCode.id)
        .limit(order.quantity)
        .with_for_update(skip_locked=True)
    ).all()
    if len(codes) < order.quantity:
        raise NoPartnerCodes()
    rows = []
    for partner_code in codes:
        partner_code.order_id = order.id
        rows.append(
            Voucher(
                order_id=order.id,
                member_id=order.member_id,
                code=partner_code.code,
                code_hash=sha256_hex(f"partner:{partner_code.id}:{partner_code.code_hash}"),
                issued_at=now,
                expires_at=partner_code.expires_at or expiry_for(item, now),
            )
        )
    db.session.add_all(rows)
    db.session.flush()
    return rows


def for_member(member_id: int, limit: int = 100) -> list[Voucher]:
    return list(
        db.session.scalars(
            sa.select(Voucher)
            .where(Voucher.member_id == member_id)
            .order_by(Voucher.issued_at.desc(), Voucher.id.desc())
            .limit(limit)
        )
    )


def get_for_member(member_id: int, voucher_id: int) -> Voucher:
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None or voucher.member_id != member_id:
        raise NotFound()
    return voucher


def png(voucher: Voucher) -> bytes:
    """The voucher as a QR image, for the member to show at the dealer; only while usable."""
    if voucher.status != "issued":
        raise VoucherUsed() if voucher.status == "used" else VoucherExpired()
    return qr_png(voucher.code)


def consume(staff: Staff, code: str) -> Voucher:
    """A dealer's staff scanned a voucher: used once (row lock), audited; a second scan is refused."""
    voucher = db.session.scalar(
        sa.select(Voucher)
        .where(Voucher.code_hash == sha256_hex(code))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if voucher is None or voucher.order.item.kind == "partner_voucher":
        audit.record_regardless(
            actor=("staff", staff.staff_code), action="mall.voucher_unknown", subject=("dealer", staff.dealer_id)
        )
        raise NotFound(_l("Unknown voucher."))
    now = utcnow()
    if voucher.status != "issued":
        audit.record_regardless(
            actor=("staff", staff.staff_code),
            action="mall.voucher_refused",
            subject=("mall_voucher", voucher.id),
            details={"status": voucher.status},
        )
        raise VoucherUsed() if voucher.status == "used" else VoucherExpired()
    if voucher.expires_at <= now:
        raise VoucherExpired()
    voucher.status, voucher.used_at = "used", now
    voucher.used_at_dealer_id, voucher.used_by_staff_id = staff.dealer_id, staff.id
    _settle_order(voucher.order, now)
    db.session.flush()
    audit.record(
        actor=("staff", staff.staff_code),
        action="mall.voucher_used",
        subject=("mall_voucher", voucher.id),
        details={"order": voucher.order_id, "dealer": staff.dealer_id, "item": voucher.order.item.code},
    )
    return voucher


def _settle_order(order: RedemptionOrder, now: dt.datetime) -> None:
    """No voucher left open: completed if one was used, else expired (the rule above)."""
    statuses = {v.status for v in order.vouchers}
    if "issued" in statuses or order.status != "fulfilled":
        return
    order.status = "completed" if "used" in statuses else "expired"
    order.completed_at = now


def expire_due(now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Vouchers past their validity become expired (no refund: the rule above); orders settle."""
    now = now or utcnow()
    rows = db.session.scalars(
        sa.select(Voucher)
        .where(Voucher.status == "issued", Voucher.expires_at <= now)
        .order_by(Voucher.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for voucher in rows:
        voucher.status = "expired"
    db.session.flush()
    for order_id in sorted({v.order_id for v in rows}):
        order = db.session.get(RedemptionOrder, order_id)
        if order is not None:
            _settle_order(order, now)
    db.session.flush()
    return len(rows)


@job("periodic")
def expire_vouchers() -> int:
    """Nightly: unused vouchers past their validity expire."""
    return expire_due()
