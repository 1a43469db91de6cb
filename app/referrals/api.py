"""Mini-app: my referral code, link and mini-app code, my referees; a referee's claim of a code."""

from __future__ import annotations

from typing import Any

from flask import Response, g

from app.api.auth import BEARER, consented_member_required, member_required, per_user_limit
from app.core.http import Blueprint
from app.referrals import attribution, codes, views
from app.referrals.schemas import MyReferralsArgs, MyReferralsSchema, ReferralClaimArgs, ReferralClaimSchema

blp = Blueprint("referrals", __name__, url_prefix="/api/v1", description="Mini-app: referrals (推荐购车)")


@blp.route("/me/referrals")
@blp.doc(security=BEARER)
@blp.arguments(MyReferralsArgs, location="query")
@blp.response(200, MyReferralsSchema)
@member_required
def my_referrals(args: dict[str, Any]) -> dict[str, Any]:
    """My code, share link and mini-app code; each referee (masked) with milestone and reward status."""
    mine = views.my_referrals(g.member, device_id=args.get("device_id"))
    return {
        "code": mine.code,
        "link": mine.link,
        "scene": mine.scene,
        "wxacode_url": "/api/v1/me/referrals/wxacode.png",
        "rewarded_this_year": mine.rewarded_this_year,
        "yearly_cap": mine.yearly_cap,
        "referees": [line.__dict__ for line in mine.referees],
    }


@blp.route("/me/referrals/wxacode.png")
@blp.doc(security=BEARER, responses={200: {"description": "PNG", "content": {"image/png": {}}}})
@member_required
def my_wxacode() -> Response:
    """My mini-app code (getwxacodeunlimit, asked of WeChat once and cached)."""
    image = codes.wxacode(codes.code_of(g.member.id))
    return Response(image, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


@blp.route("/me/referral-claims", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReferralClaimArgs)
@blp.response(200, ReferralClaimSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@consented_member_required
@per_user_limit("30/hour")
def claim(args: dict[str, Any]) -> dict[str, Any]:
    """The referee opened a referral link or code: attribute them (the first touch wins)."""
    result = attribution.attribute(args.pop("code"), g.member, **args)
    return {
        "attributed": result.new,
        "referral_id": result.referral.id if result.new else None,
        "dealer_code": attribution.dealer_code_of(result.referral) if result.new else None,
        "milestone": result.referral.milestone if result.new else None,
    }
