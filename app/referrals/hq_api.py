"""Back office: the review queue of flagged referrals, the funnel per dealer and month (JSON and
CSV), and a dealer's referral leads (contact details only with the referee's consent)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response

from app.core.errors import NotFound
from app.core.http import Blueprint
from app.dealers.services import dealer_by_code
from app.operators.access import may_act_for_dealer
from app.operators.auth import current_operator, require_operator
from app.operators.models import Operator
from app.referrals import funnel, reviews
from app.referrals.schemas import (
    ReferralDecisionArgs,
    ReferralFunnelArgs,
    ReferralFunnelRowSchema,
    ReferralLeadsArgs,
    ReferralLeadsSchema,
    ReferralReviewSchema,
)

blp = Blueprint("hq_referrals", __name__, url_prefix="/api/v1/program/referrals", description="Back office: referrals")
BEARER = [{"bearerAuth": []}]
FUNNEL_ROLES = ("operator", "supervisor", "dealer_manager")


def _actor(operator: Operator) -> tuple[str, str]:
    return ("operator", operator.username)


def _dealer_scope(operator: Operator, dealer_code: str | None) -> int | None:
    """A dealer manager sees their own dealer only; HQ any dealer (or all when none is named)."""
    if operator.role == "dealer_manager" and not dealer_code:
        if operator.dealer_id is None:  # a manager of no dealer sees nothing, never everything
            raise NotFound()
        return operator.dealer_id
    if not dealer_code:
        return None
    dealer = dealer_by_code(dealer_code)
    if dealer is None or not may_act_for_dealer(operator, dealer.id):
        raise NotFound()
    return dealer.id


def _review_item(referral: Any) -> dict[str, Any]:
    return {
        "id": referral.id,
        "referrer_member_id": referral.referrer_member_id,
        "referee_member_id": referral.referee_member_id,
        "dealer_id": referral.dealer_id,
        "flags": referral.flags,
        "milestone": referral.milestone,
        "reward_status": referral.reward_status,
        "review": referral.review,
        "attributed_at": referral.attributed_at,
    }


@blp.route("/reviews")
@blp.doc(security=BEARER)
@blp.response(200, ReferralReviewSchema(many=True))
@require_operator("supervisor", "operator")
def review_queue() -> list[dict[str, Any]]:
    """Flagged referrals waiting for a supervisor (bursts, rings, shared devices); the read is audited."""
    return [_review_item(r) for r in reviews.pending(_actor(current_operator()))]


@blp.route("/reviews/<id:referral_id>/decision", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReferralDecisionArgs)
@blp.response(200, ReferralReviewSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("supervisor")
def decide(args: dict[str, Any], referral_id: int) -> dict[str, Any]:
    """Approve (the held rewards are paid) or reject a flagged referral; audited with the reason."""
    referral = reviews.decide(referral_id, args["decision"], actor=_actor(current_operator()), reason=args["reason"])
    return _review_item(referral)


def _funnel_rows(args: dict[str, Any]) -> list[funnel.FunnelRow]:
    first: dt.date = args["month"]
    last: dt.date = max(first, args.get("until") or first)
    return funnel.funnel(first, last, dealer_id=_dealer_scope(current_operator(), args.get("dealer_code")))


@blp.route("/funnel")
@blp.doc(security=BEARER)
@blp.arguments(ReferralFunnelArgs, location="query")
@blp.response(200, ReferralFunnelRowSchema(many=True))
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*FUNNEL_ROLES)
def funnel_json(args: dict[str, Any]) -> list[Any]:
    """Leads, test drives, orders, deliveries, rewards paid and clawed back per dealer and month."""
    return [row.__dict__ for row in _funnel_rows(args)]


@blp.route("/funnel.csv")
@blp.doc(security=BEARER, responses={200: {"description": "CSV", "content": {"text/csv": {}}}})
@blp.arguments(ReferralFunnelArgs, location="query")
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*FUNNEL_ROLES)
def funnel_as_csv(args: dict[str, Any]) -> Response:
    body = funnel.funnel_csv(_funnel_rows(args))
    return Response(
        body, mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="referral-funnel.csv"'}
    )


@blp.route("/leads")
@blp.doc(security=BEARER)
@blp.arguments(ReferralLeadsArgs, location="query")
@blp.response(200, ReferralLeadsSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*FUNNEL_ROLES)
def dealer_leads(args: dict[str, Any]) -> dict[str, Any]:
    """A dealer's referral leads of a month: contact details with the referee's dealer_sharing consent,
    otherwise only a count. Audited."""
    operator = current_operator()
    dealer_id = _dealer_scope(operator, args.get("dealer_code"))
    if dealer_id is None:
        raise NotFound()
    leads = funnel.leads_for_dealer(dealer_id, args["month"], actor=_actor(operator))
    return {"shared": leads.shared, "not_shared": leads.not_shared}
