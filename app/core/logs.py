"""Log lines: readable text in development, one JSON object per line in production.

Every line carries ``request_id`` (the request's id, kept from a sane incoming ``X-Request-ID``:
``core/http.py``) and ``job_id`` (the RQ job being run, set by ``app.jobs.run_job`` through
``job_context``); ``-`` where there is none. JSON lines come from python-json-logger, so a log
shipper (Loki, ELK, Aliyun SLS) indexes the fields without parsing text.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from typing import IO

from flask import g, has_request_context
from pythonjsonlogger.json import JsonFormatter

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("loyalty_job_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s %(job_id)s] %(name)s: %(message)s"
#: The fields of a JSON line (with ``exc_info`` when there is one); ``timestamp`` is ISO 8601 UTC.
JSON_FIELDS = ("levelname", "name", "message", "request_id", "job_id")


@contextlib.contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Log lines written inside the block carry this job id."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def current_job_id() -> str | None:
    return _job_id.get()


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` to every record (``-`` when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = g.get("request_id") if has_request_context() else None
        record.request_id = request_id or getattr(record, "request_id", "-")
        record.job_id = _job_id.get() or getattr(record, "job_id", "-")
        return True


def handler(*, json: bool, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler with the context filter and the text or JSON format."""
    made = logging.StreamHandler(stream)
    made.addFilter(ContextFilter())
    if json:
        made.setFormatter(
            JsonFormatter(list(JSON_FIELDS), rename_fields={"levelname": "level", "name": "logger"}, timestamp=True)
        )
    else:
        made.setFormatter(logging.Formatter(TEXT_FORMAT))
    return made


#: Addresses whose last segment is a secret, because the caller cannot sign (Aliyun's SMS status
#: push: ``care/sms_api.py``). Whatever logs request paths or request lines passes them through
#: ``redact_secret_paths``: gunicorn's access log (``gunicorn.conf.py``) and the development server.
SECRET_PATH_PREFIXES = ("/api/v1/sms/reports/",)
_SECRET_SEGMENT = re.compile("(" + "|".join(re.escape(p) for p in SECRET_PATH_PREFIXES) + r")[^/?#\s\"']+")
REDACTED = "[redacted]"


def redact_secret_paths(text: str) -> str:
    """``text`` with the secret segment of every such address replaced by ``[redacted]``."""
    return _SECRET_SEGMENT.sub(r"\1" + REDACTED, text) if "/api/" in text else text


class RedactSecretPaths(logging.Filter):
    """Rewrites a record whose message holds a secret address (the development server's request
    lines: werkzeug logs ``"POST /path HTTP/1.1" 200``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_secret_paths(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(level: str, *, json: bool) -> None:
    """Install the root handler once per process (an app built twice does not log twice)."""
    root = logging.getLogger()
    if not any(isinstance(f, ContextFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler(json=json))
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactSecretPaths) for f in werkzeug.filters):
        werkzeug.addFilter(RedactSecretPaths())
    root.setLevel(level)
