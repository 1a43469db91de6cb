"""``flask`` commands. Each command is an edge: it commits once, at the end."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app import demo, models
from app.config import INSTANCE_DIR, PROJECT_ROOT, current_settings, describe_defaults
from app.core import audit, audit_chain, inbox, key_rotation, security, tunables
from app.core.db import db
from app.extensions import rq_connection
from app.jobs import QUEUES, drain, run_job, set_worker_app
from app.jobs.schedule import entries, start_cron_scheduler, start_embedded_scheduler
from app.members import registration
from app.sync.samples import sample_delivery_body, signed_curl_snippet


def _cli_actor() -> tuple[str, str]:
    return ("cli", getpass.getuser())


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


# --- database -------------------------------------------------------------------------------

db_cli = AppGroup("db", help="Database schema (Alembic).")


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = current_settings().DATABASE_URL
    config.attributes["data_keys"] = current_settings().data_keys  # data migrations encrypt with them
    config.attributes["blind_index_key"] = current_settings().BLIND_INDEX_KEY
    return config


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (creates the embedded SQLite file when needed)."""
    from alembic import command

    if current_settings().DATABASE_URL.startswith("sqlite"):
        INSTANCE_DIR.mkdir(exist_ok=True)
    command.upgrade(alembic_config(), revision)


# --- demo -----------------------------------------------------------------------------------

demo_cli = AppGroup("demo", help="Demo data for local runs.")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Create demo dealers, advisors, members, cars, points and back-office accounts (skips what exists)."""
    if current_settings().is_production:
        raise click.ClickException("demo data is for local runs, not production")
    created = demo.seed()
    db.session.commit()
    click.echo(f"demo data: {created}")


@demo_cli.command("history")
@click.option("--days", type=click.IntRange(1, 90), default=demo.HISTORY_DAYS, show_default=True)
def demo_history(days: int) -> None:
    """A month of activity for the dashboard's charts (skips when it ran before); then run
    ``flask dashboard rollup --days 35``."""
    if current_settings().is_production:
        raise click.ClickException("demo data is for local runs, not production")
    created = demo.seed_history(days)
    db.session.commit()
    click.echo(f"demo history: {created or 'already there'}")


@demo_cli.group("walkthrough")
def demo_walkthrough() -> None:
    """Printed walk-throughs of one capability on the demo data, through the real services and the
    sandbox (local runs only)."""
    if current_settings().is_production:
        raise click.ClickException("the walk-through is for local runs, not production")


@demo_walkthrough.command("booking")
def demo_walkthrough_booking() -> None:
    """A Gold member books a home test drive, cancels, rebooks, is checked in by member code and
    rates it 2 (a callback task opens)."""
    demo.walk_booking(click.echo)
    db.session.commit()


@demo_walkthrough.command("mall")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the voucher QR (default: instance/).",
)
def demo_walkthrough_mall(out: Path | None) -> None:
    """Coupon → QR → dealer scan → second scan refused; a physical order cancelled returns points
    and stock."""
    out = out or INSTANCE_DIR
    out.mkdir(parents=True, exist_ok=True)
    try:
        lines = demo.walkthrough_mall(out)
    except LookupError as missing:
        raise click.ClickException(str(missing)) from None
    for line in lines:
        click.echo(line)


@demo_walkthrough.command("care")
@click.option(
    "--lift-quiet-hours",
    is_flag=True,
    help="Inside the quiet hours (21:00-08:00 Shanghai), lift them for this run (audited, put back after).",
)
def demo_walkthrough_care(lift_quiet_hours: bool) -> None:
    """Plan today's care reminders for the demo members and send them through the sandbox."""
    try:
        demo.walk_through_care(click.echo, lift_quiet_hours=lift_quiet_hours)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


# --- jobs -----------------------------------------------------------------------------------

jobs_cli = AppGroup("jobs", help="RQ workers and the periodic schedule.")


