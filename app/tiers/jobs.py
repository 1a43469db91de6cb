"""Nightly tier reviews."""

from __future__ import annotations

from app.core.clock import business_today
from app.core.db import db
from app.jobs import job
from app.tiers import policy


@job("periodic", timeout=3600)
def review_due_tiers() -> dict[str, int]:
    """Review every member whose tier anniversary has come; commits per chunk."""
    today = business_today()
    kept = dropped = 0
    while True:
        member_ids = policy.due_for_review(today, limit=500)
        if not member_ids:
            return {"kept": kept, "dropped": dropped}
        for member_id in member_ids:
            outcome = policy.review_member(member_id, today=today)
            if outcome is not None:
                kept += outcome.from_tier == outcome.to_tier
                dropped += outcome.from_tier != outcome.to_tier
        db.session.commit()
