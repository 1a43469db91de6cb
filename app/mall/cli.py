"""``flask mall …``: items, stock, flash offers, partner codes, the monthly report, voucher expiry, refunds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import AppError
from app.core.schemas import parse_month
from app.mall import catalog, codes, reports, vouchers
from app.mall.models import ITEM_KINDS, MallPayment

mall_cli = AppGroup("mall", help="Points mall: items, stock, flash offers, partner codes, reports.")
ACTOR = "cli"


def _fail(err: AppError) -> click.ClickException:
    detail = json.dumps(err.fields, ensure_ascii=False, default=str) if err.fields else ""
    return click.ClickException(f"{err.message} {detail}".strip())


def _item(code: str):
    item = catalog.item_by_code(code)
    if item is None:
        raise click.ClickException(f"no mall item {code}")
    return item


@mall_cli.command("list")
def list_items() -> None:
    """Every item, one per line: code, kind, points, stock."""
    for item in catalog.list_items():
        state = "" if item.active else "\tinactive"
        click.echo(f"{item.code}\t{item.kind}\t{item.points_price} pts\tstock {item.stock}{state}")


@mall_cli.command("add")
@click.argument("code")
@click.option("--kind", type=click.Choice(ITEM_KINDS), required=True)
@click.option("--name-zh", required=True)
@click.option("--name-en", default=None)
@click.option("--points", type=click.IntRange(1), required=True)
@click.option("--stock", type=click.IntRange(0), required=True)
@click.option("--cost-yuan", type=click.IntRange(0), default=0, help="What one unit costs the program.")
@click.option("--per-month", type=click.IntRange(1), default=None)
@click.option("--lifetime", type=click.IntRange(1), default=None)
@click.option("--tier", "tiers", multiple=True, help="Eligible tier (repeat); none: every tier.")
@click.option("--image-url", default=None)
def add(
    code: str,
    kind: str,
    name_zh: str,
    name_en: str | None,
    points: int,
    stock: int,
    cost_yuan: int,
    per_month: int | None,
    lifetime: int | None,
    tiers: tuple[str, ...],
    image_url: str | None,
) -> None:
    """Add an item (points only)."""
    fields = {
        "kind": kind,
        "name": {"zh_CN": name_zh, "en": name_en or name_zh},
        "description": {"zh_CN": ""},
        "points_price": points,
        "stock": stock,
        "cost_fen": cost_yuan * 100,
        "per_month_limit": per_month,
        "lifetime_limit": lifetime,
        "eligible_tiers": list(tiers),
        "image_url": image_url,
    }
    try:
        item = catalog.create_item(code, fields, actor=f"cli:{ACTOR}")
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    click.echo(f"item {item.code} added ({item.points_price} points, stock {item.stock})")


@mall_cli.command("stock")
@click.argument("code")
@click.argument("units", type=int)
def stock(code: str, units: int) -> None:
    """Add (or, negative, write off) units of stock."""
    try:
        item = catalog.add_stock(_item(code), units, actor=f"cli:{ACTOR}")
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    click.echo(f"{item.code}: stock {item.stock}")


@mall_cli.command("flash")
@click.argument("code")
@click.option("--points", type=click.IntRange(1), required=True)
@click.option("--quantity", type=click.IntRange(1), required=True)
@click.option("--hours", type=click.IntRange(1), default=24, show_default=True, help="Window length, from now.")
def flash(code: str, points: int, quantity: int, hours: int) -> None:
    """A flash offer (限时特惠) starting now."""
    now = utcnow()
    try:
        offer = catalog.add_flash_offer(
            _item(code),
            points_price=points,
            quantity=quantity,
            starts_at=now,
            ends_at=now + dt.timedelta(hours=hours),
            actor=f"cli:{ACTOR}",
        )
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    click.echo(f"flash offer {offer.id}: {quantity} × {points} points until {offer.ends_at:%Y-%m-%d %H:%M} UTC")


@mall_cli.command("upload-codes")
@click.argument("code")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def upload_codes(code: str, path: Path) -> None:
    """Partner codes from CSV (header code,expires_on), processed now with progress."""
    try:
        batch = codes.upload(_item(code), path.read_text(encoding="utf-8"), actor=ACTOR, in_background=False)
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    with click.progressbar(length=batch.total_rows, label=f"batch {batch.id}") as bar:
        done = False
        while not done:
            before = batch.processed
            done = codes.process_chunk(batch.id)
            db.session.commit()
            bar.update(batch.processed - before)
    click.echo(f"{batch.accepted} codes accepted, {len(batch.errors)} refused")
    for error in batch.errors[:50]:
        click.echo(f"  line {error['line']}: {error['error']}")


@mall_cli.command("report")
@click.argument("month")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of lines.")
def report(month: str, as_csv: bool) -> None:
    """Redemptions per item in a month (YYYY-MM): orders, units, points, ¥ value and cost."""
    first = parse_month(month)
    if first is None:
        raise click.ClickException("month as YYYY-MM")
    if as_csv:
        click.echo(reports.redemptions_csv(first), nl=False)
        return
    for line in reports.redemptions(first):
        click.echo(json.dumps(line.__dict__, ensure_ascii=False))


@mall_cli.command("expire-vouchers")
def expire_vouchers() -> None:
    """Expire unused vouchers past their validity now (the nightly job does it too)."""
    count = vouchers.expire_due()
    db.session.commit()
    click.echo(f"{count} vouchers expired")


@mall_cli.command("refunds")
@click.option("--all", "show_all", is_flag=True, help="Also the refunds WeChat confirmed.")
def refunds(show_all: bool) -> None:
    """Cash refunds of cancelled points + cash orders: waiting for WeChat's result, and failed ones
    (CHANGE: the payer's card refused the money; REFUNDCLOSE) that an operator must settle by other means."""
    statuses = ["refunding", "refund_failed"] + (["refunded"] if show_all else [])
    rows = db.session.scalars(
        sa.select(MallPayment).where(MallPayment.status.in_(statuses)).order_by(MallPayment.created_at)
    ).all()
    for payment in rows:
        asked = f"accepted {payment.refund_requested_at:%Y-%m-%d %H:%M}" if payment.refund_requested_at else "not sent"
        click.echo(
            f"order {payment.order_id}\t{payment.out_trade_no}\t¥{payment.amount_fen / 100:.2f}\t{payment.status}"
            f"\t{payment.refund_state or '-'}\t{asked}"
        )
    click.echo(f"{len(rows)} refund(s)")
