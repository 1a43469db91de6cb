"""``flask wechat …``: simulate WeChat, enrollment QR codes, the menu, what the sandbox was sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from app.campaigns import qrcodes
from app.campaigns.cli import echo_code
from app.config import current_settings
from app.core.db import db
from app.dealers.services import active_staff
from app.members.services import find_member, open_enrollment_token
from app.wechat import menu as menu_module
from app.wechat import simulator
from app.wechat.gateways import SANDBOX_JOURNAL

wechat_cli = AppGroup("wechat", help="The service account: simulate callbacks, QR codes, menu, sandbox.")


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
    _echo(menu_module.definition())
    if push:
        _echo(menu_module.push())


@wechat_cli.command("advisor-qr")
@click.argument("staff_code")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the PNG here.")
def advisor_qr(staff_code: str, out: Path | None) -> None:
    """An advisor's enrollment QR (temporary, renewed automatically)."""
    staff = active_staff(staff_code)
    if staff is None:
        raise click.ClickException(f"no active staff {staff_code}")
    code = qrcodes.for_advisor(staff)
    db.session.commit()
    echo_code(code, out)


@wechat_cli.command("order-qr")
@click.argument("query")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def order_qr(query: str, out: Path | None) -> None:
    """The order enrollment QR of a pre-enrolled buyer (by phone or member number)."""
    token = open_enrollment_token(find_member(query))
    if token is None:
        raise click.ClickException("no open enrollment token for that member")
    code = qrcodes.for_order_token(token)
    db.session.commit()
    echo_code(code, out)


@wechat_cli.command("sandbox-calls")
@click.option("--limit", default=20, show_default=True)
def sandbox_calls(limit: int) -> None:
    """What the service sent to the sandbox's fake WeChat and WeChat Pay (newest first)."""
    if not SANDBOX_JOURNAL.exists():
        raise click.ClickException(f"nothing sent to the sandbox yet ({SANDBOX_JOURNAL} does not exist)")
    lines = SANDBOX_JOURNAL.read_text(encoding="utf-8").splitlines()[-limit:]
    _echo([json.loads(line) for line in reversed(lines)])
