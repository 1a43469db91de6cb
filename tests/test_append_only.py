"""The database itself refuses to rewrite evidence (audit log, consent records)."""

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from app.core import audit
from app.core.db import db
from tests import factories


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET reason = 'rewritten'", "DELETE FROM audit_log"])
def test_audit_log_refuses_update_and_delete(app_ctx, statement):
    audit.record(actor=("cli", "me"), action="member.read", subject=("member", 1))
    db.session.commit()  # audit rows are inserted at the commit (core/audit.py), not at a flush
    with pytest.raises(DBAPIError, match="append-only"), db.session.begin_nested():
        db.session.execute(sa.text(statement))


@pytest.mark.parametrize("statement", ["UPDATE consents SET granted = false", "DELETE FROM consents"])
def test_consent_records_refuse_update_and_delete(app_ctx, statement):
    factories.member()
    db.session.flush()
    with pytest.raises(DBAPIError, match="append-only"), db.session.begin_nested():
        db.session.execute(sa.text(statement))
