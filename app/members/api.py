"""Mini-app: sign-in, joining, consent, profile, phone, vehicles, the member code."""

from __future__ import annotations

import base64
from typing import Any

from flask import g

from app.api.auth import BEARER, consented_member_required, member_required, per_user_limit, signed_in
from app.core.http import Blueprint
from app.core.qr import qr_png
from app.core.ratelimit import client_ip, limiter
from app.members import member_code, privacy, profile, registration, services, sessions, vehicle_claims
from app.members.identifiers import mask_phone
from app.members.models import Member, Ownership
from app.members.schemas import (
    BindingSchema,
    BindVehicleArgs,
    ConsentsSchema,
    LoginArgs,
    MemberCodeSchema,
    MeSchema,
    PhoneArgs,
    ProfileArgs,
    ProfileSchema,
    PurposesArgs,
    RegistrationArgs,
    RegistrationOutSchema,
    SessionOutSchema,
    VehiclesSchema,
    WithdrawArgs,
)
from app.members.staff_mode import staff_of
from app.tiers import policy as tiers

blp = Blueprint("members", __name__, url_prefix="/api/v1", description="Mini-app: members")


def member_summary(member: Member | None) -> dict[str, Any] | None:
    if member is None:
        return None
    return {
        "member_no": member.member_no,
        "status": member.status,
        "tier": tiers.current_tier(member.id),
        "locale": member.locale,
    }


def _me() -> dict[str, Any]:
    member = g.member if g.member is not None and g.member.status != "closed" else None
    return {
        "member": member_summary(member),
        "needs_registration": member is None,
        "needs_consent": member is not None and registration.needs_consent(member),
        "current_policy_version": registration.POLICY_VERSION.value(),
        "is_staff": staff_of(g.identity) is not None,
    }


def vehicle_json(ownership: Ownership) -> dict[str, Any]:
    vehicle = ownership.vehicle
    return {
        "vin": vehicle.vin,
        "model": vehicle.model_name,
        "model_year": vehicle.model_year,
        "plate": vehicle.plate,
        "role": ownership.role,
        "since": ownership.started_on,
    }


