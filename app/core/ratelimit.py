"""Rate limits (flask-limiter) per client IP and per signed-in WeChat user, stored in Redis.

Limits fail open: if Redis is unavailable, requests are served (the signature, session and
single-use checks still protect the endpoints).

A limited request costs one Redis round trip, not three: the counter's increment also returns
the window's time to live (``OneTripFixedWindow``), and the ``X-RateLimit-*`` headers are written
from that answer instead of a ``GET`` and a ``TTL`` after the view.

flask-limiter checks every request in a ``before_request`` hook. Endpoints that carry no
``@limiter.limit`` (no default or application limits are configured) can skip that hook
(``skip_request_check``): it has nothing to check there, and finding that out costs about 0.15 ms
a request. The WeChat callback does, on its hot path; it counts its senders itself (``allow``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, g, request
from flask_limiter import Limiter
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, WindowStats

from app.config import settings_of


def client_ip() -> str:
    """The caller's IP (behind proxies, set LOYALTY_PROXY_HOPS so remote_addr is the real client)."""
    return request.remote_addr or "unknown"


def wechat_user() -> str:
    """The signed-in mini-app user (openid's identity row), else the IP."""
    identity = g.get("identity")
    return f"identity:{identity.id}" if identity is not None else f"ip:{client_ip()}"


limiter = Limiter(key_func=client_ip, headers_enabled=True, swallow_errors=True, strategy="fixed-window")


log = logging.getLogger(__name__)

#: ``limits``' own increment script (a new window's first hit sets its expiry), answering the
#: window's remaining seconds as well.
_INCR_EXPIRE_TTL = """
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if tonumber(current) == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""

#: How long a hit's answer may stand for the window's state in the response headers (a request
#: slower than this reads the counter again, as ``limits`` does).
_STATS_FRESH_SECONDS = 5.0


class OneTripFixedWindow(FixedWindowRateLimiter):
    """The fixed window of ``limits``, with one Redis call per limited request: ``hit`` learns the
    count and the reset time in the same script, and ``get_window_stats`` for that key in the same
    thread (flask-limiter's headers, right after the view) answers from it once. Other storages
    (``memory://``) and any other caller go the usual way."""

    def __init__(self, storage: RedisStorage) -> None:
        super().__init__(storage)
        self._script = storage.get_connection().register_script(_INCR_EXPIRE_TTL)
        self._last = threading.local()

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        key = item.key_for(*identifiers)
        count, ttl = self._script([self.storage.prefixed_key(key)], [item.get_expiry(), cost])
        count = int(count)
        self._last.stats = (key, count, max(int(ttl), 0) + time.time(), time.monotonic())
        return count <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        key = item.key_for(*identifiers)
        last = getattr(self._last, "stats", None)
        if last is not None and last[0] == key and time.monotonic() - last[3] < _STATS_FRESH_SECONDS:
            self._last.stats = None
            return WindowStats(last[2], max(0, item.amount - last[1]))
        return super().get_window_stats(item, *identifiers)


def allow(scope: str, key: str, limit: str) -> bool:
    """Count one hit for ``key`` under ``limit`` (e.g. ``"30/minute"``, fixed window) outside a
    route decorator; False once over. Fails open like the decorators: with the storage unreachable
    every hit is allowed."""
    try:
        return limiter.limiter.hit(_parsed(limit), "ratelimit", scope, key)
    except Exception as exc:  # the storage (Redis) is down or not configured: serve
        log.warning("rate limit %s not checked: %s", scope, type(exc).__name__)
        return True


_parsed = functools.lru_cache(maxsize=64)(parse_limit)  # the same few settings, parsed once

#: Endpoints flask-limiter's per-request hook leaves alone (they carry no ``@limiter.limit``).
_UNCHECKED: set[str] = set()


def skip_request_check(endpoint: str) -> None:
    """Let requests to ``endpoint`` (a view without ``@limiter.limit``) skip flask-limiter's hook."""
    _UNCHECKED.add(endpoint)


def _skipping(check: Callable[[], None]) -> Callable[[], None]:
    @functools.wraps(check)
    def check_unless_skipped() -> None:
        if request.endpoint not in _UNCHECKED:
            check()

    return check_unless_skipped


def init_app(app: Flask) -> None:
    url = settings_of(app).REDIS_URL
    app.config["RATELIMIT_STORAGE_URI"] = "memory://" if url.startswith("memory://") else url
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "ratelimit")
    limiter.init_app(app)
    # flask-limiter builds the storage from the config and has just made its fixed window on it (no
    # public setter for the strategy object): ours instead, on a Redis storage
    storage = limiter._storage
    if isinstance(storage, RedisStorage):
        limiter._limiter = OneTripFixedWindow(storage)
    hooks = app.before_request_funcs.setdefault(None, [])
    hooks[:] = [_skipping(hook) if hook == limiter._check_request_limit else hook for hook in hooks]
