"""``flask campaigns …``: red-packet sign-up campaigns and their QR codes."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.campaigns import qrcodes, redpackets
from app.campaigns.models import QrCode
from app.core.db import db

campaigns_cli = AppGroup("campaigns", help="Red-packet sign-up campaigns.")


def echo_code(code: QrCode, out: Path | None) -> None:
    """Print a code's scene, URL and expiry (CLI), and write its PNG to ``out`` if given."""
    click.echo(
        json.dumps(
            {"scene": code.scene, "url": code.url, "expires_at": code.expires_at, "permanent": code.permanent},
            ensure_ascii=False,
            indent=2,
            default=str,
        )
    )
    if out is not None:
        out.write_bytes(qrcodes.png(code))
        click.echo(f"QR image written to {out}")


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
    try:
        campaign = redpackets.create_campaign(
            code,
            name=name,
            budget_fen=budget_yuan * 100,
            amount_fen=round(amount_yuan * 100),
            daily_cap=daily_cap,
            days=days,
            password=password,
            channels=[c.strip() for c in channels.split(",") if c.strip()],
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    db.session.commit()
    click.echo(f"campaign {code} running until {campaign.ends_at:%Y-%m-%d}; QR scene camp:{code}")


@campaigns_cli.command("list")
def list_campaigns() -> None:
    """Every campaign with its budget, committed, paid and refunded amounts."""
    for campaign in redpackets.all_campaigns():
        summary = {"code": campaign.code, "status": campaign.status, "password": campaign.password}
        click.echo(json.dumps({**summary, **redpackets.spending(campaign)}, ensure_ascii=False, default=str))


@campaigns_cli.command("qr")
@click.argument("code")
@click.option("--permanent", is_flag=True, help="For print (WeChat allows 100,000 per account).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def campaign_qr(code: str, permanent: bool, out: Path | None) -> None:
    """The campaign's QR code (temporary unless --permanent)."""
    campaign = redpackets.campaign_by_code(code)
    if campaign is None:
        raise click.ClickException(f"no campaign {code}")
    qr = qrcodes.for_campaign(campaign, permanent=permanent)
    db.session.commit()
    echo_code(qr, out)
