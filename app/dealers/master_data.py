"""Dealer and staff master data from HQ: the master files and the CRM's change events.

Both go through ``apply_dealer_change`` / ``apply_staff_change``: one record in HQ's terms, applied
when it is newer than the last one applied (``master_changed_at``; an older change is ``stale``).

* A dealer opens (created, or reopened), closes (inactive, ``closed_on``; its advisors stop
  enrolling) or moves (address, city, region, location: audited as a move).
* An advisor joins, moves to another dealer or leaves (inactive, ``left_on``): their QR codes stop
  enrolling (enrollment checks ``Staff.active``), and the members they enrolled keep their
  attribution (``members.enrolling_staff_id`` is history, never rewritten).
* A record may carry the month's enrollment target (``enrollment_targets``, per dealer and advisor).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.core import audit, imports
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.i18n import _l
from app.core.imports import ChunkResult, RowError
from app.core.models import ImportRun
from app.dealers.models import STAFF_ROLES, Dealer, EnrollmentTarget, Staff

DEALER_COLUMNS: dict[str, tuple[str, ...]] = {
    "code": ("经销商代码", "经销商编码", "code", "dealer_code"),
    "name": ("经销商名称", "名称", "name"),
    "region": ("大区", "区域", "region"),
    "city": ("城市", "city"),
    "address": ("地址", "address"),
    "phone": ("电话", "phone"),
    "latitude": ("纬度", "latitude", "lat"),
    "longitude": ("经度", "longitude", "lng"),
    "status": ("状态", "status"),
    "opened_on": ("开业日期", "opened_on"),
    "closed_on": ("闭店日期", "closed_on"),
    "target": ("月度目标", "招募目标", "target", "monthly_target"),
}
STAFF_COLUMNS: dict[str, tuple[str, ...]] = {
    "staff_code": ("员工编号", "顾问编号", "工号", "staff_code"),
    "dealer_code": ("经销商代码", "经销商编码", "dealer_code"),
    "name": ("姓名", "name"),
    "role": ("岗位", "角色", "role"),
    "status": ("状态", "status"),
    "joined_on": ("入职日期", "joined_on"),
    "left_on": ("离职日期", "left_on"),
    "target": ("月度目标", "招募目标", "target", "monthly_target"),
}
KINDS = {
    "dealer_master": (DEALER_COLUMNS, ("code", "name", "region", "city")),
    "staff_master": (STAFF_COLUMNS, ("staff_code", "dealer_code", "name", "role")),
}
ROLE_NAMES = {"销售顾问": "sales_advisor", "服务顾问": "service_advisor", "会员经理": "member_manager"}
OPEN = {"", "open", "active", "营业", "在营", "开业", "在职", "joined"}
CLOSED = {"closed", "inactive", "left", "闭店", "关闭", "停业", "离职"}

MESSAGES: dict[str, Any] = {
    "missing": _l("This field is required."),
    "too_long": _l("This cell is too long."),
    "date_invalid": _l("This is not a date (use YYYY-MM-DD)."),
    "number_invalid": _l("This is not a number."),
    "status_invalid": _l("Status must be open or closed (active or left)."),
    "role_invalid": _l("Unknown role (sales advisor, service advisor or member manager)."),
    "unknown_dealer": _l("No dealer has this code."),
    "dealer_closed": _l("This dealer is closed: no one can join it."),
}
LIMITS = {"code": 16, "name": 128, "region": 32, "city": 64, "address": 255, "phone": 32, "staff_code": 32}


class RecordProblem(Exception):
    """A master record HQ must fix: a reason code (``MESSAGES``) and the field."""

    def __init__(self, code: str, field: str) -> None:
        super().__init__(f"{field}: {code}")
        self.code, self.field = code, field


@dataclass(frozen=True)
class Applied:
    #: created, updated, unchanged or stale (older than what was applied)
    outcome: str
    record: Dealer | Staff | None


def _text(record: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = str(record.get(name) or "").strip()
    if required and not value:
        raise RecordProblem("missing", name)
    if len(value) > LIMITS.get(name, 64):
        raise RecordProblem("too_long", name)
    return value or None


def _date(record: Mapping[str, Any], name: str) -> dt.date | None:
    value = record.get(name)
    if value in (None, "") or isinstance(value, dt.date):
        return value or None
    parsed = imports.parse_date(str(value))
    if parsed is None:
        raise RecordProblem("date_invalid", name)
    return parsed


def _number(record: Mapping[str, Any], name: str, kind: type = float) -> Any:
    value = record.get(name)
    if value in (None, ""):
        return None
    try:
        number = kind(str(value).strip())
    except ValueError:
        raise RecordProblem("number_invalid", name) from None
    if kind is int and number < 0:
        raise RecordProblem("number_invalid", name)
    return number


def _is_open(record: Mapping[str, Any]) -> bool:
    status = str(record.get("status") or "").strip().lower()
    if status in OPEN:
        return True
    if status in CLOSED:
        return False
    raise RecordProblem("status_invalid", "status")


def _stale(row: Dealer | Staff | None, changed_at: dt.datetime) -> bool:
    return row is not None and row.master_changed_at is not None and changed_at < row.master_changed_at


def apply_dealer_change(record: Mapping[str, Any], *, changed_at: dt.datetime, actor: tuple[str, str]) -> Applied:
    """Open, update, move or close a dealer from an HQ record (file row or CRM event). Flushes."""
    code = _text(record, "code", required=True)
    fields = {
        "name": _text(record, "name", required=True),
        "region": _text(record, "region", required=True),
        "city": _text(record, "city", required=True),
        "address": _text(record, "address"),
        "phone": _text(record, "phone"),
        "latitude": _number(record, "latitude"),
        "longitude": _number(record, "longitude"),
        "opened_on": _date(record, "opened_on"),
    }
    is_open = _is_open(record)
    closed_on = _date(record, "closed_on")
    target = _number(record, "target", int)
    # The unique code decides who creates a new dealer; everyone then waits on its row lock.
    created = insert_if_absent(Dealer, {"code": code, **fields, "active": True}, ("code",)) is not None
    dealer = db.session.scalar(
        sa.select(Dealer).where(Dealer.code == code).with_for_update().execution_options(populate_existing=True)
    )
    assert dealer is not None
    if _stale(dealer, changed_at):
        return Applied("stale", dealer)
    location = ("address", "city", "region", "latitude", "longitude")
    moved = not created and any(getattr(dealer, f) != fields[f] for f in location)
    changed = created or moved or any(getattr(dealer, f) != v for f, v in fields.items())
    for name, value in fields.items():
        setattr(dealer, name, value)
    if is_open != dealer.active or (not is_open and dealer.closed_on != (closed_on or dealer.closed_on)):
        changed = True
        dealer.active = is_open
        dealer.closed_on = None if is_open else closed_on or changed_at.date()
        if not is_open:
            _close_staff_of(dealer, dealer.closed_on, changed_at)
    dealer.master_changed_at = changed_at
    db.session.flush()
    if target is not None:
        changed |= set_target(dealer, None, target, changed_at)
    if changed:
        action = "opened" if created else "closed" if not is_open else "moved" if moved else "updated"
        audit.record(
            actor=actor, action=f"dealer.{action}", subject=("dealer", dealer.code), details={"at": str(changed_at)}
        )
    return Applied("created" if created else "updated" if changed else "unchanged", dealer)


def _close_staff_of(dealer: Dealer, on: dt.date | None, changed_at: dt.datetime) -> None:
    """A closed dealer's staff stop enrolling with it."""
    db.session.execute(
        sa.update(Staff)
        .where(Staff.dealer_id == dealer.id, Staff.active)
        .values(active=False, left_on=on, master_changed_at=changed_at)
        .execution_options(synchronize_session="fetch")
    )


