"""``flask wechat …`` and ``flask campaigns …``: simulate WeChat, QR codes, menu, red-packet campaigns."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from app.config import current_settings
from app.core.clock import utcnow
from app.core.db import db

wechat_cli = AppGroup("wechat", help="The service account: simulate callbacks, QR codes, menu, sandbox.")
campaigns_cli = AppGroup("campaigns", help="Red-packet sign-up campaigns.")


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@wechat_cli.command("simulate")
@click.argument("kind", type=click.Choice(["subscribe", "scan", "unsubscribe", "click", "text", "location"]))
@click.argument("value", required=False, default="")
@click.option("--openid", default="o-sandbox-demo-1", show_default=True, help="Who is talking to the account.")
@click.option("--scene", default="", help="QR scene for subscribe/scan, e.g. adv:SA0101 or order:<token>.")
@click.option("--lat", type=float, default=43.88)
@click.option("--lng", type=float, default=125.28)
@click.option("--url", default="http://127.0.0.1:5000/wechat/callback", show_default=True)
@click.option("--aes", is_flag=True, help="Safe mode (needs LOYALTY_WECHAT_AES_KEY on both sides).")
def simulate(kind: str, value: str, openid: str, scene: str, lat: float, lng: float, url: str, aes: bool) -> None:
    """Send a signed callback like WeChat would and print the reply. VALUE: text or menu key."""
    from app.wechat import simulator

    settings = current_settings()
    xml = simulator.message_xml(
        kind, openid, settings.WECHAT_APP_ID, content=value, key=scene or value, lat=lat, lng=lng
    )
    status, reply = simulator.post(
        url, xml, token=settings.WECHAT_TOKEN, aes_key=settings.WECHAT_AES_KEY, app_id=settings.WECHAT_APP_ID, aes=aes
    )
    click.echo(f"HTTP {status}")
    click.echo(reply)


@wechat_cli.command("menu")
@click.option("--push", is_flag=True, help="Create the menu on WeChat (menu/create).")
def menu(push: bool) -> None:
    """Print the menu kept in code; --push sends it to WeChat."""
    from app.wechat import menu as menu_module

    _echo(menu_module.definition())
    if push:
        _echo(menu_module.push())


def _save_png(code: Any, out: Path | None) -> None:
    from app.wechat import qrcodes

    _echo({"scene": code.scene, "url": code.url, "expires_at": code.expires_at, "permanent": code.permanent})
    if out is not None:
        out.write_bytes(qrcodes.png(code))
        click.echo(f"QR image written to {out}")


@wechat_cli.command("advisor-qr")
@click.argument("staff_code")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the PNG here.")
def advisor_qr(staff_code: str, out: Path | None) -> None:
    """An advisor's enrollment QR (temporary, renewed automatically)."""
    from app.dealers.models import Staff
    from app.wechat import qrcodes

    staff = db.session.scalar(sa.select(Staff).where(Staff.staff_code == staff_code, Staff.active))
    if staff is None:
        raise click.ClickException(f"no active staff {staff_code}")
    code = qrcodes.for_advisor(staff)
    db.session.commit()
    _save_png(code, out)


@wechat_cli.command("order-qr")
@click.argument("query")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def order_qr(query: str, out: Path | None) -> None:
    """The order enrollment QR of a pre-enrolled buyer (by phone or member number)."""
    from app.members.services import find_member, open_enrollment_token
    from app.wechat import qrcodes

    token = open_enrollment_token(find_member(query))
    if token is None:
        raise click.ClickException("no open enrollment token for that member")
    code = qrcodes.for_order_token(token)
    db.session.commit()
    _save_png(code, out)


@wechat_cli.command("sandbox-calls")
@click.option("--limit", default=20, show_default=True)
@click.option("--url", default=None, help="The running server (default http://127.0.0.1:$PORT).")
def sandbox_calls(limit: int, url: str | None) -> None:
    """What the running server sent to the fake WeChat (newest first).

    Asked over HTTP: under ``make run`` the server's Redis lives in its own process.
    """
    import os

    import requests

    base = url or f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"
    response = requests.get(f"{base}/sandbox/calls", params={"limit": limit}, timeout=10)
    response.raise_for_status()
    _echo(response.json())


@campaigns_cli.command("create")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--budget-yuan", type=int, required=True)
@click.option("--amount-yuan", type=float, required=True, help="Per packet, 1–200.")
@click.option("--daily-cap", type=int, default=None, help="Packets per day.")
@click.option("--days", type=int, default=30, show_default=True)
@click.option("--password", default=None, help="The 口令 members send to get a packet.")
@click.option("--channels", default="qr,password", show_default=True)
def create_campaign(
    code: str,
    name: str,
    budget_yuan: int,
    amount_yuan: float,
    daily_cap: int | None,
    days: int,
    password: str | None,
    channels: str,
) -> None:
    """Create and start a red-packet campaign."""
    from app.campaigns.models import Campaign

    amount_fen = round(amount_yuan * 100)
    if not 100 <= amount_fen <= 20_000:
        raise click.ClickException("a red packet is between ¥1 and ¥200")
    now = utcnow()
    campaign = Campaign(
        code=code,
        name=name,
        status="active",
        budget_fen=budget_yuan * 100,
        amount_fen=amount_fen,
        daily_cap=daily_cap,
        starts_at=now,
        ends_at=now + dt.timedelta(days=days),
        channels=[c.strip() for c in channels.split(",") if c.strip()],
        password=password,
        send_name="一汽大众会员",
        wishing="感谢您的关注，祝您用车愉快！",
        act_name=name[:32],
        remark="扫码入会领红包",
    )
    db.session.add(campaign)
    db.session.commit()
    click.echo(f"campaign {code} running until {campaign.ends_at:%Y-%m-%d}; QR scene camp:{code}")


@campaigns_cli.command("list")
def list_campaigns() -> None:
    from app.campaigns.models import Campaign
    from app.campaigns.redpackets import spending

    for campaign in db.session.scalars(sa.select(Campaign).order_by(Campaign.id)):
        _echo({"code": campaign.code, "status": campaign.status, "password": campaign.password, **spending(campaign)})


@campaigns_cli.command("qr")
@click.argument("code")
@click.option("--permanent", is_flag=True, help="For print (WeChat allows 100,000 per account).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def campaign_qr(code: str, permanent: bool, out: Path | None) -> None:
    from app.campaigns.redpackets import campaign_by_code
    from app.wechat import qrcodes

    campaign = campaign_by_code(code)
    if campaign is None:
        raise click.ClickException(f"no campaign {code}")
    qr = qrcodes.for_campaign(campaign, permanent=permanent)
    db.session.commit()
    _save_png(qr, out)