@blp.route("/sessions", methods=["POST"])
@limiter.limit("20/minute", key_func=client_ip)
@blp.arguments(LoginArgs)
@blp.response(201, SessionOutSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def sign_in(args: dict[str, Any]) -> dict[str, Any]:
    """Exchange a ``wx.login`` code for a session token (WeChat's session_key stays on the server)."""
    signed = sessions.sign_in_with_code(args["code"])
    g.identity, g.member = signed.identity, sessions.member_of(signed.identity)
    return {"token": signed.token, "expires_at": signed.expires_at, **_me()}


@blp.route("/sessions/refresh", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(201, SessionOutSchema)
@signed_in
def refresh() -> dict[str, Any]:
    """A new token for this sign-in; the current one stops working."""
    signed = sessions.rotate(g.mini_session, g.identity)
    return {"token": signed.token, "expires_at": signed.expires_at, **_me()}


@blp.route("/sessions/current", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@signed_in
def sign_out() -> None:
    sessions.revoke(g.mini_session)


@blp.route("/me")
@blp.doc(security=BEARER)
@blp.response(200, MeSchema)
@signed_in
def me() -> dict[str, Any]:
    """Who is signed in: member or not yet, consent up to date, staff mode available."""
    return _me()


@blp.route("/me/registration", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(RegistrationArgs)
@blp.response(201, RegistrationOutSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@signed_in
@per_user_limit("10/minute")
def register(args: dict[str, Any]) -> dict[str, Any]:
    """Accept the privacy policy and share the phone number: join (or activate) the membership."""
    result = registration.register_with_phone_code(
        g.identity, policy_version=args["policy_version"], purposes=args["purposes"], phone_code=args["phone_code"]
    )
    return {
        "member": member_summary(result.member),
        "joined_existing": result.joined_existing,
        "credited_points": result.credited_points,
    }


@blp.route("/me/consents")
@blp.doc(security=BEARER)
@blp.response(200, ConsentsSchema)
@member_required
def get_consents() -> dict[str, Any]:
    state = services.consent_state(g.member)
    purposes = {p: state.purposes.get(p, False) for p in registration.OPTIONAL_PURPOSES}
    return {
        "accepted_policy_version": state.policy_version,
        "current_policy_version": registration.POLICY_VERSION.value(),
        "purposes": purposes,
    }


@blp.route("/me/consents", methods=["PUT"])
@blp.doc(security=BEARER)
@blp.arguments(PurposesArgs)
@blp.response(200, ConsentsSchema)
@blp.alt_response(403, response="FORBIDDEN")
@member_required
def put_consents(args: dict[str, Any]) -> dict[str, Any]:
    """Grant exactly these optional purposes; the others are withdrawn at once. After a policy
    change, send ``policy_version`` to accept the new policy."""
    privacy.set_purposes(g.member, set(args["purposes"]), policy_version=args.get("policy_version"))
    return get_consents.__wrapped__()  # type: ignore[attr-defined]


@blp.route("/me/consents/withdraw", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(WithdrawArgs)
@blp.response(204)
@member_required
def withdraw(_args: dict[str, Any]) -> None:
    """Withdraw consent to the privacy policy: personal data is erased and the membership closed."""
    privacy.withdraw_everything(g.member)


def _profile(member: Member) -> dict[str, Any]:
    return {
        "member_no": member.member_no,
        "name": member.name,
        "gender": member.gender,
        "birthday": member.birthday,
        "birthday_changes_left": profile.birthday_changes_left(member),
        "city": member.city,
        "address": member.address,
        "preferred_dealer": dealer.code if (dealer := profile.preferred_dealer(member)) and dealer.active else None,
        "locale": member.locale,
        "phone": mask_phone(member.phone),
    }


@blp.route("/me/profile")
@blp.doc(security=BEARER)
@blp.response(200, ProfileSchema)
@member_required
def get_profile() -> dict[str, Any]:
    return _profile(g.member)


@blp.route("/me/profile", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(ProfileArgs)
@blp.response(200, ProfileSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@consented_member_required
def patch_profile(args: dict[str, Any]) -> dict[str, Any]:
    """Change name, gender, birthday (set once, changed at most once), city, home address or language."""
    return _profile(profile.update(g.member, dict(args)))


@blp.route("/me/phone", methods=["PUT"])
@blp.doc(security=BEARER)
@blp.arguments(PhoneArgs)
@blp.response(200, ProfileSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@consented_member_required
@per_user_limit("5/minute")
def put_phone(args: dict[str, Any]) -> dict[str, Any]:
    """Change the mobile number to the one the member shares now (not one used by another member)."""
    profile.change_phone(g.member, args["phone_code"])
    return _profile(g.member)


@blp.route("/me/vehicles")
@blp.doc(security=BEARER)
@blp.response(200, VehiclesSchema)
@member_required
def vehicles() -> dict[str, Any]:
    owned = [vehicle_json(o) for o in g.member.ownerships if o.ended_on is None]
    claims = [c for c in vehicle_claims.for_member(g.member) if c.status != "approved"]
    return {"vehicles": owned, "claims": claims}


@blp.route("/me/vehicles", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(BindVehicleArgs)
@blp.response(200, BindingSchema, description="Already yours: the DMS delivered it to your phone")
@blp.alt_response(202, schema=BindingSchema, description="A dealer will verify this car", success=True)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@consented_member_required
@per_user_limit("20/hour")
def bind_vehicle(args: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Add a car by VIN: yours already, or a claim a dealer verifies."""
    result = vehicle_claims.bind(g.member, args["vin"], plate=args.get("plate"), dealer_code=args.get("dealer_code"))
    owned = next(
        (o for o in g.member.ownerships if result.vehicle and o.vehicle_id == result.vehicle.id and o.ended_on is None),
        None,
    )
    body = {"outcome": result.outcome, "vehicle": vehicle_json(owned) if owned else None, "claim": result.claim}
    return body, 200 if result.outcome == "bound" else 202


@blp.route("/me/vehicles/<vin>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@blp.alt_response(404, response="NOT_FOUND")
@member_required
def unbind_vehicle(vin: str) -> None:
    """Remove a car from the membership (points stay with the member)."""
    vehicle_claims.unbind(g.member, vin)


@blp.route("/me/member-code")
@blp.doc(security=BEARER)
@blp.response(200, MemberCodeSchema)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@member_required
@per_user_limit("30/minute")
def member_code_now() -> dict[str, Any]:
    """A code valid for 60 seconds, to show at the dealer (staff scan it once)."""
    code, seconds = member_code.issue(g.member.id)
    image = "data:image/png;base64," + base64.b64encode(qr_png(code)).decode()
    return {"code": code, "expires_in": seconds, "image": image}
