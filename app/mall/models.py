"""Points mall tables (SPEC §6): items, flash offers, redemption orders, vouchers, partner codes,
daily sign-ins.

* ``mall_items.stock`` and ``mall_flash_offers.sold`` move only by conditional UPDATEs, with a
  CHECK as the last line: stock never goes below zero, a flash offer never sells past its quantity.
* An order is unique per (member, request id): a resend, even a concurrent one, finds the first.
* A voucher code is a bearer secret: stored encrypted (to show it again) and as a SHA-256 (to find it
  when scanned); a partner code likewise. The delivery address is personal data, stored encrypted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType, JSONType
from app.core.security import EncryptedText

ITEM_KINDS = ("coupon", "physical", "service_voucher", "partner_voucher", "charity")
#: Kinds delivered as a code the member shows (a QR): ours, or one a partner uploaded.
VOUCHER_KINDS = ("coupon", "service_voucher", "partner_voucher")
#: Voucher kinds whose codes we make (a partner voucher hands out codes the partner uploaded).
OWN_VOUCHER_KINDS = ("coupon", "service_voucher")
ORDER_STATUSES = ("awaiting_payment", "created", "fulfilled", "completed", "cancelled", "expired")
#: A points + cash order's WeChat Pay order: awaiting → paid (→ refunding → refunded) or closed.
#: ``refunding`` lasts until WeChat's result arrives (notification or query); ``refund_failed`` is
#: WeChat saying the money could not go back (CHANGE: the card refused it; REFUNDCLOSE): an operator
#: refunds by other means (``flask mall refunds``).
PAYMENT_STATUSES = ("awaiting", "paid", "closed", "refunding", "refunded", "refund_failed")
VOUCHER_STATUSES = ("issued", "used", "expired", "void")
BATCH_STATUSES = ("queued", "running", "done")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class MallItem(Base):
    """Something members redeem points for. Limits left null mean no limit; ``eligible_tiers``
    empty means every tier."""

    __tablename__ = "mall_items"

    id: Mapped[BigIntPK]
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: {"zh_CN": "...", "en": "..."}
    name: Mapped[dict[str, Any]] = mapped_column(JSONType)
    description: Mapped[dict[str, Any]] = mapped_column(JSONType)
    image_url: Mapped[str | None] = mapped_column(sa.String(500))
    points_price: Mapped[int]
    #: Cash on top of the points (points + cash), in fen; 0 for points only.
    cash_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    #: What one unit costs the program, in fen (the redemptions report).
    cost_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    stock: Mapped[int]
    low_stock_threshold: Mapped[int] = mapped_column(default=10)
    per_order_limit: Mapped[int | None]
    per_month_limit: Mapped[int | None]
    lifetime_limit: Mapped[int | None]
    eligible_tiers: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    active_from: Mapped[dt.datetime | None]
    active_to: Mapped[dt.datetime | None]
    #: Days a voucher stays usable after it is issued.
    voucher_valid_days: Mapped[int] = mapped_column(default=90)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(_in("kind", ITEM_KINDS), name="kind"),
        sa.CheckConstraint("points_price > 0", name="points_price_positive"),
        sa.CheckConstraint("cash_fen >= 0 AND cost_fen >= 0", name="money_not_negative"),
        # the last line behind the conditional UPDATE that takes stock
        sa.CheckConstraint("stock >= 0", name="stock_not_negative"),
        sa.CheckConstraint(
            "(per_order_limit IS NULL OR per_order_limit > 0) AND (per_month_limit IS NULL OR per_month_limit > 0)"
            " AND (lifetime_limit IS NULL OR lifetime_limit > 0)",
            name="limits_positive",
        ),
    )


class FlashOffer(Base):
    """限时特惠: the item at ``points_price`` for ``quantity`` units between ``starts_at`` and ``ends_at``."""

    __tablename__ = "mall_flash_offers"

    id: Mapped[BigIntPK]
    item_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_items.id"), index=True)
    points_price: Mapped[int]
    cash_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    quantity: Mapped[int]
    sold: Mapped[int] = mapped_column(default=0)
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    item: Mapped[MallItem] = relationship()

    __table_args__ = (
        sa.CheckConstraint("points_price > 0 AND cash_fen >= 0", name="price_positive"),
        sa.CheckConstraint("sold >= 0 AND sold <= quantity", name="sold_within_quantity"),
        sa.CheckConstraint("ends_at > starts_at", name="window"),
    )


class RedemptionOrder(Base):
    """created → fulfilled (voucher issued or shipped) → completed; cancelled (before fulfilment,
    points and stock given back) or expired (an unused voucher ran out). A points + cash order
    starts ``awaiting_payment`` (points spent, stock reserved) until WeChat Pay says it is paid."""

    __tablename__ = "mall_orders"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    request_id: Mapped[str] = mapped_column(sa.String(64))
    item_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_items.id"), index=True)
    flash_offer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("mall_flash_offers.id"))
    quantity: Mapped[int]
    unit_points: Mapped[int]
    points_spent: Mapped[int] = mapped_column(default=0)
    cash_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    cost_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    status: Mapped[str] = mapped_column(sa.String(16), default="created")
    address: Mapped[str | None] = mapped_column(EncryptedText)
    tracking_number: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    fulfilled_at: Mapped[dt.datetime | None]
    fulfilled_by: Mapped[str | None] = mapped_column(sa.String(64))
    completed_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(sa.String(64))

    item: Mapped[MallItem] = relationship()
    vouchers: Mapped[list[Voucher]] = relationship(back_populates="order", order_by="Voucher.id")

    __table_args__ = (
        # a resend of the same tap, even a concurrent one, finds the first order
        sa.UniqueConstraint("member_id", "request_id"),
        sa.Index("ix_mall_orders_member_created", "member_id", "created_at"),
        sa.CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class MallPayment(Base):
    """The WeChat Pay order behind a points + cash redemption (one per order). ``out_trade_no`` is
    WeChat's key for it: a paid notification, a query, the close and the refund all name it."""

    __tablename__ = "mall_payments"

    order_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_orders.id"), primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(sa.String(32), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigIntType)
    prepay_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="awaiting")
    #: Unpaid by then: closed at WeChat, points and stock given back.
    expires_at: Mapped[dt.datetime]
    transaction_id: Mapped[str | None] = mapped_column(sa.String(32))
    paid_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    refund_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: When WeChat accepted the refund (its result is asked for if no notification came).
    refund_requested_at: Mapped[dt.datetime | None]
    #: WeChat's final word on the refund: SUCCESS, CHANGE or REFUNDCLOSE.
    refund_state: Mapped[str | None] = mapped_column(sa.String(16))
    refunded_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(_in("status", PAYMENT_STATUSES), name="status"),
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        # the reconciler's list: payments still open
        sa.Index(
            "ix_mall_payments_open",
            "expires_at",
            postgresql_where=sa.text("status IN ('awaiting', 'refunding')"),
            sqlite_where=sa.text("status IN ('awaiting', 'refunding')"),
        ),
    )


