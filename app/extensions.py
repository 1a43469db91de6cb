"""Infrastructure singletons, each bound to an app by ``init_app`` (never to one app forever)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
from flask import Flask, current_app

from app.config import settings_of
from app.core.db import db
from app.core.i18n import babel

__all__ = ["REDIS_KEY", "RQ_REDIS_KEY", "babel", "db", "init_redis", "redis_client", "rq_connection"]

#: Where the app keeps its two Redis connections (tests swap them for broken ones).
REDIS_KEY = "loyalty.redis"
RQ_REDIS_KEY = "loyalty.rq_redis"

_fake_servers: dict[str, object] = {}


def _connect(url: str) -> redis.Redis:
    if url.startswith("memory://"):
        # The embedded default: an in-process Redis (fakeredis), one server per process.
        import fakeredis

        server = _fake_servers.setdefault(url, fakeredis.FakeServer())
        return fakeredis.FakeRedis(server=server)
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def rq_url(url: str) -> str:
    """RQ gets its own Redis database (the app's number + 1) so queues never mix with app keys."""
    if url.startswith("memory://"):
        return url + "rq"
    parts = urlsplit(url)
    db_number = int(parts.path.lstrip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{db_number + 1}"))


def init_redis(app: Flask) -> None:
    url = settings_of(app).REDIS_URL
    app.extensions[REDIS_KEY] = _connect(url)
    app.extensions[RQ_REDIS_KEY] = _connect(rq_url(url))


def redis_client() -> redis.Redis:
    """The app's Redis (tokens, rate limits, single-use codes)."""
    return current_app.extensions[REDIS_KEY]


def rq_connection(app: Flask | None = None) -> redis.Redis:
    """RQ's Redis (queues, coalescing keys)."""
    return (app or current_app).extensions[RQ_REDIS_KEY]
