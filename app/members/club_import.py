"""Dealer-club import: a club's member spreadsheet becomes members, cars and consent leads.

Built for 820,000 rows in one run. Rows are read in chunks; each row is checked and normalized
in Python (phone, VIN, dates) and its personal fields encrypted and blind-indexed there (by a
forked helper, one chunk ahead, when ``prepare_ahead``); the chunk is then loaded into a staging
table and applied set-based (``club_import_sql``) in one transaction together with the run's
progress (``core/imports.py``) and the CRM outbox rows of the chunk's members (one ``snapshot``
each, through ``MembersImported``), so an interrupted run resumes at the next chunk and the CRM
hears of each imported member once per chunk that touched it.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core import audit, events, imports
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.core.i18n import _l
from app.core.imports import ChunkResult, RowError
from app.core.models import ImportRun
from app.core.security import cipher
from app.dealers.models import Dealer
from app.dealers.services import dealer_by_code
from app.members import club_import_sql as staging
from app.members.events import MembersImported
from app.members.identifiers import (
    VIN_MESSAGES,
    mobile_prefix_valid,
    new_member_number,
    normalize_cn_mobile,
    normalize_vin,
    vin_problem,
)
from app.members.registration import POLICY_VERSION, known_policy_versions

KIND = "dealer_club"
CHUNK_ROWS = 5_000
CONSENT_CHANNEL = "dealer_club"

#: Header aliases per field (Chinese and English; case, spaces and underscores ignored).
COLUMNS: dict[str, tuple[str, ...]] = {
    "phone": ("手机号", "手机", "手机号码", "电话", "phone", "mobile", "phone_number"),
    "name": ("姓名", "会员姓名", "name", "full_name"),
    "gender": ("性别", "gender", "sex"),
    "birthday": ("生日", "出生日期", "birthday", "date_of_birth"),
    "vin": ("车架号", "VIN", "VIN码", "车辆识别代号", "vin"),
    "plate": ("车牌", "车牌号", "plate", "license_plate"),
    "model": ("车型", "model", "model_name"),
    "consent": ("同意", "是否同意", "隐私同意", "consent", "privacy_consent"),
    "consent_at": ("同意时间", "同意日期", "consent_at", "consent_date"),
    "marketing": ("营销同意", "接受营销", "marketing", "marketing_consent"),
    "joined_at": ("入会日期", "入会时间", "joined_at", "join_date", "joined_on"),
}
REQUIRED = ("phone", "consent")
#: How the report names a column (the field's first Chinese and English alias).
COLUMN_LABELS = {field: f"{names[0]}/{field}" for field, names in COLUMNS.items()}

MESSAGES: dict[str, Any] = {
    "phone_missing": _l("The mobile number is missing."),
    "phone_invalid": _l("This is not a valid mainland China mobile number."),
    "vin_length": VIN_MESSAGES["length"],
    "vin_characters": VIN_MESSAGES["characters"],
    "vin_check_digit": VIN_MESSAGES["check_digit"],
    "date_invalid": _l("This is not a date (use YYYY-MM-DD)."),
    "date_in_future": _l("This date is in the future."),
    "consent_invalid": _l("Consent must be yes or no (是/否)."),
    "gender_invalid": _l("Gender must be male or female (男/女)."),
    "too_long": _l("This cell is too long."),
    "vin_other_owner": _l("This car belongs to another member (in our records or earlier in the file)."),
}
GENDERS = {"男": "male", "m": "male", "male": "male", "女": "female", "f": "female", "female": "female", "": None}

_NOT_DIGITS = re.compile("[ \u00a0\u3000\\-()（）]")  # the separators libphonenumber accepts too


def fast_cn_mobile(raw: str) -> str | None:
    """``normalize_cn_mobile`` with a fast path for the common shapes (11 digits, +86 / 0086)."""
    digits = _NOT_DIGITS.sub("", raw)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) == 11 and digits.isascii() and digits.isdigit() and digits[0] == "1":
        return digits if mobile_prefix_valid(digits[:7]) else None
    return normalize_cn_mobile(raw)


@dataclass(frozen=True)
class ImportOptions:
    dealer_code: str
    #: Who runs it, as the audit log names actors: ``("cli", "alice")``, ``("operator", "bob")``.
    actor: tuple[str, str]
    locale: str = "zh_CN"
    policy_version: str | None = None
    dry_run: bool = False
    chunk_rows: int = CHUNK_ROWS
    #: Check and encrypt the next chunk in a forked helper process while this one is written.
    prepare_ahead: bool = False
    #: This file's own header per field, beyond the known aliases (``{"phone": "联系电话"}``).
    columns: dict[str, str] | None = None


class _RowProblem(Exception):
    def __init__(self, code: str, column: str) -> None:
        self.code, self.column = code, column


def _cell(cells: list[str], positions: dict[str, int], name: str, limit: int = 64) -> str:
    at = positions.get(name)
    value = cells[at].strip() if at is not None and at < len(cells) else ""
    if len(value) > limit:
        raise _RowProblem("too_long", name)
    return value


def _date(cells: list[str], positions: dict[str, int], name: str, today: dt.date) -> dt.date | None:
    text = _cell(cells, positions, name)
    if not text:
        return None
    value = imports.parse_date(text)
    if value is None or value.year < 1900:
        raise _RowProblem("date_invalid", name)
    if value > today:
        raise _RowProblem("date_in_future", name)
    return value


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def stage_row(row_no: int, cells: list[str], positions: dict[str, int], today: dt.date) -> tuple[Any, ...]:
    """One row checked, normalized and encrypted, as a staging tuple; ``_RowProblem`` if refused."""
    pii = cipher()
    raw_phone = _cell(cells, positions, "phone")
    if not raw_phone:
        raise _RowProblem("phone_missing", "phone")
    phone = fast_cn_mobile(raw_phone)
    if phone is None:
        raise _RowProblem("phone_invalid", "phone")
    consent = imports.parse_yes_no(_cell(cells, positions, "consent"))
    if consent is None:
        raise _RowProblem("consent_invalid", "consent")
    marketing_text = _cell(cells, positions, "marketing")
    marketing = imports.parse_yes_no(marketing_text) if marketing_text else None
    if marketing_text and marketing is None:
        raise _RowProblem("consent_invalid", "marketing")
    gender_text = _cell(cells, positions, "gender").lower()
    if gender_text not in GENDERS:
        raise _RowProblem("gender_invalid", "gender")
    vin_text = normalize_vin(_cell(cells, positions, "vin")).replace(" ", "")
    if vin_text and (problem := vin_problem(vin_text)):
        raise _RowProblem(f"vin_{problem}", "vin")
    birthday = _date(cells, positions, "birthday", today)
    joined = _date(cells, positions, "joined_at", today)
    consent_at = _date(cells, positions, "consent_at", today)
    name = _cell(cells, positions, "name")
    plate = _cell(cells, positions, "plate", 16).replace(" ", "").upper()
    return (
        row_no,
        new_member_number() if consent else None,  # used if the row creates a member
        pii.blind_index(phone, "phone"),
        pii.encrypt(phone),
        pii.encrypt(name) if name else None,  # a lead keeps its name: the dealer calls them
        GENDERS[gender_text] if consent else None,
        pii.encrypt(birthday.isoformat()) if birthday and consent else None,
        pii.blind_index(vin_text, "vin") if vin_text else None,
        pii.encrypt(vin_text) if vin_text else None,
        pii.blind_index(plate, "plate") if plate and consent else None,
        pii.encrypt(plate) if plate and consent else None,
        _cell(cells, positions, "model") or None,
        consent,
        marketing,
        _midnight(consent_at or joined),
        _midnight(joined),
        joined,
    )


def stage_rows(
    rows: list[tuple[int, list[str]]], positions: dict[str, int], today: dt.date
) -> tuple[list[tuple[Any, ...]], list[RowError]]:
    """The Python half of a chunk (checks, normalization, encryption): staging tuples and errors."""
    staged, errors = [], []
    for row_no, cells in rows:
        try:
            staged.append(stage_row(row_no, cells, positions, today))
        except _RowProblem as problem:
            errors.append(RowError(row_no, problem.code, problem.column))
    return staged, errors


def apply_rows(
    rows: list[tuple[int, list[str]]],
    positions: dict[str, int],
    *,
    dealer: Dealer,
    policy_version: str,
    run: ImportRun | None,
    actor: tuple[str, str],
    prepared: Any = None,
) -> ChunkResult:
    """One chunk, set-based, in the caller's transaction (flushes, never commits). ``prepared``:
    the chunk's ``stage_rows`` result computed ahead (by a helper process)."""
    now = utcnow()
    staged, errors = prepared.get() if prepared is not None else stage_rows(rows, positions, now.date())
    db.session.flush()
    staging.load_stage(staged)
    leads = staging.resolve(dealer, run.id if run else None, now)
    staging.create_members(dealer, now)
    staging.complete(dealer, policy_version, now)
    outcomes, conflicts = staging.outcomes()
    events.publish(MembersImported(tuple(staging.member_ids())))  # the CRM outbox, with this chunk
    errors += [RowError(row_no, "vin_other_owner", "vin") for row_no in conflicts]
    errors.sort(key=lambda e: e.row_no)
    counts = {
        "created": int(outcomes.get("created", 0)),
        "matched": int(outcomes.get("matched", 0)),
        "leads": leads,
        "lead_repeats": int(outcomes.get("lead", 0)) - leads,
        "known_without_consent": int(outcomes.get("known_without_consent", 0)),
    }
    audit.record(
        actor=actor,
        action="members.club_import_chunk",
        subject=("import_run", run.id if run else "dry-run"),
        details={"dealer": dealer.code, "first_row": rows[0][0], "last_row": rows[-1][0], **counts},
    )
    return ChunkResult(counts=counts, errors=errors)