@jobs_cli.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def jobs_worker(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (with RQ's scheduler for retries) on the given queues, default all."""
    from rq import Worker

    set_worker_app(current_app._get_current_object())  # type: ignore[attr-defined]
    worker = Worker(list(queues or QUEUES), connection=rq_connection())
    worker.work(with_scheduler=True, burst=burst)


@jobs_cli.command("cron")
def jobs_cron() -> None:
    """Run the periodic schedule (RQ CronScheduler); one per deployment is enough."""
    start_cron_scheduler(rq_connection())


@jobs_cli.command("periodic")
def jobs_periodic() -> None:
    """List the periodic jobs."""
    for entry in entries():
        click.echo(f"{entry.cron:<15} {entry.job:<55} {entry.description}")


@jobs_cli.command("run")
@click.argument("name")
def jobs_run(name: str) -> None:
    """Run one job now, in this process (e.g. a periodic job by its dotted name)."""
    click.echo(f"{name} -> {run_job(name, ())!r}")


# --- inbound events -------------------------------------------------------------------------

inbox_cli = AppGroup("inbox", help="Stored inbound events (DMS, WeChat, CRM): the dead ones and their replay.")


@inbox_cli.command("dead")
@click.option("--source", type=click.Choice(["dms", "wechat", "crm"]), help="Only this source.")
@click.option("--limit", default=50, show_default=True)
def inbox_dead(source: str | None, limit: int) -> None:
    """Events given up on after ``inbox.max_attempts``, newest first, with their last error."""
    for event in inbox.dead_events(source, limit):
        error = event.last_error.splitlines()[0][:100] if event.last_error else ""
        when = f"{event.received_at:%Y-%m-%d %H:%M}"
        click.echo(f"{event.id:>10} {event.source:<7} {event.type:<28} {event.attempts:>2} {when} {error}")


@inbox_cli.command("replay")
@click.argument("event_ids", type=int, nargs=-1, required=True)
def inbox_replay(event_ids: tuple[int, ...]) -> None:
    """Process dead events again once their cause is fixed (audited; their sources are drained)."""
    revived = drain.replay_dead(list(event_ids), actor=_cli_actor())
    db.session.commit()
    skipped = sorted(set(event_ids) - set(revived))
    click.echo(f"{len(revived)} event(s) queued again" + (f"; not dead, left alone: {skipped}" if skipped else ""))


# --- program settings -----------------------------------------------------------------------

program_cli = AppGroup("program", help="Operator-tunable program settings.")


@program_cli.command("list")
def program_list() -> None:
    for key in sorted(tunables.REGISTRY):
        setting = tunables.REGISTRY[key]
        click.echo(f"{key:<40} {json.dumps(tunables.get(key)):<12} {setting.description}")


@program_cli.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--reason", required=True)
def program_set(key: str, value: str, reason: str) -> None:
    """Set KEY to VALUE (JSON, e.g. 120 or true)."""
    tunables.set_value(key, json.loads(value), actor=_cli_actor(), reason=reason)
    db.session.commit()
    click.echo(f"{key} = {value}")


# --- audit log ------------------------------------------------------------------------------

audit_cli = AppGroup("audit", help="The tamper-evident audit log.")


@audit_cli.command("verify")
@click.option("--from-seq", default=1, show_default=True, type=click.IntRange(min=1), help="Start at this row.")
def audit_verify(from_seq: int) -> None:
    """Walk the hash chain; exit 1 at the first broken link. Keep the printed head somewhere else:
    a chain cut short at its end is still a valid chain."""
    verdict = audit_chain.verify(db.session(), from_seq=from_seq)
    db.session.rollback()
    if verdict.ok:
        click.echo(f"ok, {verdict.rows} rows; head seq {verdict.head_seq} hash {verdict.head_hash}")
        return
    broken = verdict.broken
    assert broken is not None
    click.echo(
        f"BROKEN at seq {broken.chain_seq} ({broken.problem}): expected {broken.expected}, found {broken.found} "
        f"({verdict.rows} rows verified before it)",
        err=True,
    )
    raise SystemExit(1)


# --- personal data at rest -------------------------------------------------------------------

pii_cli = AppGroup("pii", help="Personal data at rest: data keys and their rotation.")


@pii_cli.command("rotate")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="Rows per commit.")
def pii_rotate(batch: int) -> None:
    """Re-encrypt every stored value not made with the first LOYALTY_DATA_KEY (resumable)."""
    cipher = security.cipher()
    rewritten: dict[str, int] = {}
    undecryptable: list[str] = []
    for table in key_rotation.encrypted_tables(models.metadata):
        total = key_rotation.count_rows(db.session(), table)
        with click.progressbar(length=total, label=table.describe()) as bar:
            outcome = key_rotation.rotate_table(db.session(), table, cipher, batch=batch, progress=bar.update)
        rewritten[table.name] = outcome.values_rewritten
        undecryptable += [f"{table.name}.{column} id {row_id}" for row_id, column in outcome.undecryptable]
    audit.record(
        actor=_cli_actor(),
        action="pii.rotated",
        subject=("data_key", cipher.primary_key_id),
        details={"rewritten": rewritten, "undecryptable": len(undecryptable)},
    )
    db.session.commit()
    click.echo(f"re-encrypted {sum(rewritten.values())} values: {rewritten}")
    if not current_settings().BLIND_INDEX_KEY and len(current_settings().data_keys) > 1:
        click.echo("before removing the last LOYALTY_DATA_KEY, pin LOYALTY_BLIND_INDEX_KEY (flask pii index-key)")
    if undecryptable:
        click.echo(
            f"{len(undecryptable)} values open with no configured key: {', '.join(undecryptable[:20])}", err=True
        )
        raise SystemExit(1)


@pii_cli.command("index-key")
def pii_index_key() -> None:
    """Print the blind-index key in use, to pin as LOYALTY_BLIND_INDEX_KEY (it is a secret)."""
    settings = current_settings()
    click.echo(settings.BLIND_INDEX_KEY or security.derived_index_key_text(settings.data_keys[-1]))


@pii_cli.command("new-key")
def pii_new_key() -> None:
    """Print a fresh data key, to put first in LOYALTY_DATA_KEY."""
    click.echo(security.new_data_key())


# --- dev server -----------------------------------------------------------------------------


LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the default is reachable from this machine only. 0.0.0.0: every interface.",
)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Development server with in-process jobs and scheduler; prints what to try."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = current_settings()
    if settings.is_production:
        raise click.ClickException("`flask serve` is the development server; production runs gunicorn (README)")
    if host in LOOPBACK_HOSTS:
        click.echo(f"Listening on {host} (loopback only): use --host 0.0.0.0 to let other machines connect.")
    else:
        click.echo(f"WARNING: listening on {host}: reachable from other machines, with development settings.")
    base = f"http://{host}:{port}"
    wechat_mode = "sandbox" if settings.wechat_sandbox else "live"
    policy_version = registration.POLICY_VERSION.value()
    click.echo(describe_defaults(settings) if settings.defaulted else "All settings come from the environment.")
    click.echo(console_accounts(base, show_passwords=settings.ENV == "development"))
    click.echo(
        f"""
Loyalty service on {base}   (jobs: {settings.JOBS_MODE}, WeChat: {wechat_mode})

  Health          {base}/healthz   {base}/readyz
  API docs        {base}/api/docs   (OpenAPI: {base}/api/openapi.json)
  WeChat callback {base}/wechat/callback

Enroll a buyer on purchase: paste this signed DMS event (paste it twice to see the duplicate ignored):

{signed_curl_snippet(base, settings.DMS_SECRET, sample_delivery_body(phone="13800138000"))}

Then look the buyer up (phone masked, the read is audited):

  .venv/bin/flask --app wsgi members show 13800138000

Or send a fresh one:  .venv/bin/flask --app wsgi dms send-demo --phone 13800138001

Care reminders: plan today's birthday, expiring points and tier-at-risk reminders for three demo
members and send them through the sandbox (the rules are real; only 09:00 is moved to now):

  .venv/bin/flask --app wsgi demo walkthrough care      # at night add --lift-quiet-hours

Back office (demo accounts agent, supervisor, operator, d0101; password demo-password):

  TOKEN=$(curl -s -X POST {base}/api/v1/cs/sessions -H 'Content-Type: application/json' \\
            -d '{{"username":"agent","password":"demo-password"}}' | sed 's/.*"token": *"\\([^"]*\\)".*/\\1/')
  .venv/bin/flask --app wsgi members show 13900000001        # then use its member_no:
  curl -s {base}/api/v1/cs/members/<member_no>/points -H "Authorization: Bearer $TOKEN"
  .venv/bin/flask --app wsgi points balance 13900000001
  .venv/bin/flask --app wsgi points rules list

Mini-app (the sandbox accepts any wx.login code; a phone code ending in 11 digits shares that number):

  MINI=$(curl -s -X POST {base}/api/v1/sessions -H 'Content-Type: application/json' \\
           -d '{{"code":"demo-login-1"}}' | sed 's/.*"token": *"\\([^"]*\\)".*/\\1/')
  curl -s -X POST {base}/api/v1/me/registration -H "Authorization: Bearer $MINI" \\
       -H 'Content-Type: application/json' \\
  -d '{{"policy_version":"{policy_version}","phone_code":"phone-13900000001","purposes":["service_notifications"]}}'
  curl -s {base}/api/v1/me/points -H "Authorization: Bearer $MINI"        # balance, expiring soon
  curl -s {base}/api/v1/me/member-code -H "Authorization: Bearer $MINI"   # the 60-second member code
  curl -s {base}/api/v1/me/referrals -H "Authorization: Bearer $MINI"     # my referral code, link, friends
Benefits, step by step (a new Gold member books a home test drive, cancels, rebooks, is checked in
by member code and rates it 2; `make run` printed it once already):

  .venv/bin/flask --app wsgi demo walkthrough booking

Referrals end to end (a friend opens the code, test drive, order, delivery, cooling, cancellation):

  .venv/bin/flask --app wsgi referrals walkthrough
"""
    )
    from werkzeug.serving import run_simple

    # The reads above opened this command's unit of work; on SQLite (BEGIN IMMEDIATE) an open
    # transaction would hold the write lock for as long as the server runs.
    db.session.remove()
    start_embedded_scheduler(app)
    run_simple(host, port, app, threaded=True, use_reloader=False)


def console_accounts(base: str, *, show_passwords: bool) -> str:
    """The console's address and the demo account of each role (passwords only in development)."""
    password = f"password {demo.DEMO_PASSWORD}" if show_passwords else "password: see `flask operators reset-password`"
    lines = [f"\nCustomer-service console: {base}/console/   (demo accounts, {password})"]
    for username, name, role, dealer_code in demo.DEMO_OPERATORS:
        where = f" of dealer {dealer_code}" if dealer_code else ""
        lines.append(f"  {role:<15} {username:<11} {name}{where}")
    lines.append(f"Operator dashboard: {base}/console/dashboard   (supervisor, operator; d0101 sees D0101 only)")
    return "\n".join(lines)


def register_commands(app: Flask) -> None:
    """The commands that belong to no one package (each package adds its own in ``register``)."""
    for group in (db_cli, demo_cli, jobs_cli, inbox_cli, program_cli, audit_cli, pii_cli):
        app.cli.add_command(group)
    app.cli.add_command(serve)
