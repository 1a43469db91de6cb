"""Back-office sign-in: username and password for a bearer token."""

from __future__ import annotations

from typing import Any

from app.core.http import Blueprint
from app.core.ratelimit import client_ip
from app.operators import auth
from app.operators.schemas import SessionSchema, SignInArgs

blp = Blueprint("operators", __name__, url_prefix="/api/v1/cs", description="Back-office sign-in")


@blp.route("/sessions", methods=["POST"])
@blp.arguments(SignInArgs)
@blp.response(201, SessionSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def sign_in(args: dict[str, Any]) -> dict[str, Any]:
    """Sign in with username and password; use the token as `Authorization: Bearer <token>`.
    Five failures within 15 minutes lock the account for 15 minutes (and many from one IP, the IP)."""
    operator, token = auth.sign_in(args["username"], args["password"], ip=client_ip())
    return {
        "token": token,
        "expires_in": auth.TOKEN_HOURS.value() * 3600,
        "username": operator.username,
        "name": operator.name,
        "role": operator.role,
    }


@blp.route("/sessions/current", methods=["DELETE"])
@blp.doc(security=[{"bearerAuth": []}])
@blp.response(204)
@blp.alt_response(401, response="UNAUTHORIZED")
@auth.require_operator()
def sign_out() -> None:
    """Sign out: this token and every other token of the account stop working at once."""
    auth.sign_out(auth.current_operator())
