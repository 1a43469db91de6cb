"""A member's tier (mini-app) and the members whose tier is at risk (back office)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import g

from app.api.auth import BEARER, member_required
from app.core.http import Blueprint
from app.members import services as members
from app.operators.auth import require_operator
from app.points import queries
from app.tiers import policy
from app.tiers.display import tier_highlights, tier_name
from app.tiers.schemas import AtRiskArgs, AtRiskSchema, MemberTierSchema

blp = Blueprint("tiers", __name__, url_prefix="/api/v1", description="Tiers")
OPERATOR_BEARER = [{"bearerAuth": []}]


@blp.route("/me/tier")
@blp.doc(security=BEARER)
@blp.response(200, MemberTierSchema)
@member_required
def my_tier() -> dict[str, Any]:
    """Tier, progress to the next, review date and what keeps the tier."""
    progress = dataclasses.asdict(queries.tier_progress(g.member.id))
    return {
        **progress,
        "tier_name": tier_name(progress["tier"]),
        "next_tier_name": tier_name(progress["next_tier"]) if progress["next_tier"] else None,
        "highlights": tier_highlights(progress["tier"]),
    }


@blp.route("/cs/tiers/at-risk")
@blp.doc(security=OPERATOR_BEARER)
@blp.arguments(AtRiskArgs, location="query")
@blp.response(200, AtRiskSchema(many=True))
@require_operator("agent", "supervisor", "operator")
def tiers_at_risk(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Members whose review is near and who would drop a tier without a qualifying activity."""
    states = policy.at_risk(within_days=args["within_days"])
    numbers = members.member_numbers([state.member_id for state in states])
    return [
        {
            "member_no": numbers.get(state.member_id),
            "tier": state.tier,
            "review_on": state.review_on,
            "last_qualifying_at": state.last_qualifying_at,
        }
        for state in states
    ]
