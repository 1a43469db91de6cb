"""Rate limits (flask-limiter) per client IP and per signed-in WeChat user, stored in Redis.

Limits fail open: if Redis is unavailable, requests are served (the signature, session and
single-use checks still protect the endpoints).

The WeChat callback's per-sender limit (``allow``) counts most hits in the process first
(``LocalFront``): far below the limit a hit is admitted at once and its count reaches Redis within
``FLUSH_SECONDS``, in one pipeline with the other senders' counts; from half the limit on, every
hit asks Redis before it is answered, so the limit still holds exactly for one process and to within
one flush interval's hits across processes.

A limited request costs one Redis round trip, not three: the counter's increment also returns
the window's time to live (``OneTripFixedWindow``), and the ``X-RateLimit-*`` headers are written
from that answer instead of a ``GET`` and a ``TTL`` after the view.

flask-limiter checks every request in a ``before_request`` hook. Endpoints that carry no
``@limiter.limit`` (no default or application limits are configured) can skip that hook
(``skip_request_check``): it has nothing to check there, and finding that out costs about 0.15 ms
a request. The WeChat callback does, on its hot path; it counts its senders itself (``allow``).

A per-user limit (``counted``, ``api.auth.per_user_limit``) is counted by the route's own decorator
instead of flask-limiter's: the same key, the same fixed window and Redis call, the same 429 and
the same ``X-RateLimit-*`` / ``Retry-After`` headers (``_limit_headers``), without flask-limiter's
per-request bookkeeping (its hook, its limit manager, its decorator's evaluation: ~0.3 ms a request
on the mall's redemption).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.constants import HeaderNames
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, WindowStats
from redis.exceptions import NoScriptError
from werkzeug.exceptions import TooManyRequests
from werkzeug.http import http_date, parse_date

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
        self.front = LocalFront(self)

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


#: Below this share of its limit, a key's hits are admitted in the process and counted in Redis
#: in the background (``LocalFront``); from there on each hit waits for Redis's count.
LOCAL_SHARE = 0.5
#: How long the counts admitted locally gather before they are sent (one pipeline).
FLUSH_SECONDS = 0.01


@dataclass(eq=False)
class _Tally:
    """One key's window as this process knows it."""

    item: RateLimitItem
    known: int = 0  # the window's count in Redis, as last answered
    pending: int = 0  # hits admitted here and not sent yet
    in_flight: int = 0  # hits sent, not answered yet
    expires: float = math.inf  # when Redis's window ends (monotonic; inf: no answer yet)

    def counted(self) -> int:
        return self.known + self.in_flight + self.pending

    def learn(self, count: int, ttl: int, now: float) -> None:
        expires = now + max(ttl, 0)
        if self.expires != math.inf and expires > self.expires + 1:  # a new window began
            self.known = count
        else:
            self.known = max(self.known, count)
        self.expires = expires


