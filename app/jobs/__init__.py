"""Background jobs on RQ: one decorator, named queues, enqueue after commit, one runner.

    @job("notifications")
    def send_notification(notification_id: int) -> None: ...

    send_notification.after_commit(notification.id, job_id=f"notification-{notification.id}")

Jobs take ids, reload what they need and are idempotent: the database, not the queue, is the
source of truth. ``after_commit`` only enqueues once the current unit of work commits (and drops
the job on rollback), so a worker never looks for a row that does not exist yet.

With ``LOYALTY_JOBS_MODE=eager`` (``make run``, tests) a job runs in-process right after the
commit, in its own app context, session and transaction — exactly as a worker would run it.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from flask import Flask, current_app, has_app_context, has_request_context
from rq import Queue, Retry, get_current_job

from app.config import current_settings, settings_of
from app.core import after_commit, logs
from app.core.db import db
from app.extensions import rq_connection

log = logging.getLogger(__name__)

#: Every queue, in the order a worker listens to them (first = most urgent).
QUEUES = ("callbacks", "events", "notifications", "payments", "default", "periodic")

_worker_app: Flask | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str
    queue: str
    timeout: int
    retry_intervals: tuple[int, ...]
    #: Enqueue at most once per this many seconds for the same arguments (a "nudge"); the job
    #: calls ``clear_coalesced`` when it starts so that later work schedules a new run.
    coalesce_seconds: int | None = None


class JobFunction(Protocol):
    spec: JobSpec

    def __call__(self, *args: Any) -> Any: ...

    def after_commit(self, *args: Any, job_id: str | None = None) -> None: ...


def job(
    queue: str = "default",
    *,
    timeout: int = 300,
    retry: tuple[int, ...] = (10, 60, 300),
    coalesce: int | None = None,
) -> Callable:
    """Declare a job. Calling the function directly runs it inline (inside the caller's session)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; declare it in app.jobs.QUEUES")

    def decorate(fn: Callable) -> JobFunction:
        spec = JobSpec(f"{fn.__module__}.{fn.__name__}", queue, timeout, retry, coalesce)
        fn.spec = spec  # type: ignore[attr-defined]
        fn.after_commit = lambda *args, job_id=None: enqueue_after_commit(spec, args, job_id)  # type: ignore[attr-defined]
        return fn  # type: ignore[return-value]

    return decorate


def enqueue_after_commit(spec: JobSpec, args: tuple[Any, ...], job_id: str | None = None) -> None:
    """Send the job once the unit of work commits; a rollback (also of the savepoint it was
    registered in) drops it."""
    after_commit.defer(dispatch, spec, args, job_id)


def dispatch(spec: JobSpec, args: tuple[Any, ...], job_id: str | None = None) -> None:
    """Send a job to its queue now (or run it now, in eager mode).

    A coalesced job (a nudge) asked for while serving a request is handed to the process's
    nudger thread instead, which sends it within ``NUDGE_GATHER_SECONDS`` (``NUDGE_MIN_INTERVAL_SECONDS``
    after its previous round): a burst of callbacks then costs one Redis call, off the requests' path.

    Never raises: the database already holds the work (inbox rows, reminder rows) and the
    periodic sweepers pick it up. Losing a nudge is fine, failing the caller's request is not.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if settings_of(app).JOBS_MODE == "eager":
        try:
            run_job(spec.name, args)
        except Exception:
            log.exception("eager job %s%r failed", spec.name, args)
        return
    if spec.coalesce_seconds and job_id is None and has_request_context():
        _nudger.want(app, spec, args)
        return
    _send_or_log(app, spec, args, job_id)


def dispatch_all(calls: list[tuple[JobSpec, tuple[Any, ...], str | None]]) -> None:
    """``dispatch`` of the jobs a unit of work asked for, called once after its commit: with
    workers, the plain jobs (not nudges) go to Redis in one pipeline (a drain's batch of enrollments
    enqueues two jobs per enrollment). Never raises, like ``dispatch``."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if settings_of(app).JOBS_MODE == "eager" or len(calls) == 1:
        for spec, args, job_id in calls:
            dispatch(spec, args, job_id)
        return
    plain = []
    for spec, args, job_id in calls:
        if spec.coalesce_seconds:
            dispatch(spec, args, job_id)
        else:
            plain.append((spec, args, job_id))
    try:
        _send_many(app, plain)
    except Exception:
        log.exception("could not enqueue %d jobs; sweepers will retry them", len(plain))


dispatch.together = dispatch_all  # type: ignore[attr-defined]


def _send_many(app: Flask, calls: list[tuple[JobSpec, tuple[Any, ...], str | None]]) -> None:
    if not calls:
        return
    connection = app.extensions["loyalty.rq_redis"]
    with connection.pipeline() as pipeline:
        by_queue: dict[str, list[Any]] = {}
        named: set[str] = set()
        for spec, args, job_id in calls:
            if job_id is not None:
                if job_id in named:
                    continue  # the same job asked for twice (two scans of one person): once is enough
                named.add(job_id)
            by_queue.setdefault(spec.queue, []).append(
                Queue.prepare_data("app.jobs.run_job", **_job_options(spec, args, job_id))
            )
        for name, prepared in by_queue.items():
            Queue(name, connection=connection).enqueue_many(prepared, pipeline=pipeline)
        pipeline.execute()


def _retry(spec: JobSpec) -> Retry | None:
    return Retry(max=len(spec.retry_intervals), interval=list(spec.retry_intervals)) if spec.retry_intervals else None


def _job_options(spec: JobSpec, args: tuple[Any, ...], job_id: str | None) -> dict[str, Any]:
    """What RQ is told about one of our jobs, sent alone or in a pipeline."""
    return {
        "args": (spec.name, args),
        "timeout": spec.timeout,
        "job_id": job_id,
        "retry": _retry(spec),
        "description": f"{spec.name}{args!r}",
    }


def _send_or_log(app: Flask, spec: JobSpec, args: tuple[Any, ...], job_id: str | None = None) -> None:
    try:
        _send(app, spec, args, job_id)
    except Exception:
        log.exception("could not enqueue %s%r; a sweeper will retry it", spec.name, args)


def _send(app: Flask, spec: JobSpec, args: tuple[Any, ...], job_id: str | None = None) -> None:
    connection = app.extensions["loyalty.rq_redis"]
    if spec.coalesce_seconds and not connection.set(_coalesce_key(spec, args), 1, nx=True, ex=spec.coalesce_seconds):
        return  # one is already on its way
    queue = Queue(spec.queue, connection=connection)
    queue.enqueue_call("app.jobs.run_job", **_job_options(spec, args, job_id))


#: How long the nudger lets requests gather before it sends their nudges.
NUDGE_GATHER_SECONDS = 0.01
#: Rounds start at least this far apart: under a steady stream of events a round (an app context
#: and a Redis ``SET NX``, ~0.15–0.2 ms of CPU) ran every 10 ms in each process, ~0.1 ms of every
#: DMS event's CPU at 150 events/s a worker. A first nudge after a quiet spell still goes out after
#: ``NUDGE_GATHER_SECONDS``; during a burst the drain is already queued or running.
NUDGE_MIN_INTERVAL_SECONDS = 0.05


class _Nudger:
    """One background thread per web process sends the coalesced jobs its requests asked for.

    Each request records what it wants (after its commit) and wakes the thread; the thread waits
    a moment, takes everything recorded so far and sends each once. Anything recorded after the
    take is sent by the next round, so every request is covered by a send that starts after its
    commit, which is all a nudge promises. A process that dies before sending leaves the events
    to the periodic sweeper; a normal exit sends what is left (``atexit``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _wanted and _thread
        self._sending = threading.Lock()  # one round at a time (thread or flush)
        self._wake = threading.Event()
        self._wanted: dict[tuple[str, tuple[Any, ...]], tuple[Flask, JobSpec]] = {}
        self._thread: threading.Thread | None = None

    def forget_after_fork(self) -> None:
        """A forked child has none of the parent's threads (and may inherit a held lock)."""
        self.__init__()  # type: ignore[misc]

    def want(self, app: Flask, spec: JobSpec, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._wanted[(spec.name, args)] = (app, spec)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nudger", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        last_round = -NUDGE_MIN_INTERVAL_SECONDS
        while True:
            self._wake.wait()
            time.sleep(max(NUDGE_GATHER_SECONDS, last_round + NUDGE_MIN_INTERVAL_SECONDS - time.monotonic()))
            self._wake.clear()
            last_round = time.monotonic()
            self.flush()

    def flush(self) -> None:
        """Send everything wanted so far (the thread's round; also at exit and in tests)."""
        with self._sending:
            with self._lock:
                wanted, self._wanted = self._wanted, {}
            for (_, args), (app, spec) in wanted.items():
                with app.app_context():
                    _send_or_log(app, spec, args)


_nudger = _Nudger()
atexit.register(_nudger.flush)
os.register_at_fork(after_in_child=_nudger.forget_after_fork)
flush_nudges = _nudger.flush


def _coalesce_key(spec: JobSpec, args: tuple[Any, ...]) -> str:
    return f"jobs:coalesce:{spec.name}:{args!r}"


def clear_coalesced(fn: JobFunction, args: tuple[Any, ...]) -> None:
    """Called by a coalesced job as it starts: work arriving from now on schedules another run."""
    if current_settings().JOBS_MODE != "eager":
        try:
            rq_connection().delete(_coalesce_key(fn.spec, args))
        except redis.RedisError:
            log.warning("could not clear the coalescing key of %s%r", fn.spec.name, args)


def resolve(name: str) -> Callable:
    module_name, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def run_job(name: str, args: tuple[Any, ...]) -> Any:
    """What a worker executes: the job in a fresh app context and session, one commit at the end."""
    app = current_app._get_current_object() if has_app_context() else _app_for_worker()  # type: ignore[attr-defined]
    fn = resolve(name)
    running = get_current_job()  # None in eager mode
    with app.app_context(), logs.job_context(running.id if running else None):
        session = db.session()
        try:
            result = fn(*args)
            session.commit()
            return result
        except Exception:
            session.rollback()
            raise


def _app_for_worker() -> Flask:
    global _worker_app  # noqa: PLW0603 - one app per worker process
    if _worker_app is None:
        from app import create_app

        _worker_app = create_app()
    return _worker_app


def set_worker_app(app: Flask) -> None:
    global _worker_app  # noqa: PLW0603
    _worker_app = app
