"""Jobs are enqueued only after the commit, run in their own session, and survive a Redis outage."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import redis
import sqlalchemy as sa
from rq import Queue, SimpleWorker

from app.core import inbox
from app.core.db import db
from app.jobs import job
from app.members.models import Member
from app.sync.samples import sample_delivery
from tests import factories

CALLS: list[tuple] = []


@job("default")
def remember(value: str) -> str:
    """A job that records that it ran (and in which session)."""
    CALLS.append((value, id(db.session())))
    return value


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


@pytest.fixture
def rq_mode(app, monkeypatch):
    settings = app.extensions["loyalty.settings"]
    monkeypatch.setitem(app.extensions, "loyalty.settings", dataclasses.replace(settings, JOBS_MODE="rq"))
    return app.extensions["loyalty.rq_redis"]


def test_a_job_runs_after_the_commit_in_its_own_session(app_ctx):
    remember.after_commit("a")
    assert CALLS == []
    outer = id(db.session())
    db.session.commit()
    assert [value for value, _ in CALLS] == ["a"]
    assert CALLS[0][1] != outer


def test_a_rollback_drops_the_pending_job(app_ctx):
    remember.after_commit("never")
    db.session.rollback()
    db.session.commit()
    assert CALLS == []


def test_a_savepoint_rollback_drops_its_own_jobs_and_keeps_the_outer_ones(app_ctx):
    remember.after_commit("kept")
    with db.session.begin_nested() as savepoint:
        remember.after_commit("dropped-with-its-savepoint")
        savepoint.rollback()
    with db.session.begin_nested():
        remember.after_commit("kept-by-a-released-savepoint")
    db.session.commit()
    assert sorted(value for value, _ in CALLS) == ["kept", "kept-by-a-released-savepoint"]


def test_a_failed_savepoint_drops_the_jobs_of_the_work_it_undid(app_ctx):
    """A handler that fails inside a savepoint leaves no job behind for rows that no longer exist."""
    try:
        with db.session.begin_nested():
            with db.session.begin_nested():
                remember.after_commit("inner")
            remember.after_commit("outer")
            raise RuntimeError("the handler failed")
    except RuntimeError:
        pass
    remember.after_commit("after")
    db.session.commit()
    assert [value for value, _ in CALLS] == ["after"]


def test_in_rq_mode_jobs_wait_in_redis_until_a_worker_runs_them(app_ctx, rq_mode):
    remember.after_commit("queued", job_id="remember-queued")
    db.session.commit()
    queue = Queue("default", connection=rq_mode)
    assert queue.job_ids == ["remember-queued"]
    assert CALLS == []
    SimpleWorker([queue], connection=rq_mode).work(burst=True)
    assert [value for value, _ in CALLS] == ["queued"]


def test_the_jobs_of_one_unit_of_work_go_to_redis_together_each_once(app_ctx, rq_mode, monkeypatch):
    """One pipeline after the commit (a drain's batch enqueues two jobs per enrollment); a job asked
    for twice under one id is enqueued once; a savepoint rolled back drops its own."""
    pipelines = []
    original = type(rq_mode).pipeline
    monkeypatch.setattr(type(rq_mode), "pipeline", lambda self, *a, **k: pipelines.append(1) or original(self, *a, **k))
    remember.after_commit("a", job_id="remember-a")
    remember.after_commit("b", job_id="remember-b")
    remember.after_commit("a", job_id="remember-a")
    with db.session.begin_nested() as savepoint:
        remember.after_commit("dropped", job_id="remember-dropped")
        savepoint.rollback()
    db.session.commit()
    queue = Queue("default", connection=rq_mode)
    assert queue.job_ids == ["remember-a", "remember-b"]
    assert len(pipelines) == 1
    SimpleWorker([queue], connection=rq_mode).work(burst=True)
    assert sorted(value for value, _ in CALLS) == ["a", "b"]


def test_with_redis_down_the_dms_event_is_kept_and_the_sweeper_delivers_it_later(
    app, app_ctx, client, post_dms, rq_mode, monkeypatch
):
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    db.session.commit()
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setitem(app.extensions, "loyalty.rq_redis", down)

    assert post_dms(sample_delivery(phone="13800138000")).status_code == 202
    event = db.session.scalar(sa.select(inbox.InboundEvent))
    assert event.status == "received"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0

    monkeypatch.setitem(app.extensions, "loyalty.rq_redis", rq_mode)
    from app.jobs.drain import requeue_stalled_events

    assert requeue_stalled_events() == 0  # too fresh to be called stalled
    db.session.execute(sa.update(inbox.InboundEvent).values(received_at=event.received_at - dt.timedelta(minutes=5)))
    assert requeue_stalled_events() == 1
    db.session.commit()
    SimpleWorker([Queue("events", connection=rq_mode)], connection=rq_mode).work(burst=True)
    db.session.expire_all()
    assert db.session.scalar(sa.select(inbox.InboundEvent.status)) == "processed"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1


def test_every_periodic_entry_names_a_declared_job():
    from croniter import croniter

    from app.jobs import QUEUES, resolve
    from app.jobs.schedule import entries

    assert len(entries()) >= 7  # every package declared its own
    for entry in entries():
        assert resolve(entry.job).spec.queue in QUEUES
        assert croniter.is_valid(entry.cron)


@pytest.mark.postgres
@pytest.mark.committed
def test_in_rq_mode_a_burst_of_callbacks_sends_one_nudge_from_the_background(app, client, rq_mode, monkeypatch):
    """Requests hand their nudge to the process's nudger thread; a burst costs one drain job."""
    from concurrent.futures import ThreadPoolExecutor

    from app import jobs
    from tests.wechat_helpers import Callback, event_xml

    sent: list[tuple] = []
    real_send = jobs._send
    monkeypatch.setattr(
        jobs, "_send", lambda app, spec, args, job_id=None: sent.append(args) or real_send(app, spec, args)
    )
    with app.app_context():
        factories.staff(factories.dealer(code="D0101"), code="SA0101")
        db.session.commit()

    def scan(i: int) -> int:
        return (
            Callback(app.test_client())
            .post(event_xml(f"o-burst-{i}", "subscribe", EventKey="qrscene_adv:SA0101"))
            .status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(scan, range(40))) == {200}
    jobs.flush_nudges()  # whatever the thread has not sent yet
    assert 1 <= len(sent) < 40 and set(sent) == {("wechat",)}
    assert len(Queue("events", connection=rq_mode).job_ids) == 1  # the coalescing key holds the rest
    with app.app_context():
        waiting = db.session.scalar(sa.select(sa.func.count()).where(inbox.InboundEvent.status == "received"))
    assert waiting == 40


def test_a_forked_child_gets_a_nudger_of_its_own():
    """After fork the parent's nudger thread is gone and a lock it held would stay held forever."""
    import threading

    from app.jobs import _Nudger

    nudger = _Nudger()
    nudger._lock.acquire()  # a parent thread held it when the process forked
    nudger._thread = threading.current_thread()
    nudger.forget_after_fork()
    assert nudger._lock.acquire(timeout=1) and nudger._thread is None
