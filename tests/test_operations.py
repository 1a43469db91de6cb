"""The operations surface: /metrics (series and the values seeded here, access), structured JSON
logs with request and job ids, and rq-dashboard under /console/jobs for operators only."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import logging
import os
import runpy
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker

from app.care.models import Notification
from app.config import load_settings
from app.core import inbox, logs
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import AuditEntry, InboundEvent
from app.crm.models import CrmOutboxEntry
from app.extensions import RQ_REDIS_KEY, rq_connection
from app.points.models import PointEntry
from tests import dms_events, factories
from tests.console_helpers import sign_in

log = logging.getLogger("tests.operations")
ROOT = Path(__file__).resolve().parent.parent


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels); the text must parse."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _event(source: str, external_id: str, status: str, received_at: dt.datetime) -> InboundEvent:
    event = InboundEvent(
        source=source, external_id=external_id, type="t", body=b"{}", status=status, received_at=received_at
    )
    db.session.add(event)
    return event


def _notification(key: str, status: str, due_at: dt.datetime) -> None:
    db.session.add(
        Notification(kind="tier_upgrade", channel="sms", dedupe_key=key, status=status, due_at=due_at, payload={})
    )


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_carry_the_backlogs_seeded_here_and_the_latency_of_requests(app, client, app_ctx):
    now = utcnow()
    _event("dms", "d1", "received", now - dt.timedelta(minutes=10))
    _event("dms", "d2", "failed", now - dt.timedelta(minutes=2))
    _event("dms", "d3", "processed", now - dt.timedelta(hours=3))
    _event("wechat", "w1", "dead", now - dt.timedelta(hours=1))
    _event("wechat", "w2", "dead", now - dt.timedelta(hours=1))
    _notification("n1", "planned", now + dt.timedelta(days=3))
    _notification("n2", "planned", now + dt.timedelta(days=4))
    _notification("n3", "planned", now - dt.timedelta(minutes=30))
    _notification("n4", "sending", now - dt.timedelta(minutes=1))
    _notification("n5", "sent", now - dt.timedelta(days=1))
    member = factories.member()
    for seq, status in enumerate(("dead", "pending", "pending"), start=1):
        db.session.add(
            CrmOutboxEntry(member_id=member.id, seq=seq, kind="member", idempotency_key=f"k{seq}", status=status)
        )
    db.session.flush()
    queue = Queue("notifications", connection=rq_connection())
    for n in range(3):
        queue.enqueue("app.jobs.run_job", args=("nothing", (n,)))
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = _samples(response.get_data(as_text=True))
    assert samples[("loyalty_inbox_waiting_events", (("source", "dms"),))] == 2
    assert samples[("loyalty_inbox_waiting_events", (("source", "wechat"),))] == 0
    assert samples[("loyalty_inbox_dead_events", (("source", "wechat"),))] == 2
    assert samples[("loyalty_inbox_dead_events", (("source", "dms"),))] == 0
    assert 600 <= samples[("loyalty_inbox_oldest_waiting_age_seconds", (("source", "dms"),))] < 700
    assert samples[("loyalty_rq_queue_length", (("queue", "notifications"),))] == 3
    assert samples[("loyalty_rq_queue_length", (("queue", "events"),))] == 0
    assert samples[("loyalty_rq_failed_jobs", (("queue", "notifications"),))] == 0
    assert samples[("loyalty_reminder_backlog", (("state", "planned"),))] == 2
    assert samples[("loyalty_reminder_backlog", (("state", "due"),))] == 1
    assert samples[("loyalty_reminder_backlog", (("state", "sending"),))] == 1
    assert 1800 <= samples[("loyalty_reminder_oldest_due_age_seconds", ())] < 1900
    assert samples[("loyalty_crm_outbox_rows", (("status", "dead"),))] == 1
    assert samples[("loyalty_crm_outbox_rows", (("status", "pending"),))] == 2
    assert all(
        samples[("loyalty_metrics_scrape_errors", (("part", part),))] == 0
        for part in ("inbox", "queues", "reminders", "crm")
    )
    healthz = (("endpoint", "health.healthz"), ("method", "GET"), ("status", "200"))
    assert samples[("loyalty_http_request_duration_seconds_count", healthz)] >= 1
    assert samples[("loyalty_http_request_duration_seconds_bucket", (*healthz[:1], ("le", "+Inf"), *healthz[1:]))] >= 1
    unmatched = (("endpoint", "unmatched"), ("method", "GET"), ("status", "404"))
    assert samples[("loyalty_http_request_duration_seconds_count", unmatched)] >= 1


def test_a_scrape_with_redis_down_still_reports_the_database_backlogs(app, client, app_ctx, monkeypatch):
    _event("crm", "c1", "dead", utcnow())
    db.session.flush()
    monkeypatch.setitem(app.extensions, RQ_REDIS_KEY, redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    assert samples[("loyalty_metrics_scrape_errors", (("part", "queues"),))] == 1
    assert samples[("loyalty_metrics_scrape_errors", (("part", "inbox"),))] == 0
    assert samples[("loyalty_inbox_dead_events", (("source", "crm"),))] == 1


@pytest.fixture
def metrics_token(app: Flask) -> Iterator[str]:
    """The app with LOYALTY_METRICS_TOKEN set (settings are frozen: swap the settings object)."""
    from app.config import install, settings_of

    before = settings_of(app)
    token = "m" * 40
    install(app, load_settings(environ={}, overrides={**_overrides(before), "METRICS_TOKEN": token}))
    yield token
    install(app, before)


def _overrides(settings) -> dict:
    return {name: getattr(settings, name) for name in ("ENV", "DATABASE_URL", "REDIS_URL", "JOBS_MODE", "DATA_KEY")}


def test_metrics_want_the_bearer_token_when_one_is_configured(client, app_ctx, metrics_token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answered = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert answered.status_code == 200
    assert "loyalty_inbox_dead_events" in answered.get_data(as_text=True) or "loyalty_rq_queue_length" in (
        answered.get_data(as_text=True)
    )


def test_without_a_token_metrics_answer_loopback_clients_only(client, app_ctx):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"


def test_a_short_metrics_token_is_refused_in_production():
    from app.config import ConfigError, production_problems

    assert "LOYALTY_METRICS_TOKEN is shorter than 32 bytes" in production_problems({"METRICS_TOKEN": "short"})
    with pytest.raises(ConfigError):
        load_settings(environ={"LOYALTY_LOG_FORMAT": "xml"})


# --- structured logs --------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the production handler writes, captured: the same handler ``logs.configure`` installs."""
    stream = io.StringIO()
    handler = logs.handler(json=True, stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _parsed(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_production_logs_are_json_lines_with_the_request_id_echoed_in_the_response(
    app, client, app_ctx, json_lines, monkeypatch
):
    assert load_settings(environ={}, overrides={"ENV": "test"}).json_logs is False
    assert load_settings(environ={"LOYALTY_LOG_FORMAT": "json"}, overrides={"ENV": "test"}).json_logs is True
    # A scrape with Redis down logs a warning inside the request: that line must carry its id.
    monkeypatch.setitem(app.extensions, RQ_REDIS_KEY, redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))

    response = client.get("/metrics", headers={"X-Request-ID": "req-abc-123"})

    assert response.headers["X-Request-ID"] == "req-abc-123"
    ours = [line for line in _parsed(json_lines) if line["logger"] == "app.api.metrics"]
    assert len(ours) == 1
    assert (ours[0]["level"], ours[0]["request_id"], ours[0]["job_id"]) == ("WARNING", "req-abc-123", "-")
    assert ours[0]["message"].startswith("metrics: could not read queues: ConnectionError")
    assert "timestamp" in ours[0]

    fresh = client.get("/metrics", headers={"X-Request-ID": "bad id with spaces"})
    minted = fresh.headers["X-Request-ID"]
    assert minted != "bad id with spaces" and len(minted) == 32
    later = [line for line in _parsed(json_lines) if line["logger"] == "app.api.metrics"][1:]
    assert [line["request_id"] for line in later] == [minted]


def logging_job(text: str) -> str:
    """A job run by the worker below (``run_job`` resolves it by its dotted name)."""
    log.info("inside the job: %s", text)
    return text


def test_every_log_line_of_a_job_carries_the_rq_job_id(app, app_ctx, json_lines):
    queue = Queue("default", connection=rq_connection())
    queued = queue.enqueue("app.jobs.run_job", args=("tests.test_operations.logging_job", ("hello",)), job_id="job-42")
    SimpleWorker([queue], connection=rq_connection()).work(burst=True)
    assert queued.get_status(refresh=True) == "finished"
    ours = [line for line in _parsed(json_lines) if line["logger"] == "tests.operations"]
    assert [(line["message"], line["job_id"], line["request_id"]) for line in ours] == [
        ("inside the job: hello", "job-42", "-")
    ]


def test_development_logs_stay_readable_text():
    stream = io.StringIO()
    handler = logs.handler(json=False, stream=stream)
    handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("there",), None))
    line = stream.getvalue()
    assert "INFO [- -] x: hello there" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