@dataclass(frozen=True)
class ImportOutcome:
    """Plain values, still readable after a dry run's rollback."""

    run_id: int
    status: str
    rows_done: int
    counts: dict[str, int]
    errors: list[RowError]


def dealer_for_import(code: str) -> Dealer:
    dealer = dealer_by_code(code)
    if dealer is None or not dealer.active:
        raise NotFound(_l("No open dealer has this code."))
    return dealer


def check_policy_version(version: str | None) -> str:
    version = version or POLICY_VERSION.value()
    if version not in known_policy_versions():
        raise ValidationFailed(fields={"policy_version": [_l("Unknown privacy policy version.")]})
    return version


def check_headers(path: Path, columns: dict[str, str] | None = None) -> dict[str, int]:
    """The column positions of the club's fields; a 422 naming a missing required one.
    ``columns`` maps a field to this file's own header for it (``{"phone": "联系电话"}``)."""
    unknown = sorted(set(columns or {}) - set(COLUMNS))
    if unknown:
        raise ValidationFailed(fields={name: [_l("Unknown field.")] for name in unknown})
    aliases = {
        name: ((columns or {})[name], *names) if name in (columns or {}) else names for name, names in COLUMNS.items()
    }
    return imports.map_header(imports.read_header(path), aliases, REQUIRED)


