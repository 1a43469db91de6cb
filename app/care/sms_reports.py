"""SMS delivery receipts: Aliyun's status reports (SmsReport, "HTTP 批量推送"), the SMS provider
``gateways.aliyun_sms`` sends through.

Aliyun POSTs a JSON array of reports to the address configured in its console, several per
request, and retries after 1, 5 and 10 minutes unless it gets HTTP 200 (answer ``{"code": 0}``).
Its push carries no signature (nor any header we could set: the console takes an address only),
so the address holds a secret path segment (``LOYALTY_SMS_REPORT_SECRET``; two while it is rotated),
compared in constant time (401 otherwise). The secret is part of the path, so nothing may log paths
raw: gunicorn's access log and the development server's request lines go through
``core.logs.redact_secret_paths``, our own log lines, audit rows and metrics name the endpoint, never
the path, and the load balancer in front must do the same (docs/operations.md).

Like every inbound webhook, the raw body is stored first (the inbox, ``source = 'aliyun_sms'``,
idempotent by the body's SHA-256: Aliyun's retry of a push is acknowledged as a duplicate), then
applied by the drain: each report finds its notification by the ``BizId`` SendSms answered with
(kept on the row) and records delivered / failed with the carrier's code. A report that arrives
before the dispatcher has recorded its send (the row still ``sending``) makes the drain try again
later; one for a message we do not know stays in the inbox with its ids in the event's outcome
(and a warning in the log), not dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import Counter

import sqlalchemy as sa

from app.care.models import Notification
from app.config import current_settings
from app.core import inbox
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import BadSignature
from app.jobs.drain import handles, nudge

log = logging.getLogger(__name__)

SOURCE, TYPE = "aliyun_sms", "SmsReport"


class SendNotRecorded(Exception):
    """The report is for a message whose send is still being recorded: apply it later."""


def check_secret(secret: str) -> None:
    """The address's secret segment, compared in constant time with each configured secret (every
    one of them, so the time does not tell which matched): 401 when none does or none is set."""
    given = secret.encode()
    matches = [hmac.compare_digest(given, expected.encode()) for expected in current_settings().sms_report_secrets]
    if not any(matches):
        raise BadSignature()


def store(raw_body: bytes) -> bool:
    """Keep a checked push raw, once (by its SHA-256), and have the drain apply it; True if new."""
    stored = inbox.store_event(
        source=SOURCE, external_id=hashlib.sha256(raw_body).hexdigest(), type=TYPE, body=raw_body
    )
    if stored is not None:
        nudge(SOURCE)
    return stored is not None


@handles(SOURCE, TYPE)
def apply_reports(event: inbox.InboundEvent, body: bytes) -> str:
    """Apply a stored push: every report, or none (a send not recorded yet: retried with backoff)."""
    counts: Counter[str] = Counter()
    unknown = []
    for report in json.loads(body):  # checked against ``SmsReportSchema`` when it came in
        out_id = report.get("out_id")
        result = record(
            report["biz_id"], None if out_id is None else str(out_id), report["success"] is True,
            report["err_code"], report.get("err_msg") or "",
        )  # fmt: skip
        counts[result] += 1
        if result == "unknown":
            unknown.append(f"{report['biz_id']}/{out_id or '-'}")
    if unknown:
        log.warning("SMS status reports for unknown messages (BizId/OutId): %s", ", ".join(unknown))
    outcome = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    return outcome + (f"; unknown BizId/OutId: {' '.join(unknown)}" if unknown else "")


def record(biz_id: str, out_id: str | None, delivered: bool, code: str, message: str) -> str:
    """One report on its notification: ``delivered``, ``failed`` or ``unknown``. Applying it again
    changes nothing."""
    notification = db.session.scalar(
        sa.select(Notification).where(Notification.sms_message_id == biz_id).with_for_update()
    )
    if notification is None:
        if _still_sending(out_id):
            raise SendNotRecorded(f"notification {out_id} is still being sent")
        return "unknown"
    notification.delivery_status = code[:32]
    notification.status = "delivered" if delivered else "failed"
    if not delivered:
        notification.error = f"SMS not delivered: {code} {message}".strip()[:255]
    notification.finished_at = notification.finished_at or utcnow()
    return notification.status


def _still_sending(out_id: str | None) -> bool:
    """The OutId is our notification's id: is that row attempted with its outcome not yet on record?"""
    if not out_id or not out_id.isdigit() or len(out_id) > 18:
        return False
    return (
        db.session.scalar(
            sa.select(Notification.id).where(
                Notification.id == int(out_id),
                Notification.status == "sending",
                Notification.attempted_at.is_not(None),
            )
        )
        is not None
    )