# --- rq-dashboard ------------------------------------------------------------------------------


def test_the_job_dashboard_sends_visitors_without_a_session_to_sign_in(client, app_ctx):
    for path in ("/console/jobs/", "/console/jobs/0/data/queues.json", "/console/jobs/static/js/jquery-3.5.1.min.js"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/console/sign-in" in response.headers["Location"]
    assert client.post("/console/jobs/requeue/default").status_code == 302


@pytest.mark.parametrize("role", ["agent", "supervisor", "dealer_manager"])
def test_the_job_dashboard_is_forbidden_to_other_roles(client, app_ctx, role):
    dealer_id = factories.dealer().id if role == "dealer_manager" else None
    person, _ = factories.operator(role, dealer_id=dealer_id)
    sign_in(client, person.username)
    assert client.get("/console/jobs/").status_code == 403
    assert client.get("/console/jobs/0/data/queues.json").status_code == 403
    assert client.post("/console/jobs/requeue/default", headers={"Origin": "http://localhost"}).status_code == 403


def test_the_dashboards_polling_does_not_keep_an_idle_session_alive(client, app_ctx):
    person, _ = factories.operator("operator")
    sign_in(client, person.username)
    twenty_minutes_ago = int(time.time()) - 20 * 60
    with client.session_transaction() as cookie:
        cookie["seen"] = twenty_minutes_ago
    for _ in range(3):
        assert client.get("/console/jobs/0/data/queues.json").status_code == 200
    with client.session_transaction() as cookie:
        assert cookie["seen"] == twenty_minutes_ago
    assert client.get("/console/jobs/").status_code == 200  # opening a page is a click
    with client.session_transaction() as cookie:
        assert cookie["seen"] > twenty_minutes_ago


def test_an_operator_sees_the_apps_queues_and_only_same_origin_posts_change_them(app, client, app_ctx):
    person, _ = factories.operator("operator")
    Queue("payments", connection=rq_connection()).enqueue("app.jobs.run_job", args=("nothing", ()))
    sign_in(client, person.username)
    page = client.get("/console/jobs/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    queues = client.get("/console/jobs/0/data/queues.json").get_json()["queues"]
    assert {q["name"]: q["count"] for q in queues}["payments"] == 1
    assert client.get("/console/").status_code == 200 and "/console/jobs/" in client.get("/console/").get_data(
        as_text=True
    )

    assert client.post("/console/jobs/queue/payments/queued/empty").status_code == 403  # no Origin: refused
    assert (
        client.post("/console/jobs/queue/payments/queued/empty", headers={"Origin": "http://evil.example"}).status_code
        == 403
    )
    assert Queue("payments", connection=rq_connection()).count == 1
    assert client.get("/console/jobs/requeue/payments").status_code == 403  # a state change on a GET link
    emptied = client.post("/console/jobs/queue/payments/queued/empty", headers={"Origin": "http://localhost"})
    assert emptied.status_code == 200
    assert Queue("payments", connection=rq_connection()).count == 0
    audited = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "jobs.changed")).all()
    assert [(row.actor_id, row.subject_id) for row in audited] == [(person.actor, "/queue/payments/queued/empty")]


