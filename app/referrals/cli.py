"""``flask referrals …``: the funnel as CSV, and the end-to-end walk-through for ``make run``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from app.config import current_settings
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.core.schemas import parse_month
from app.core.security import sign_timestamped
from app.dealers.services import dealer_by_code
from app.jobs.drain import drain_inbox
from app.members import services
from app.members.models import Member
from app.members.registration import POLICY_VERSION
from app.points import expiry, queries
from app.referrals import attribution, codes, funnel
from app.referrals.models import Referral
from app.sync.samples import sample_delivery

referrals_cli = AppGroup("referrals", help="Referrals (推荐购车): funnel, walk-through.")


@referrals_cli.command("funnel")
@click.argument("month")
@click.option("--until", default=None, help="Last month (YYYY-MM)")
def funnel_command(month: str, until: str | None) -> None:
    """The referral funnel per dealer and month, as CSV."""
    first, last = parse_month(month), parse_month(until or month)
    if first is None or last is None:
        raise click.BadParameter("use YYYY-MM")
    click.echo(funnel.funnel_csv(funnel.funnel(first, last)), nl=False)


def _new_member(name: str, dealer_id: int, channel: str) -> Member:
    phone = f"139{secrets.randbelow(10**8):08d}"  # 139 is allocated in full: every such number is valid
    member = services.create_member(
        channel=channel,
        status="active",
        phone=phone,
        name=name,
        enrolling_dealer_id=dealer_id,
        activated_at=utcnow(),
    )
    services.record_consent(
        member,
        policy_version=POLICY_VERSION.value(),
        granted=["service_notifications", "dealer_sharing"],
        channel="miniapp",
    )
    return member


def _post_dms(document: dict[str, Any]) -> str:
    """Sign and POST through the real DMS intake, then drain the inbox (as the worker would)."""
    db.session.commit()  # the intake runs in its own unit of work: hold no lock meanwhile (SQLite)
    body = json.dumps(document, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **sign_timestamped(current_settings().DMS_SECRET, body)}
    response = current_app.test_client().post("/api/v1/dms/events", data=body, headers=headers)
    if response.status_code not in (200, 202):
        raise click.ClickException(f"DMS intake answered {response.status_code}: {response.get_data(as_text=True)}")
    drain_inbox("dms")
    db.session.commit()
    return f"{document['type']} → {response.status_code}"


def _envelope(event_type: str, payload: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {
        "event_id": f"walk-{secrets.token_hex(6)}",
        "type": event_type,
        "occurred_at": at.isoformat(),
        "dealer_code": "D0101",
        "payload": payload,
    }


def _balance(member: Member, now: dt.datetime | None = None) -> str:
    b = queries.balance(member.id, now=now)
    return f"available {b.available}, pending {b.pending}, debt {b.debt}, tier points {b.tier_points}"


def _referral(referral_id: int) -> Referral:
    db.session.expire_all()
    row = db.session.get(Referral, referral_id)
    assert row is not None
    return row


@referrals_cli.command("walkthrough")
@click.option("--cooling-days", default=31, show_default=True, help="How far to move the clock to release")
def walkthrough(cooling_days: int) -> None:
    """Member A's code opened by newcomer B, B's test drive, order and delivery as signed DMS events,
    A's pending reward, the cooling period over, then a cancellation clawing it back."""
    dealer = dealer_by_code("D0101")
    if dealer is None:
        raise click.ClickException("the demo dealer D0101 is missing: run `flask demo seed` first")
    a = _new_member("推荐人甲", dealer.id, "miniapp")
    b = _new_member("新朋友乙", dealer.id, "referral")
    code = codes.code_of(a.id)
    image = codes.wxacode(code)
    click.echo(f"1. member A {a.member_no}: code {code.code}, link {codes.share_link(code)}, "
               f"mini-app code scene {codes.scene_of(code)} ({len(image)} bytes PNG)")  # fmt: skip
    result = attribution.attribute(code.code, b, device_id=f"walk-{secrets.token_hex(4)}", dealer_code="D0101")
    db.session.commit()
    referral_id = result.referral.id
    click.echo(f"2. newcomer B {b.member_no} opened it: referral {referral_id} attributed to A, lead for D0101")
    phone = b.phone
    assert phone is not None
    now = utcnow().replace(microsecond=0)
    drive = {"test_drive_id": f"TD-{secrets.token_hex(4)}", "phone": phone, "model_code": "MAGOTAN",
             "driven_on": business_today().isoformat()}  # fmt: skip
    click.echo("3. " + _post_dms(_envelope("test_drive.completed", drive, now)))
    delivery = sample_delivery(phone=phone)
    order_no, vin = delivery["payload"]["order_no"], delivery["payload"]["vin"]
    placed = {"order_no": order_no, "phone": phone, "model_code": "MAGOTAN", "price_fen": 21_990_000,
              "ordered_on": business_today().isoformat()}  # fmt: skip
    click.echo("4. " + _post_dms(_envelope("order.placed", placed, now)))
    click.echo("5. " + _post_dms(delivery))
    referral = _referral(referral_id)
    click.echo(f"   referral {referral_id}: milestone {referral.milestone}, reward {referral.reward_status} "
               f"({referral.reward_points} points)")  # fmt: skip
    click.echo(f"6. A's points: {_balance(a)}")
    later = utcnow() + dt.timedelta(days=cooling_days)
    released = expiry.release_due(later)
    db.session.commit()
    click.echo(f"7. flask points release-pending --now {later.date().isoformat()}: {released} member(s) released")
    click.echo(f"   A's points: {_balance(a, later)}")
    cancel = {"order_no": order_no, "vin": vin, "cancelled_on": business_today().isoformat()}
    click.echo("8. " + _post_dms(_envelope("order.cancelled", cancel, utcnow().replace(microsecond=0))))
    referral = _referral(referral_id)
    click.echo(f"   referral {referral_id}: milestone {referral.milestone}, reward {referral.reward_status}, "
               f"clawed back {referral.clawed_back_points}")  # fmt: skip
    click.echo(f"9. A's points: {_balance(a, later)}")
    click.echo(json.dumps(dataclasses.asdict(queries.balance(a.id, now=later)), default=str))
