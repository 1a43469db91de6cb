"""Sign-in throttling for back-office accounts: failures counted per account and per client IP in
Redis; past the limit within the window, the account (or IP) is locked for a while, whatever the
password. The count of an account starts again after a successful sign-in.

Redis down: sign-in still works (fail open, like the other limits), logged loudly; the passwords
are salted slow hashes either way.
"""

from __future__ import annotations

import hashlib
import logging

import redis

from app.core import tunables
from app.extensions import redis_client

log = logging.getLogger(__name__)

ACCOUNT_FAILURES = tunables.define(
    "operators.sign_in_failures", 5, "Failed back-office sign-ins per account within the window before a lockout"
)
IP_FAILURES = tunables.define(
    "operators.sign_in_ip_failures", 20, "Failed back-office sign-ins per client IP within the window before a lockout"
)
WINDOW_MINUTES = tunables.define("operators.sign_in_window_minutes", 15, "Window counting failed back-office sign-ins")
LOCKOUT_MINUTES = tunables.define("operators.lockout_minutes", 15, "Minutes an account or IP stays locked")

_PREFIX = "operators:sign-in"


def _keys(username: str, ip: str) -> list[tuple[str, str, int]]:
    """(failure counter, lock, limit) per account and per IP; usernames are hashed into the keys."""
    user = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"{_PREFIX}:fails:user:{user}", f"{_PREFIX}:lock:user:{user}", ACCOUNT_FAILURES.value()),
        (f"{_PREFIX}:fails:ip:{ip}", f"{_PREFIX}:lock:ip:{ip}", IP_FAILURES.value()),
    ]


def locked_for(username: str, ip: str) -> int:
    """Seconds the account or the IP stays locked (0: not locked)."""
    try:
        pipe = redis_client().pipeline()
        for _fails, lock, _limit in _keys(username, ip):
            pipe.ttl(lock)
        return max(0, *pipe.execute())
    except redis.RedisError:
        log.warning("sign-in throttle unavailable (Redis): not checking lockouts")
        return 0


def failed(username: str, ip: str) -> int:
    """Count a failure; lock what reached its limit. Seconds locked from now on (0: not locked)."""
    window, lockout = WINDOW_MINUTES.value() * 60, LOCKOUT_MINUTES.value() * 60
    try:
        client = redis_client()
        locked = 0
        for fails, lock, limit in _keys(username, ip):
            pipe = client.pipeline()
            pipe.set(fails, 0, ex=window, nx=True)  # the window opens with the first failure
            pipe.incr(fails)
            _, count = pipe.execute()
            if count >= limit:
                client.set(lock, 1, ex=lockout)
                client.delete(fails)
                locked = lockout
        return locked
    except redis.RedisError:
        log.warning("sign-in throttle unavailable (Redis): failure not counted")
        return 0


def succeeded(username: str, ip: str) -> None:
    """The account's count starts again (the IP's does not: one good account must not launder guesses)."""
    try:
        redis_client().delete(_keys(username, ip)[0][0])
    except redis.RedisError:
        log.warning("sign-in throttle unavailable (Redis)")


def unlock(username: str) -> None:
    """After a password reset: the account may sign in at once."""
    fails, lock, _limit = _keys(username, "-")[0]
    try:
        redis_client().delete(fails, lock)
    except redis.RedisError:
        log.warning("sign-in throttle unavailable (Redis): account lock not cleared")