class LocalFront:
    """``allow``'s fixed window with most hits counted in the process first.

    Far below the limit (under ``LOCAL_SHARE`` of it, counting what this process knows of the
    window), a hit is admitted without a round trip and its count is sent to Redis by a background
    thread within ``FLUSH_SECONDS``, with every other key's, in one pipeline; the answers (the
    window's counts and remaining seconds, other processes' hits included) update what the process
    knows. From ``LOCAL_SHARE`` on, a hit is counted in Redis (with any of the key's hits still
    pending) before it is answered, as without the front: in one process the limit holds exactly;
    across processes a sender can pass it only by hits that reach several processes within one
    flush interval. Fails open: counts that cannot be sent are dropped, as ``allow`` serves when
    Redis is down.
    """

    def __init__(self, strategy: OneTripFixedWindow) -> None:
        self._strategy = strategy
        self._sha = strategy._script.sha  # the increment script's digest, for the pipelines
        self._lock = threading.Lock()  # guards _tallies and _thread
        self._sending = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._tallies: dict[str, _Tally] = {}
        self._thread: threading.Thread | None = None
        _LIVE_FRONTS.add(self)  # forgotten in a forked child, flushed at exit (one handler for all)

    def _forget_after_fork(self) -> None:
        """A forked child has none of the parent's threads, counts or held locks."""
        self._lock, self._sending, self._wake = threading.Lock(), threading.Lock(), threading.Event()
        self._tallies, self._thread = {}, None

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        key = item.key_for(*identifiers)
        now = time.monotonic()
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally(item)
            elif now >= tally.expires:  # Redis's window is over: so is what we knew of it
                tally.known, tally.expires = 0, math.inf
            if tally.counted() + 1 <= int(item.amount * LOCAL_SHARE):
                tally.pending += 1
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=_flush_loop, args=(weakref.ref(self), self._wake), name="ratelimit-flush", daemon=True
                    )
                    self._thread.start()
                local = True
            else:
                cost, tally.pending = tally.pending + 1, 0
                tally.in_flight += cost
                local = False
        if local:
            self._wake.set()
            return True
        try:
            count, ttl = self._strategy._script([self._strategy.storage.prefixed_key(key)], [item.get_expiry(), cost])
        finally:
            with self._lock:
                tally.in_flight -= cost
        with self._lock:
            tally.learn(int(count), int(ttl), time.monotonic())
        return int(count) <= item.amount

    def flush(self) -> None:
        """Send the hits admitted so far, one pipeline for every key; learn each window's count.
        A failure drops them (fail open) and raises."""
        with self._sending:
            with self._lock:
                now = time.monotonic()
                sent = []
                for key, tally in list(self._tallies.items()):
                    if tally.pending:
                        sent.append((key, tally, tally.pending))
                        tally.in_flight, tally.pending = tally.in_flight + tally.pending, 0
                    elif not tally.in_flight and now >= tally.expires:
                        del self._tallies[key]  # its window is over
            if not sent:
                return
            answers: list = []
            try:
                answers = self._send(sent)
            finally:
                with self._lock:
                    now = time.monotonic()
                    for (key, tally, cost), answer in zip(sent, answers or [None] * len(sent), strict=True):
                        tally.in_flight -= cost
                        if answer is not None:
                            tally.learn(int(answer[0]), int(answer[1]), now)
                        elif not tally.pending and not tally.in_flight and tally.expires == math.inf:
                            self._tallies.pop(key, None)

    def _send(self, sent: list[tuple[str, _Tally, int]]) -> list:
        """The increments in one pipeline, by the script's digest (loaded first if Redis lost it)."""
        connection = self._strategy.storage.get_connection()
        for attempt in (1, 2):
            try:
                with connection.pipeline(transaction=False) as pipeline:
                    for key, tally, cost in sent:
                        pipeline.evalsha(
                            self._sha, 1, self._strategy.storage.prefixed_key(key), tally.item.get_expiry(), cost
                        )
                    return pipeline.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
                connection.script_load(_INCR_EXPIRE_TTL)
        return []  # pragma: no cover - the loop returns or raises

    def forget(self) -> None:
        """Send what is pending, then forget every count (tests, between their Redis flushes)."""
        with contextlib.suppress(Exception):  # forgetting is the point
            self.flush()
        with self._sending, self._lock:
            self._tallies.clear()


def _flush_loop(front_ref: weakref.ref[LocalFront], wake: threading.Event) -> None:
    """A front's flusher: sends its hits ``FLUSH_SECONDS`` after the first one since the last send.
    Holds the front only while sending, and ends once it is gone (an app dropped, as tests do)."""
    while True:
        if not wake.wait(timeout=1.0):
            if front_ref() is None:
                return
            continue
        time.sleep(FLUSH_SECONDS)
        wake.clear()
        front = front_ref()
        if front is None:
            return
        try:
            front.flush()
        except Exception as exc:  # the thread must outlive a Redis outage
            log.warning("rate limit counts not sent: %s", type(exc).__name__)
        del front


_LIVE_FRONTS: weakref.WeakSet[LocalFront] = weakref.WeakSet()


def _forget_fronts_after_fork() -> None:
    for front in list(_LIVE_FRONTS):
        front._forget_after_fork()


def _flush_fronts_at_exit() -> None:
    for front in list(_LIVE_FRONTS):
        with contextlib.suppress(Exception):  # fail open, as ever
            front.flush()


