"""Infrastructure singletons, each bound to an app by ``init_app`` (never to one app forever)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
from flask import Flask

from app.core.db import db
from app.core.i18n import babel

__all__ = ["babel", "db", "init_redis", "redis_client"]

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
    url = app.extensions["loyalty.settings"].REDIS_URL
    app.extensions["loyalty.redis"] = _connect(url)
    app.extensions["loyalty.rq_redis"] = _connect(rq_url(url))


def redis_client() -> redis.Redis:
    from flask import current_app

    return current_app.extensions["loyalty.redis"]