# --- dead inbound events ------------------------------------------------------------------------


def test_dead_events_are_listed_and_replayed_once_their_cause_is_fixed(app, app_ctx):
    """A DMS service event that died (say the dealer was missing then) is processed on replay."""
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    car = factories.vehicle(owner=factories.member(status="active"), selling_dealer_id=dealer.id)
    document = dms_events.service(car.vin, parts_fen=100_000, labour_fen=0)
    event_id = inbox.store_event(
        source="dms",
        external_id=document["event_id"],
        type=document["type"],
        body=json.dumps(document).encode(),
        occurred_at=utcnow(),
        dealer_code="D0101",
    )
    inbox.mark(event_id, status=inbox.DEAD, attempts=6, last_error="RuntimeError: dealer D0101 unknown\n  traceback")
    db.session.commit()
    runner = app.test_cli_runner()

    listed = runner.invoke(args=["inbox", "dead", "--source", "dms"])
    assert listed.exit_code == 0, listed.output
    assert str(event_id) in listed.output and "RuntimeError: dealer D0101 unknown" in listed.output
    assert "traceback" not in listed.output

    replayed = runner.invoke(args=["inbox", "replay", str(event_id), "999999"])
    assert replayed.exit_code == 0, replayed.output
    assert "1 event(s) queued again; not dead, left alone: [999999]" in replayed.output

    event = db.session.get(InboundEvent, event_id)
    db.session.refresh(event)
    assert event.status == inbox.PROCESSED  # eager jobs: the drain ran after the commit
    earned = sa.select(sa.func.count()).select_from(PointEntry).where(PointEntry.rule_code == "service_parts_reward")
    assert db.session.scalar(earned) == 1
    audited = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "inbox.replayed")).all()
    assert [(row.subject_id, row.actor_type) for row in audited] == [(str(event_id), "cli")]
    assert runner.invoke(args=["inbox", "dead"]).output == ""