def run_import(
    path: Path, options: ImportOptions, *, progress: Any = None, stored_path: str | None = None
) -> ImportOutcome:
    """Import (or resume, or dry-run) a club file for a dealer. Commits per chunk unless dry."""
    dealer = dealer_for_import(options.dealer_code)
    policy_version = check_policy_version(options.policy_version)
    positions = check_headers(path, options.columns)
    run = imports.start_run(
        kind=KIND,
        scope=dealer.code,
        path=path,
        requested_by=":".join(options.actor),
        locale=options.locale,
        stored_path=stored_path,
    )
    if not options.dry_run:
        db.session.commit()

    # Encryption costs about as much as the chunk's SQL: a forked helper prepares the next chunk
    # while this process writes the current one (it inherits the configured cipher).
    helper = multiprocessing.get_context("fork").Pool(1) if options.prepare_ahead else None
    ahead: dict[int, Any] = {}

    def prepare(rows: list[tuple[int, list[str]]]) -> None:
        if helper is not None:
            ahead[rows[0][0]] = helper.apply_async(stage_rows, (rows, positions, utcnow().date()))

    def chunk(current: ImportRun, rows: list[tuple[int, list[str]]]) -> ChunkResult:
        return apply_rows(
            rows,
            positions,
            dealer=dealer,
            policy_version=policy_version,
            run=current,
            actor=options.actor,
            prepared=ahead.pop(rows[0][0], None),
        )

    try:
        final = imports.run_chunks(
            run,
            path,
            chunk_size=options.chunk_rows,
            apply_chunk=chunk,
            prepare=prepare,
            dry_run=options.dry_run,
            progress=progress,
        )
    finally:
        if helper is not None:
            helper.terminate()
    errors = [RowError(e.row_no, e.code, e.column) for e in imports.row_errors(final.id)]
    return ImportOutcome(final.id, final.status, final.rows_done, dict(final.counts), errors)


def write_report(errors: list[Any], locale: str, out: Any) -> int:
    return imports.write_error_report(errors, MESSAGES, COLUMN_LABELS, locale, out)


def sample_rows(count: int, *, seed: int = 7, error_every: int = 50, no_consent_every: int = 20) -> Iterator[list[str]]:
    """A club spreadsheet (header first) for demos and the benchmark: Chinese headers, every
    ``error_every``-th row with a bad phone, every ``no_consent_every``-th without consent, and
    every 97th repeating an earlier row's phone (the same person listed twice)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not security
    yield ["姓名", "手机号", "性别", "生日", "车架号", "车牌", "车型", "同意", "营销同意", "入会日期"]
    recent: list[str] = []
    for i in range(count):
        phone = recent[-10] if i % 97 == 96 and len(recent) >= 10 else f"13{rng.randrange(10**9):09d}"
        recent = [*recent[-20:], phone]
        vin = _sample_vin(rng) if i % 3 else ""
        consent = "否" if i % no_consent_every == no_consent_every - 1 else "是"
        if i % error_every == error_every - 1:
            phone = "12345"
        yield [
            f"会员{i}",
            phone,
            rng.choice(["男", "女", ""]),
            f"{rng.randrange(1960, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            vin,
            f"粤B{rng.randrange(10**5):05d}" if vin else "",
            "",
            consent,
            rng.choice(["是", "否", ""]),
            f"20{rng.randrange(15, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        ]


_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(
        zip(
            "ABCDEFGHJKLMNPRSTUVWXYZ",
            (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9),
            strict=True,
        )
    ),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _sample_vin(rng: random.Random) -> str:
    """A Chinese (``LSV…``) VIN with its check digit (ISO 3779 weights), without trial and error."""
    year = rng.choice("ABCDEFGHJKLMNPRSTVWXY123456789")  # position 10, the model year
    body = "LSV" + "".join(rng.choices(_VIN_CHARS, k=5)) + "0" + year + "".join(rng.choices(_VIN_CHARS, k=7))
    remainder = sum(_VIN_VALUES[c] * w for c, w in zip(body, _VIN_WEIGHTS, strict=True)) % 11
    return body[:8] + ("X" if remainder == 10 else str(remainder)) + body[9:]