def apply_staff_change(record: Mapping[str, Any], *, changed_at: dt.datetime, actor: tuple[str, str]) -> Applied:
    """An advisor joins, moves to another dealer, changes role or leaves. Flushes."""
    staff_code = _text(record, "staff_code", required=True)
    dealer_code = _text(record, "dealer_code", required=True)
    name = _text(record, "name", required=True)
    role_text = _text(record, "role", required=True) or ""
    role = ROLE_NAMES.get(role_text, role_text.lower().replace(" ", "_"))
    if role not in STAFF_ROLES:
        raise RecordProblem("role_invalid", "role")
    is_active = _is_open(record)
    joined_on, left_on = _date(record, "joined_on"), _date(record, "left_on")
    target = _number(record, "target", int)
    dealer = db.session.scalar(sa.select(Dealer).where(Dealer.code == dealer_code))
    if dealer is None:
        raise RecordProblem("unknown_dealer", "dealer_code")
    existing = db.session.scalar(sa.select(Staff.dealer_id, Staff.active).where(Staff.staff_code == staff_code))
    if is_active and not dealer.active and existing != (dealer.id, True):
        raise RecordProblem("dealer_closed", "dealer_code")
    new = {"staff_code": staff_code, "dealer_id": dealer.id, "name": name, "role": role, "active": is_active}
    created = insert_if_absent(Staff, new, ("staff_code",)) is not None
    staff = db.session.scalar(
        sa.select(Staff)
        .where(Staff.staff_code == staff_code)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert staff is not None
    if _stale(staff, changed_at):
        return Applied("stale", staff)
    moved_from = staff.dealer_id if not created and staff.dealer_id != dealer.id else None
    left = not created and staff.active and not is_active
    values = {"dealer_id": dealer.id, "name": name, "role": role, "active": is_active, "joined_on": joined_on}
    values["left_on"] = None if is_active else left_on or staff.left_on or changed_at.date()
    changed = created or any(getattr(staff, f) != v for f, v in values.items())
    for field, value in values.items():
        setattr(staff, field, value)
    staff.master_changed_at = changed_at
    db.session.flush()
    if target is not None:
        changed |= set_target(dealer, staff, target, changed_at)
    if changed:
        action = "joined" if created else "left" if left else "moved" if moved_from else "updated"
        details = {"dealer": dealer.code, "at": str(changed_at)}
        audit.record(actor=actor, action=f"staff.{action}", subject=("staff", staff.staff_code), details=details)
    return Applied("created" if created else "updated" if changed else "unchanged", staff)


def set_target(dealer: Dealer, staff: Staff | None, target: int, at: dt.datetime, month: dt.date | None = None) -> bool:
    """The month's enrollment target of a dealer or advisor (this month unless ``month``); True if
    it changed. The advisor's current target is mirrored on ``staff.monthly_enrollment_target``."""
    first = (month or at.date()).replace(day=1)
    values = {"month": first, "dealer_id": dealer.id, "staff_id": staff.id if staff else None, "target": target}
    where = EnrollmentTarget.staff_id.is_not(None) if staff else EnrollmentTarget.staff_id.is_(None)
    row = db.session.scalar(
        sa.select(EnrollmentTarget)
        .where(EnrollmentTarget.month == first, where, *_target_owner(dealer, staff))
        .with_for_update()
    )
    if row is None:
        db.session.add(EnrollmentTarget(**values, updated_at=at))
    elif row.target == target:
        return False
    else:
        row.target, row.updated_at = target, at
    if staff is not None and first == utcnow().date().replace(day=1):
        staff.monthly_enrollment_target = target
    db.session.flush()
    return True


def _target_owner(dealer: Dealer, staff: Staff | None) -> tuple[Any, ...]:
    return (EnrollmentTarget.staff_id == staff.id,) if staff else (EnrollmentTarget.dealer_id == dealer.id,)


def target_for(staff: Staff, month: dt.date) -> int:
    """The advisor's target for the month (HQ's monthly target, else the standing one)."""
    target = db.session.scalar(
        sa.select(EnrollmentTarget.target).where(
            EnrollmentTarget.month == month.replace(day=1), EnrollmentTarget.staff_id == staff.id
        )
    )
    return staff.monthly_enrollment_target if target is None else target


@dataclass(frozen=True)
class MasterOutcome:
    run_id: int
    status: str
    rows_done: int
    counts: dict[str, int]
    errors: list[RowError]


def apply_master_rows(
    kind: str,
    rows: list[tuple[int, list[str]]],
    positions: dict[str, int],
    changed_at: dt.datetime,
    actor: tuple[str, str],
) -> ChunkResult:
    """A chunk of a master file: each row in a savepoint, so one bad row refuses only itself."""
    apply = apply_dealer_change if kind == "dealer_master" else apply_staff_change
    result = ChunkResult(counts={"created": 0, "updated": 0, "unchanged": 0, "stale": 0})
    for row_no, cells in rows:
        record = {name: cells[at] if at < len(cells) else "" for name, at in positions.items()}
        try:
            with db.session.begin_nested():
                outcome = apply(record, changed_at=changed_at, actor=actor).outcome
        except RecordProblem as problem:
            result.errors.append(RowError(row_no, problem.code, problem.field))
            continue
        result.counts[outcome] += 1
    return result


def import_master_file(
    path: Path,
    kind: str,
    *,
    actor: tuple[str, str],
    locale: str = "zh_CN",
    dry_run: bool = False,
    chunk_rows: int = 500,
    progress: Any = None,
) -> MasterOutcome:
    """Load HQ's dealer or staff master file (resumable like the club import). Commits per chunk."""
    aliases, required = KINDS[kind]
    positions = imports.map_header(imports.read_header(path), aliases, required)
    run = imports.start_run(kind=kind, scope="hq", path=path, requested_by=":".join(actor), locale=locale)
    changed_at = run.created_at
    if not dry_run:
        db.session.commit()

    def chunk(_run: ImportRun, rows: list[tuple[int, list[str]]]) -> ChunkResult:
        return apply_master_rows(kind, rows, positions, changed_at, actor)

    final = imports.run_chunks(run, path, chunk_size=chunk_rows, apply_chunk=chunk, dry_run=dry_run, progress=progress)
    errors = [RowError(e.row_no, e.code, e.column) for e in imports.row_errors(final.id)]
    return MasterOutcome(final.id, final.status, final.rows_done, dict(final.counts), errors)


def write_report(kind: str, errors: list[RowError], locale: str, out: Any) -> int:
    aliases = KINDS[kind][0]
    labels = {field: f"{names[0]}/{field}" for field, names in aliases.items()}
    return imports.write_error_report(errors, MESSAGES, labels, locale, out)