_SCRAPER = """
import sys
from app import create_app
app = create_app({"ENV": "test", "DATABASE_URL": "sqlite://", "REDIS_URL": "memory://"})
client = app.test_client()
for _ in range(int(sys.argv[1])):
    client.get("/healthz")
sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


def test_with_a_multiprocess_directory_a_scrape_adds_up_every_worker(tmp_path):
    """gunicorn workers are processes: each writes its histogram to PROMETHEUS_MULTIPROC_DIR and any
    worker's /metrics answers for all of them (two processes here, 2 + 1 requests)."""
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    counts = []
    for requests_made in (2, 1):
        done = subprocess.run(
            [sys.executable, "-c", _SCRAPER, str(requests_made)],
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        samples = _samples(done.stdout)
        key = (("endpoint", "health.healthz"), ("method", "GET"), ("status", "200"))
        counts.append(samples[("loyalty_http_request_duration_seconds_count", key)])
    assert counts == [2, 3]
    assert list(tmp_path.glob("histogram_*.db"))


def test_the_gunicorn_hooks_empty_the_directory_at_start_and_mark_exited_workers(tmp_path, monkeypatch):
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    (tmp_path / "histogram_123.db").write_bytes(b"stale")
    hooks["on_starting"](None)  # without the variable: nothing happens
    assert (tmp_path / "histogram_123.db").exists()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    hooks["on_starting"](None)
    assert not list(tmp_path.glob("*.db"))
    (tmp_path / "gauge_livesum_77.db").write_bytes(b"live")
    (tmp_path / "histogram_77.db").write_bytes(b"kept")  # counts of an exited worker still add up
    hooks["child_exit"](None, SimpleNamespace(pid=77))
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["histogram_77.db"]


def test_a_gunicorn_worker_freezes_what_the_app_holds_once_it_is_imported():
    """Full collections then walk only what requests left behind, not the whole app (bench/README)."""
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    try:
        hooks["post_worker_init"](None)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
