"""Rate limits (flask-limiter) per client IP and per signed-in WeChat user, stored in Redis.

Limits fail open: if Redis is unavailable, requests are served (the signature, session and
single-use checks still protect the endpoints).

flask-limiter checks every request in a ``before_request`` hook. Endpoints that carry no
``@limiter.limit`` (no default or application limits are configured) can skip that hook
(``skip_request_check``): it has nothing to check there, and finding that out costs about 0.15 ms
a request. The WeChat callback does, on its hot path; it counts its senders itself (``allow``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from flask import Flask, g, request
from flask_limiter import Limiter
from limits import parse as parse_limit

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
    hooks = app.before_request_funcs.setdefault(None, [])
    hooks[:] = [_skipping(hook) if hook == limiter._check_request_limit else hook for hook in hooks]