class Voucher(Base):
    """One code per unit of a voucher order: shown as a QR, consumed once by a dealer's scan."""

    __tablename__ = "mall_vouchers"

    id: Mapped[BigIntPK]
    order_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_orders.id"), index=True)
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    code: Mapped[str] = mapped_column(EncryptedText)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(8), default="issued")
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    used_at_dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    used_by_staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"))

    order: Mapped[RedemptionOrder] = relationship(back_populates="vouchers")

    __table_args__ = (sa.CheckConstraint(_in("status", VOUCHER_STATUSES), name="status"),)


class CodeBatch(Base):
    """An upload of partner codes, processed by a job: ``processed`` of ``total_rows`` is the
    progress bar, ``errors`` the rows refused (line number and reason)."""

    __tablename__ = "mall_code_batches"

    id: Mapped[BigIntPK]
    item_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_items.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(8), default="queued")
    total_rows: Mapped[int]
    processed: Mapped[int] = mapped_column(default=0)
    accepted: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: The uploaded rows, kept encrypted until processed (they are bearer codes), then erased.
    payload: Mapped[str | None] = mapped_column(EncryptedText)
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    item: Mapped[MallItem] = relationship()

    __table_args__ = (
        sa.CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
        sa.CheckConstraint("processed <= total_rows AND accepted <= processed", name="progress"),
    )


class PartnerCode(Base):
    """A code a partner issued for one unit of a partner voucher; handed out to one order."""

    __tablename__ = "mall_partner_codes"

    id: Mapped[BigIntPK]
    item_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_items.id"))
    batch_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("mall_code_batches.id"))
    code: Mapped[str] = mapped_column(EncryptedText)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    expires_at: Mapped[dt.datetime | None]
    order_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("mall_orders.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("item_id", "code_hash"),
        sa.Index("ix_mall_partner_codes_free", "item_id", "id", postgresql_where=sa.text("order_id IS NULL")),
    )


class SignIn(Base):
    """A daily sign-in in the mini-app: one per member and business day (the key makes it idempotent)."""

    __tablename__ = "member_sign_ins"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(primary_key=True)
    streak: Mapped[int]
    points: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
