"""``flask benefits …``: the catalog, dealer slots, no-shows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.benefits import booking, catalog, slots
from app.core.db import db
from app.core.errors import AppError
from app.dealers.services import dealer_by_code

benefits_cli = AppGroup("benefits", help="Benefit catalog, dealer slots and bookings.")
ACTOR = "cli"


def _fail(err: AppError) -> click.ClickException:
    detail = json.dumps(err.fields, ensure_ascii=False, default=str) if err.fields else ""
    return click.ClickException(f"{err.message} {detail}".strip())


@benefits_cli.command("seed")
def seed() -> None:
    """Publish the SPEC §5 default catalog (nothing if a catalog is in force)."""
    published = catalog.seed_defaults(actor=ACTOR)
    db.session.commit()
    click.echo(f"catalog {published.id} published" if published else "a catalog is already in force")


@benefits_cli.command("list")
def list_catalog() -> None:
    """The catalog in force, one benefit per line."""
    for benefit in catalog.benefits_in_force():
        click.echo(json.dumps(catalog.benefit_to_json(benefit), ensure_ascii=False, default=str))


@benefits_cli.command("draft")
@click.argument("name")
@click.option(
    "--from-file",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A JSON list of benefits replacing the copied ones.",
)
def draft(name: str, source: Path | None) -> None:
    """Start a draft from the catalog in force (optionally replacing its entries from a JSON file)."""
    try:
        row = catalog.draft_from_published(name, actor=ACTOR)
        if source is not None:
            catalog.replace_benefits(row, json.loads(source.read_text(encoding="utf-8")), actor=ACTOR)
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    click.echo(f"draft catalog {row.id} with {len(row.benefits)} benefits")


@benefits_cli.command("publish")
@click.argument("catalog_id", type=int)
def publish(catalog_id: int) -> None:
    """Put a draft catalog in force now."""
    try:
        row = catalog.publish(catalog.get(catalog_id), actor=ACTOR)
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    click.echo(f"catalog {row.id} in force from {row.effective_from:%Y-%m-%d %H:%M} UTC")


@benefits_cli.command("import-slots")
@click.argument("dealer_code")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_slots(dealer_code: str, path: Path) -> None:
    """Slots from CSV (date,start,end,service_type,capacity in dealer time)."""
    dealer = dealer_by_code(dealer_code)
    if dealer is None:
        raise click.ClickException(f"no dealer {dealer_code}")
    try:
        result = slots.import_csv(dealer, path.read_text(encoding="utf-8"), actor=ACTOR)
    except AppError as err:
        raise _fail(err) from None
    db.session.commit()
    click.echo(f"{result.created} slots created, {result.updated} updated")


@benefits_cli.command("slots")
@click.argument("dealer_code")
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
def list_slots(dealer_code: str, day: dt.datetime) -> None:
    """A dealer's slots on a day with the seats taken."""
    dealer = dealer_by_code(dealer_code)
    if dealer is None:
        raise click.ClickException(f"no dealer {dealer_code}")
    for slot in slots.slots_on(dealer.id, day.date()):
        click.echo(
            f"{slot.id}\t{slot.service_type}\t{slot.starts_at:%H:%M}Z–{slot.ends_at:%H:%M}Z\t{slot.booked}/{slot.capacity}"
        )


@benefits_cli.command("no-shows")
def no_shows() -> None:
    """Record no-shows now (the periodic job does it every 15 minutes)."""
    count = booking.mark_no_shows()
    db.session.commit()
    click.echo(f"{count} no-shows recorded")
