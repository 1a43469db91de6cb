"""Periodic jobs: each package declares its own (``periodic(...)`` in its ``register``), and the
runners that fire them.

Cron expressions are on the business calendar (Asia/Shanghai). In production ``flask jobs cron``
runs RQ's ``CronScheduler`` with this list; under ``make run`` a small in-process thread fires
the same entries eagerly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from croniter import croniter
from flask import Flask

from app.core.clock import BUSINESS_TZ
from app.jobs import JobFunction, resolve, run_job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    job: str  # dotted path of a function declared with @job
    cron: str  # minute hour day month weekday, Asia/Shanghai
    description: str


_PERIODIC: dict[str, Periodic] = {}


def periodic(fn: JobFunction, cron: str, description: str) -> None:
    """Run the job ``fn`` on the cron schedule (each package declares its own in ``register``)."""
    entry = Periodic(fn.spec.name, cron, description)
    if not croniter.is_valid(cron):
        raise ValueError(f"{entry.job}: invalid cron expression {cron!r}")
    _PERIODIC[entry.job] = entry


def entries() -> list[Periodic]:
    """Every periodic job the registered packages declared."""
    return sorted(_PERIODIC.values(), key=lambda entry: entry.job)


def start_cron_scheduler(redis_connection: object) -> None:
    """Production: RQ's CronScheduler enqueues each entry on its job's queue (blocks)."""
    from rq.cron import CronScheduler

    os.environ["TZ"] = "Asia/Shanghai"  # CronScheduler reads cron fields in the process's local time
    time.tzset()
    scheduler = CronScheduler(connection=redis_connection)  # type: ignore[arg-type]
    for entry in entries():
        spec = resolve(entry.job).spec
        scheduler.register(
            run_job,
            spec.queue,
            args=(spec.name, ()),
            cron=entry.cron,
            job_timeout=spec.timeout,
            name=spec.name,
        )
    scheduler.start()


def start_embedded_scheduler(app: Flask, poll_seconds: float = 15.0) -> threading.Thread:
    """Development: a daemon thread that runs due entries in-process."""

    def loop() -> None:
        next_runs = {entry.job: _next_run(entry.cron) for entry in entries()}
        while True:
            now = datetime.now(BUSINESS_TZ)
            for entry in entries():
                if now >= next_runs[entry.job]:
                    next_runs[entry.job] = _next_run(entry.cron)
                    try:
                        with app.app_context():
                            run_job(entry.job, ())
                    except Exception:
                        log.exception("periodic job %s failed", entry.job)
            time.sleep(poll_seconds)

    thread = threading.Thread(target=loop, name="embedded-scheduler", daemon=True)
    thread.start()
    return thread


def _next_run(expression: str) -> datetime:
    return croniter(expression, datetime.now(BUSINESS_TZ)).get_next(datetime)
