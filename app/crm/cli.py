"""``flask crm …``: the outbox (inspect, deliver, retry, skip), what the fake CRM received,
reconciliation, and a demo merge webhook."""

from __future__ import annotations

import getpass
import json
import shlex
import uuid
from pathlib import Path

import click
import requests
from flask.cli import AppGroup

from app.config import INSTANCE_DIR, current_settings
from app.core.clock import utcnow
from app.core.db import db
from app.core.security import sign_timestamped
from app.crm import delivery, outbox, reconcile
from app.crm.models import OUTBOX_STATUSES
from app.members import services as members
from app.points import ledger

crm_cli = AppGroup("crm", help="The CRM (central member record): outbox, reconciliation, demo.")
#: What the fake CRM received under ``make run`` (one JSON line per delivery).
SANDBOX_JOURNAL = INSTANCE_DIR / "crm-sandbox.jsonl"
REPORT_DIR = INSTANCE_DIR / "reports"


def _actor() -> tuple[str, str]:
    return ("cli", getpass.getuser())


@crm_cli.command("outbox")
@click.option("--status", type=click.Choice(OUTBOX_STATUSES), default=None)
@click.option("--limit", default=50, show_default=True)
def outbox_list(status: str | None, limit: int) -> None:
    """Outbox rows, newest first (ids only: no personal data is stored in them)."""
    for row in outbox.entries(status, limit):
        click.echo(
            f"{row.id:>8} member={row.member_id} seq={row.seq} {row.kind:<9} {row.status:<9} "
            f"attempts={row.attempts} next={row.next_attempt_at:%Y-%m-%d %H:%M:%S} {row.last_error or ''}"
        )


@crm_cli.command("deliver")
def deliver() -> None:
    """Send what is due now (the periodic job does this every minute)."""
    click.echo(f"{delivery.deliver_until_idle()} attempts")


@crm_cli.command("retry")
@click.argument("entry_ids", type=int, nargs=-1, required=True)
def retry(entry_ids: tuple[int, ...]) -> None:
    """Send dead rows again (audited)."""
    for entry_id in entry_ids:
        outbox.retry(entry_id, actor=_actor())
    db.session.commit()
    click.echo(f"{len(entry_ids)} row(s) pending again")


@crm_cli.command("skip")
@click.argument("entry_id", type=int)
@click.option("--reason", required=True, help="Why the CRM will never get this change (audited).")
def skip(entry_id: int, reason: str) -> None:
    """Give up on a pending or dead row so the member's later changes go out (audited)."""
    outbox.skip(entry_id, reason=reason, actor=_actor())
    db.session.commit()
    click.echo(f"row {entry_id} skipped")


@crm_cli.command("sent")
@click.option("--limit", default=20, show_default=True)
def sent(limit: int) -> None:
    """What the sandbox CRM received (``make run``), newest last."""
    if not SANDBOX_JOURNAL.exists():
        click.echo("nothing received yet (the sandbox CRM journals under make run)")
        return
    for line in SANDBOX_JOURNAL.read_text(encoding="utf-8").splitlines()[-limit:]:
        click.echo(line)


@crm_cli.command("reconcile")
@click.option("--prefix-length", default=reconcile.PREFIX_LENGTH, show_default=True)
@click.option("--report-dir", type=click.Path(path_type=Path), default=REPORT_DIR, show_default=True)
def reconcile_now(prefix_length: int, report_dir: Path) -> None:
    """Compare with the CRM's export, re-queue differing members, write the CSV report."""
    report = reconcile.reconcile(prefix_length=prefix_length, report_dir=report_dir)
    db.session.commit()
    click.echo(report.summary())
    click.echo(f"report: {report.path}")


def _demo_duplicate(label: str, points: int) -> str:
    member = members.create_member(channel="cs", status="active", city="Shanghai")
    ledger.earn(
        ledger.Earning(
            member_id=member.id,
            currency="reward",
            points=points,
            idempotency_key=f"demo-merge:{label}:{uuid.uuid4().hex[:8]}",
            source_type="demo",
        )
    )
    return member.member_no


@crm_cli.command("demo-merge")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True)
@click.option("--survivor", default=None, help="Member number (default: two new demo duplicates).")
@click.option("--merged", default=None, help="Member number merged into the survivor.")
def demo_merge(url: str, survivor: str | None, merged: str | None) -> None:
    """Print and send a signed CRM member.merged webhook to a running server."""
    if not (survivor and merged):
        survivor, merged = _demo_duplicate("survivor", 300), _demo_duplicate("merged", 200)
        db.session.commit()
        click.echo(f"created demo duplicates {survivor} (300 points) and {merged} (200 points)")
    document = {
        "event_id": f"demo-merge-{uuid.uuid4().hex[:12]}",
        "type": "member.merged",
        "occurred_at": utcnow().isoformat(),
        "data": {"survivor": survivor, "merged": [merged]},
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", **sign_timestamped(current_settings().CRM_SECRET, body)}
    curl = " ".join(
        ["curl", "-sS", "-X", "POST", shlex.quote(f"{url}/api/v1/crm/events")]
        + [f"-H {shlex.quote(f'{k}: {v}')}" for k, v in headers.items()]
        + ["--data-binary", shlex.quote(body.decode())]
    )
    click.echo(curl)
    response = requests.post(f"{url}/api/v1/crm/events", data=body, headers=headers, timeout=10)
    click.echo(f"{response.status_code} {response.text}")
    click.echo(f"then: flask members show {merged}  (resolves to {survivor} once the drain has run)")
