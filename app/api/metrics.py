"""Prometheus metrics at ``GET /metrics`` (prometheus-client, the official client).

* Request latency by endpoint: a histogram observed after every request (the endpoint is the
  route's name, so the label set stays small; an unmatched path is ``unmatched``).
* Everything else is read at scrape time by ``BacklogCollector``, never on a request's path:
  inbox depth, oldest waiting age and dead events per source; RQ queue lengths and failed jobs;
  the reminder backlog (planned, due, being sent; the oldest due); the CRM outbox (pending, dead).
  Each part is a few grouped reads over partial indexes or one Redis call per queue; a part that
  fails (database or Redis down) is reported in ``loyalty_metrics_scrape_errors`` and the rest is served.

Several gunicorn workers: with ``PROMETHEUS_MULTIPROC_DIR`` set, each worker writes its histogram
to that directory and a scrape adds them up (``MultiProcessCollector``; ``gunicorn.conf.py``
clears the directory at start and marks dead workers).

Access: with ``LOYALTY_METRICS_TOKEN`` a scrape must send ``Authorization: Bearer <token>``;
without it only loopback clients are answered (a Prometheus agent on the same host).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from rq import Queue
from rq.registry import FailedJobRegistry

from app.care import operations as care_operations
from app.config import current_settings
from app.core import inbox
from app.core.clock import utcnow
from app.core.errors import Forbidden, Unauthenticated
from app.crm import outbox
from app.extensions import rq_connection
from app.jobs import QUEUES

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

REQUEST_SECONDS = Histogram(
    "loyalty_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint (route name), method and status",
    ("endpoint", "method", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_LOOPBACK = {"127.0.0.1", "::1"}


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _note_status(response: Response) -> Response:
    g.metrics_status = response.status_code
    return response


def _observe(error: BaseException | None) -> None:
    """At teardown, so the time includes the commit and every after-request hook."""
    started = g.pop("metrics_started", None)
    if started is None or request.endpoint == "metrics.metrics":
        return
    status = "500" if error is not None else str(g.get("metrics_status", 500))
    REQUEST_SECONDS.labels(request.endpoint or "unmatched", request.method, status).observe(
        time.perf_counter() - started
    )


class BacklogCollector(Collector):
    """The gauges, computed when Prometheus scrapes (inside the scrape's app context)."""

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "loyalty_metrics_scrape_errors", "Parts of this scrape that could not be read (1)", labels=["part"]
        )
        for part, read in (("inbox", _inbox), ("queues", _queues), ("reminders", _reminders), ("crm", _crm)):
            try:
                yield from read()
                errors.add_metric([part], 0)
            except Exception as exc:  # a scrape reports what it can; the failure is a metric and a log line
                log.warning("metrics: could not read %s: %s: %s", part, type(exc).__name__, exc)
                errors.add_metric([part], 1)
        yield errors


def _gauge(name: str, documentation: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _inbox() -> Iterator[Metric]:
    now = utcnow()
    rows = inbox.backlog()
    yield _gauge(
        "loyalty_inbox_waiting_events",
        "Inbound events received or failed and not yet processed, per source",
        "source",
        {row.source: row.waiting for row in rows},
    )
    yield _gauge(
        "loyalty_inbox_oldest_waiting_age_seconds",
        "Age of the oldest inbound event still waiting, per source (0: none waiting)",
        "source",
        {row.source: (now - row.oldest_received_at).total_seconds() if row.oldest_received_at else 0.0 for row in rows},
    )
    yield _gauge(
        "loyalty_inbox_dead_events",
        "Inbound events given up on after the configured attempts, per source (replay: docs/operations.md)",
        "source",
        {row.source: row.dead for row in rows},
    )


def _queues() -> Iterator[Metric]:
    connection = rq_connection()
    lengths, failed = {}, {}
    for name in QUEUES:
        lengths[name] = Queue(name, connection=connection).count
        failed[name] = FailedJobRegistry(name, connection=connection).count
    yield _gauge("loyalty_rq_queue_length", "Jobs waiting in each RQ queue", "queue", lengths)
    yield _gauge("loyalty_rq_failed_jobs", "Jobs in each RQ queue's failed registry", "queue", failed)


def _reminders() -> Iterator[Metric]:
    backlog = care_operations.backlog()
    yield _gauge(
        "loyalty_reminder_backlog",
        "Notifications not sent yet: planned (due later), due (should be going out), sending",
        "state",
        {"planned": backlog.planned, "due": backlog.due, "sending": backlog.sending},
    )
    oldest = GaugeMetricFamily(
        "loyalty_reminder_oldest_due_age_seconds", "How long the oldest due notification has waited (0: none)"
    )
    oldest.add_metric([], (utcnow() - backlog.oldest_due_at).total_seconds() if backlog.oldest_due_at else 0.0)
    yield oldest


def _crm() -> Iterator[Metric]:
    yield _gauge("loyalty_crm_outbox_rows", "CRM outbox rows pending or dead", "status", dict(outbox.totals()))


def _authorized() -> None:
    token = current_settings().METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthenticated()
    elif request.remote_addr not in _LOOPBACK:
        raise Forbidden()


def exposition() -> bytes:
    """The text exposition: this process's (or, multiprocess, every worker's) histograms, then the gauges."""
    if current_settings().METRICS_MULTIPROC_DIR:
        requests_registry = CollectorRegistry()
        MultiProcessCollector(requests_registry, path=current_settings().METRICS_MULTIPROC_DIR)
    else:
        requests_registry = REGISTRY
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(BacklogCollector())
    return generate_latest(requests_registry) + generate_latest(gauges)


@bp.route("/metrics")
def metrics() -> Response:
    _authorized()
    return Response(exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Time every request and serve /metrics (not part of the OpenAPI document: not the JSON API)."""
    app.before_request(_start_timer)
    app.after_request(_note_status)
    app.teardown_request(_observe)
    app.register_blueprint(bp)
