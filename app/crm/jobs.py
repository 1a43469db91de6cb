"""The nightly reconciliation job (the CSV lands in ``instance/reports``)."""

from __future__ import annotations

import logging

from app.config import INSTANCE_DIR
from app.core.db import db
from app.crm import reconcile
from app.jobs import job

log = logging.getLogger(__name__)


@job("periodic", timeout=3600)
def reconcile_with_crm() -> str:
    report = reconcile.reconcile(report_dir=INSTANCE_DIR / "reports")
    db.session.commit()
    log.info("%s (%s)", report.summary(), report.path)
    return report.summary()
