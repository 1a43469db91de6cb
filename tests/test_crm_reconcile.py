"""Reconciliation: buckets compared by checksum, narrowed to members, differing ones re-queued."""

from __future__ import annotations

import csv

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.crm import delivery, reconcile
from app.crm.models import CrmOutboxEntry
from app.gateways.fakes import bucket_checksum
from app.points import ledger
from tests import factories
from tests.crm_helpers import crm_fixture  # noqa: F401 - the crm fixture

pytestmark = pytest.mark.postgres


def test_our_checksums_match_the_crms_digest(app_ctx, crm):
    members = [factories.member() for _ in range(6)]
    ledger.earn(
        ledger.Earning(member_id=members[0].id, currency="reward", points=42, idempotency_key="c-1", source_type="t")
    )
    ours = reconcile.our_buckets(3)
    for prefix, (count, checksum) in ours.items():
        lines = [
            f"{m.member_no}:silver:{42 if m is members[0] else 0}" for m in members if m.member_no.startswith(prefix)
        ]
        assert (count, checksum) == (len(lines), bucket_checksum(lines))


def test_agreeing_systems_report_nothing(app_ctx, crm, tmp_path):
    for _ in range(5):
        factories.member()
    db.session.commit()
    delivery.deliver_until_idle()
    report = reconcile.reconcile(report_dir=tmp_path)
    assert report.differing_buckets == [] and report.requeued == 0
    assert "0 differ" in report.summary()


def test_differences_are_narrowed_down_requeued_and_reported(app_ctx, crm, tmp_path):
    members = [factories.member() for _ in range(8)]
    db.session.commit()
    delivery.deliver_until_idle()
    drifted, missing = members[0], members[1]
    crm.records[drifted.member_no] = ("gold", 999)  # the CRM's record drifted
    del crm.records[missing.member_no]  # a delivery the CRM lost
    crm.records["9999999999"] = ("silver", 0)  # a member only the CRM knows

    report = reconcile.reconcile(report_dir=tmp_path)

    problems = {d.member_no: d.problem for d in report.differences}
    assert problems == {
        drifted.member_no: "differs",
        missing.member_no: "missing_in_crm",
        "9999999999": "unknown_to_us",
    }
    assert report.requeued == 2
    snapshots = db.session.scalars(sa.select(CrmOutboxEntry.member_id).where(CrmOutboxEntry.kind == "snapshot")).all()
    assert sorted(snapshots) == sorted([drifted.id, missing.id])
    rows = list(csv.reader(report.path.open(encoding="utf-8")))
    assert rows[0][:2] == ["member_no", "problem"] and len(rows) == 1 + 3 + 1
    assert rows[-1][0] == report.summary()

    db.session.commit()
    delivery.deliver_until_idle()  # the snapshots repair the CRM's record
    assert crm.records[drifted.member_no] == ("silver", 0)
    assert reconcile.reconcile(report_dir=tmp_path).requeued == 0
