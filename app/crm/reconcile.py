"""Nightly reconciliation with the CRM's export: counts and checksums per member-number prefix,
then the member lists of the buckets that differ; differing members get a ``snapshot`` outbox row.

Both sides digest a bucket the same way: MD5 of its ``member_no:tier:balance`` lines sorted
byte-wise and joined by newlines (``gateways.fakes.bucket_checksum``); ours in one SQL statement.
Merged-away members are not counted (the CRM dropped them with the merge). The report is a CSV
(one line per differing member) and a summary line.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from app import gateways
from app.core.clock import utcnow
from app.core.db import db
from app.crm import outbox
from app.members.models import Member
from app.points.models import PointAccount
from app.tiers.models import TierState

PREFIX_LENGTH = 3


def _lines(prefix: str | None = None, prefix_length: int = PREFIX_LENGTH) -> sa.Select:
    line = (
        Member.member_no
        + ":"
        + sa.func.coalesce(TierState.tier, "silver")
        + ":"
        + sa.cast(sa.func.coalesce(PointAccount.reward_available, 0), sa.String)
    ).label("line")
    query = (
        sa.select(
            sa.func.substr(Member.member_no, 1, prefix_length).label("prefix"),
            Member.id,
            Member.member_no,
            sa.func.coalesce(TierState.tier, "silver").label("tier"),
            sa.func.coalesce(PointAccount.reward_available, 0).label("balance"),
            line,
        )
        .outerjoin(TierState, TierState.member_id == Member.id)
        .outerjoin(PointAccount, PointAccount.member_id == Member.id)
        .where(Member.status != "merged")
    )
    if prefix is not None:
        query = query.where(Member.member_no.startswith(prefix, autoescape=True))
    return query


def our_buckets(prefix_length: int = PREFIX_LENGTH) -> dict[str, tuple[int, str]]:
    """prefix → (members, MD5 of the sorted lines), computed in PostgreSQL."""
    lines = _lines(prefix_length=prefix_length).subquery()
    # string_agg(line, E'\n' ORDER BY line COLLATE "C"): sorted byte-wise, like Python's sorted()
    separator = aggregate_order_by(sa.literal_column("E'\\n'"), lines.c.line.collate("C"))
    digest = sa.func.md5(sa.func.string_agg(lines.c.line, separator))
    rows = db.session.execute(
        sa.select(lines.c.prefix, sa.func.count(), digest).group_by(lines.c.prefix).order_by(lines.c.prefix)
    )
    return {prefix: (int(count), checksum) for prefix, count, checksum in rows}


@dataclass
class Difference:
    member_no: str
    problem: str  # missing_in_crm, unknown_to_us, differs
    ours: tuple[str, int] | None
    theirs: tuple[str, int] | None


@dataclass
class Report:
    buckets: int = 0
    differing_buckets: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    requeued: int = 0
    path: Path | None = None

    def summary(self) -> str:
        kinds = {
            k: sum(1 for d in self.differences if d.problem == k)
            for k in ("missing_in_crm", "differs", "unknown_to_us")
        }
        return (
            f"crm reconcile: {self.buckets} buckets, {len(self.differing_buckets)} differ; "
            f"{kinds['missing_in_crm']} missing in CRM, {kinds['differs']} differ, "
            f"{kinds['unknown_to_us']} unknown to us; {self.requeued} re-queued"
        )


def reconcile(*, prefix_length: int = PREFIX_LENGTH, report_dir: Path | None = None) -> Report:
    """Compare, narrow down, re-queue differing members (snapshot rows), write the CSV. Flushes."""
    crm = gateways.crm()
    theirs = {bucket.prefix: (bucket.count, bucket.checksum) for bucket in crm.export_buckets(prefix_length)}
    ours = our_buckets(prefix_length)
    report = Report(buckets=len(set(ours) | set(theirs)))
    report.differing_buckets = sorted(p for p in set(ours) | set(theirs) if ours.get(p) != theirs.get(p))
    for prefix in report.differing_buckets:
        their_members = crm.export_members(prefix) if prefix in theirs else {}
        our_members = {
            row.member_no: (row.id, (row.tier, int(row.balance)))
            for row in db.session.execute(_lines(prefix, prefix_length))
        }
        for member_no, (member_id, state) in sorted(our_members.items()):
            crm_state = their_members.get(member_no)
            if crm_state == state:
                continue
            problem = "missing_in_crm" if crm_state is None else "differs"
            report.differences.append(Difference(member_no, problem, state, crm_state))
            outbox.enqueue(member_id, "snapshot", {"reason": "reconcile"})
            report.requeued += 1
        for member_no in sorted(set(their_members) - set(our_members)):
            report.differences.append(Difference(member_no, "unknown_to_us", None, their_members[member_no]))
    if report_dir is not None:
        report.path = _write_csv(report, report_dir, utcnow())
    return report


def _write_csv(report: Report, directory: Path, at: dt.datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"crm-reconcile-{at:%Y%m%dT%H%M%SZ}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["member_no", "problem", "our_tier", "our_balance", "crm_tier", "crm_balance"])
        for d in report.differences:
            writer.writerow([d.member_no, d.problem, *(d.ours or ("", "")), *(d.theirs or ("", ""))])
        writer.writerow([report.summary()])
    return path
