"""Dealer capacity: slots per service type, day and time window, published by the dealer's
manager (one at a time or a month by CSV). A seat is taken by one conditional UPDATE
(``booked < capacity``), so racing bookings can never overbook a slot.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.benefits.models import DealerSlot
from app.core import audit
from app.core.clock import BUSINESS_TZ, parse_day, to_business, utcnow
from app.core.db import db
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.dealers.models import Dealer

CSV_COLUMNS = ("date", "start", "end", "service_type", "capacity")
MAX_CSV_ROWS = 5000
MAX_CAPACITY = 1000


class SlotFull(Conflict):
    code = "slot_full"
    default_message = _l("This time slot is fully booked. Please choose another.")


@dataclass(frozen=True)
class CsvResult:
    created: int
    updated: int


def local_window(day: dt.date, start: dt.time, end: dt.time) -> tuple[dt.datetime, dt.datetime]:
    """A window given in dealer (Asia/Shanghai) time, as aware UTC."""
    starts = dt.datetime.combine(day, start, tzinfo=BUSINESS_TZ).astimezone(dt.UTC)
    ends = dt.datetime.combine(day, end, tzinfo=BUSINESS_TZ).astimezone(dt.UTC)
    return starts, ends


def _check_window(starts_at: dt.datetime, ends_at: dt.datetime, capacity: int) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if ends_at <= starts_at:
        errors["ends_at"] = [str(_l("Must be after the start."))]
    if starts_at <= utcnow():
        errors["starts_at"] = [str(_l("A slot must start in the future."))]
    if not 0 <= capacity <= MAX_CAPACITY:
        errors["capacity"] = [str(_l("Must be between {min} and {max}.").format(min=0, max=MAX_CAPACITY))]
    return errors


def publish_slot(
    dealer: Dealer, *, service_type: str, starts_at: dt.datetime, ends_at: dt.datetime, capacity: int, actor: str
) -> DealerSlot:
    """Publish one slot, or change the capacity of the same (dealer, service, start) slot."""
    errors = _check_window(starts_at, ends_at, capacity)
    if errors:
        raise ValidationFailed(fields=errors)
    slot, _created = _upsert(dealer, service_type, starts_at, ends_at, capacity=capacity, actor=actor)
    audit.record(
        actor=("staff", actor),
        action="slot.published",
        subject=("dealer_slot", slot.id),
        details={"capacity": capacity, "service_type": service_type},
    )
    return slot


def _upsert(
    dealer: Dealer, service_type: str, starts_at: dt.datetime, ends_at: dt.datetime, *, capacity: int, actor: str
) -> tuple[DealerSlot, bool]:
    slot = db.session.scalar(
        sa.select(DealerSlot)
        .where(
            DealerSlot.dealer_id == dealer.id,
            DealerSlot.service_type == service_type,
            DealerSlot.starts_at == starts_at,
        )
        .with_for_update()
    )
    if slot is None:
        slot = DealerSlot(
            dealer_id=dealer.id,
            service_type=service_type,
            day=to_business(starts_at).date(),
            starts_at=starts_at,
            ends_at=ends_at,
            capacity=capacity,
            created_by=actor,
        )
        db.session.add(slot)
        db.session.flush()
        return slot, True
    if capacity < slot.booked:
        raise Conflict(
            _l("The slot already has {booked} bookings; its capacity cannot go below that.").format(booked=slot.booked)
        )
    slot.capacity = capacity
    slot.ends_at = ends_at
    db.session.flush()
    return slot, False


def _parse_row(row: dict[str, str]) -> tuple[dt.datetime, dt.datetime, str, int]:
    try:
        day = parse_day(row["date"].strip())
        start = dt.time.fromisoformat(row["start"].strip())
        end = dt.time.fromisoformat(row["end"].strip())
        capacity = int(row["capacity"].strip())
    except (ValueError, AttributeError, KeyError):
        raise ValueError(str(_l("Use date YYYY-MM-DD, start and end HH:MM, and a whole-number capacity."))) from None
    service_type = (row.get("service_type") or "").strip()
    if not service_type or len(service_type) > 32 or not service_type.replace("_", "").isalnum():
        raise ValueError(str(_l("Give a service type (letters, digits and _).")))
    starts_at, ends_at = local_window(day, start, end)
    errors = _check_window(starts_at, ends_at, capacity)
    if errors:
        raise ValueError(" ".join(message for messages in errors.values() for message in messages))
    return starts_at, ends_at, service_type, capacity


def _parse_csv(text: str) -> list[tuple[dt.datetime, dt.datetime, str, int]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    if reader.fieldnames is None or tuple(name.strip() for name in reader.fieldnames) != CSV_COLUMNS:
        raise ValidationFailed(
            fields={"file": [str(_l("The header must be: {columns}").format(columns=",".join(CSV_COLUMNS)))]}
        )
    parsed, errors = [], {}
    for line, row in enumerate(reader, start=2):
        if line - 1 > MAX_CSV_ROWS:
            raise ValidationFailed(
                fields={"file": [str(_l("At most {count} lines per file.").format(count=MAX_CSV_ROWS))]}
            )
        try:
            parsed.append(_parse_row(row))
        except ValueError as err:
            errors[f"line {line}"] = [str(err)]
    if errors:
        raise ValidationFailed(fields=errors)
    if not parsed:
        raise ValidationFailed(fields={"file": [str(_l("The file has no slots."))]})
    return parsed


def import_csv(dealer: Dealer, text: str, *, actor: str) -> CsvResult:
    """A month (or any span) of slots from CSV ``date,start,end,service_type,capacity`` in dealer
    time. All or nothing: any bad line refuses the file, naming each line."""
    try:
        parsed = _parse_csv(text)
    except csv.Error:  # e.g. a lone carriage return or a NUL inside a field
        raise ValidationFailed(fields={"file": [str(_l("The file is not readable as CSV."))]}) from None
    created = updated = 0
    for starts_at, ends_at, service_type, capacity in parsed:
        _slot, new = _upsert(dealer, service_type, starts_at, ends_at, capacity=capacity, actor=actor)
        created, updated = created + new, updated + (not new)
    audit.record(
        actor=("staff", actor),
        action="slots.imported",
        subject=("dealer", dealer.id),
        details={"created": created, "updated": updated},
    )
    return CsvResult(created, updated)


def get(slot_id: int) -> DealerSlot:
    slot = db.session.get(DealerSlot, slot_id)
    if slot is None:
        raise NotFound()
    return slot


def slots_on(dealer_id: int, day: dt.date, service_type: str | None = None) -> list[DealerSlot]:
    query = sa.select(DealerSlot).where(DealerSlot.dealer_id == dealer_id, DealerSlot.day == day)
    if service_type:
        query = query.where(DealerSlot.service_type == service_type)
    return list(db.session.scalars(query.order_by(DealerSlot.starts_at, DealerSlot.service_type)))


def take_seat(slot_id: int, *, now: dt.datetime) -> bool:
    """One seat, if any is left and the slot has not started: the race guard is this statement."""
    booked = db.session.execute(
        sa.update(DealerSlot)
        .where(DealerSlot.id == slot_id, DealerSlot.booked < DealerSlot.capacity, DealerSlot.starts_at > now)
        .values(booked=DealerSlot.booked + 1)
        .returning(DealerSlot.booked)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    _seen(slot_id, booked)
    return booked is not None


def release_seat(slot_id: int) -> None:
    booked = db.session.execute(
        sa.update(DealerSlot)
        .where(DealerSlot.id == slot_id, DealerSlot.booked > 0)
        .values(booked=DealerSlot.booked - 1)
        .returning(DealerSlot.booked)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    _seen(slot_id, booked)


def lock_in_order(slot_ids: list[int]) -> None:
    """Lock several slots by id order (a reschedule touches two: no deadlock between two of them)."""
    db.session.execute(
        sa.select(DealerSlot.id).where(DealerSlot.id.in_(slot_ids)).order_by(DealerSlot.id).with_for_update()
    )


def _seen(slot_id: int, booked: int | None) -> None:
    """The UPDATE went behind the ORM's back: give a loaded slot the count it returned (no re-read),
    or, when it matched nothing, reload the slot next time it is read."""
    slot = db.session.identity_map.get(db.session.identity_key(DealerSlot, slot_id))
    if slot is None:
        return
    if booked is None:
        db.session.expire(slot)
    else:
        set_committed_value(slot, "booked", booked)