os.register_at_fork(after_in_child=_forget_fronts_after_fork)
atexit.register(_flush_fronts_at_exit)


def forget_local_counts() -> None:
    """Forget the counts this process keeps in front of Redis (tests flush Redis between tests)."""
    strategy = getattr(limiter, "_limiter", None)
    if isinstance(strategy, OneTripFixedWindow):
        strategy.front.forget()


def allow(scope: str, key: str, limit: str) -> bool:
    """Count one hit for ``key`` under ``limit`` (e.g. ``"30/minute"``, fixed window) outside a
    route decorator; False once over. Fails open like the decorators: with the storage unreachable
    every hit is allowed. With Redis, most hits are counted in the process first (``LocalFront``)."""
    try:
        strategy = limiter.limiter
        if isinstance(strategy, OneTripFixedWindow):
            return strategy.front.hit(_parsed(limit), "ratelimit", scope, key)
        return strategy.hit(_parsed(limit), "ratelimit", scope, key)
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


def counted(limit: str, key_func: Callable[[], str]) -> Callable:
    """``@limiter.limit(limit, key_func=key_func)`` for one route, counted here: the route's hits
    go to the same counter (flask-limiter's key: prefix, ``key_func()``, the endpoint), a hit over
    the limit is the same 429 (``rate_limited``), and the response carries the same headers.
    Fails open like flask-limiter (``swallow_errors``): with the storage unreachable the request is
    served, without the headers. The route then has nothing for flask-limiter's hook to check and
    skips it (from its first request on)."""
    item = _parsed(limit)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: object, **kwargs: object) -> object:
            endpoint = request.endpoint or ""
            _UNCHECKED.add(endpoint)
            if limiter.enabled:
                _hit(item, key_func(), endpoint)
            return view(*args, **kwargs)

        return wrapper

    return decorate


_COUNTED = "loyalty.ratelimit.counted"


def _hit(item: RateLimitItem, key: str, scope: str) -> None:
    prefix = limiter._key_prefix
    identifiers = (prefix, key, scope) if prefix else (key, scope)
    strategy = limiter.limiter
    try:
        allowed = strategy.hit(item, *identifiers)
    except Exception:  # the storage is down: serve (fail open), as flask-limiter does
        log.exception("Failed to rate limit. Swallowing error")
        return
    try:
        request.environ[_COUNTED] = (item.amount, strategy.get_window_stats(item, *identifiers))  # for the headers
    except Exception:  # only the headers are lost: a decision already made still stands
        log.exception("Failed to read the rate limit's window for the headers")
    if not allowed:
        log.info("ratelimit %s (%s) exceeded at endpoint: %s", item, key, scope)
        raise TooManyRequests(description=str(item))


def _limit_headers(response: Response) -> Response:
    """flask-limiter's headers for a route limited by ``counted`` (its ``__inject_headers``): the
    limit, what is left, when the window resets, and ``Retry-After`` (the later of the window's
    reset and a ``Retry-After`` the response already has, e.g. a 503's)."""
    counted_here = request.environ.get(_COUNTED)
    if counted_here is None:
        return response
    amount, stats = counted_here
    names = limiter._header_mapping
    reset_at = int(stats.reset_time + 1)
    response.headers.set(names[HeaderNames.LIMIT], str(amount))
    response.headers.set(names[HeaderNames.REMAINING], str(stats.remaining))
    response.headers.set(names[HeaderNames.RESET], str(reset_at))
    existing = response.headers.get("Retry-After")
    if existing is not None:
        reset_at = max(_retry_after_epoch(existing), reset_at)
    response.headers.set(
        names[HeaderNames.RETRY_AFTER],
        str(http_date(reset_at) if limiter._retry_after == "http-date" else int(reset_at - time.time())),
    )
    return response


def _retry_after_epoch(value: str) -> int:
    """A ``Retry-After`` (seconds or an HTTP date) as the epoch second it points at, read as
    flask-limiter reads it."""
    when = parse_date(value)
    if when is not None:
        return int(time.mktime(when.timetuple()))
    return int(time.time() + int(value)) if value.strip().isdigit() else int(time.time())


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
    app.after_request(_limit_headers)
