"""The dynamic member code (会员码) the mini-app shows and staff scan at the dealer.

``MC.<member id>.<issued at>.<HMAC>`` — verifiable without a database round trip, valid for 60
seconds, and usable once: a code that was already scanned (Redis) is refused, like one that is
too old. If Redis is down the 60-second window still bounds a replay, so scanning keeps working.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import redis
from flask import current_app

from app.core.errors import AppError
from app.core.i18n import _l
from app.extensions import redis_client

log = logging.getLogger(__name__)

VALID_SECONDS = 60
CLOCK_SKEW_SECONDS = 5


class InvalidMemberCode(AppError):
    status = 422
    code = "invalid_member_code"
    default_message = _l("This member code is not valid. Ask the member to refresh it.")


def _key() -> bytes:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"loyalty member code v1", hashlib.sha256).digest()


def _signature(payload: str) -> str:
    return hmac.new(_key(), payload.encode(), hashlib.sha256).hexdigest()[:20]


def issue(member_id: int, now: float | None = None) -> tuple[str, int]:
    """A fresh code and how many seconds it stays valid."""
    issued = int(time.time() if now is None else now)
    payload = f"{member_id:x}.{issued:x}"
    return f"MC.{payload}.{_signature(payload)}", VALID_SECONDS


def verify(code: str, now: float | None = None) -> int:
    """The member id of a valid, fresh, unused code (it is used up by this call)."""
    parts = code.strip().split(".")
    if len(parts) != 4 or parts[0] != "MC":
        raise InvalidMemberCode()
    payload = f"{parts[1]}.{parts[2]}"
    if not hmac.compare_digest(_signature(payload), parts[3]):
        raise InvalidMemberCode()
    try:
        member_id, issued = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        raise InvalidMemberCode() from None
    age = (time.time() if now is None else now) - issued
    if age > VALID_SECONDS or age < -CLOCK_SKEW_SECONDS:
        raise InvalidMemberCode(_l("This member code has expired. Ask the member to refresh it."))
    try:
        first_use = redis_client().set(f"member-code:{payload}", 1, nx=True, ex=VALID_SECONDS + CLOCK_SKEW_SECONDS)
    except redis.RedisError:
        log.warning("Redis unavailable: member code single-use check skipped")
        first_use = True
    if not first_use:
        raise InvalidMemberCode(_l("This member code was already scanned. Ask the member to refresh it."))
    return member_id
