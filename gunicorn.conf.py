"""gunicorn reads this file from the working directory (``gunicorn wsgi:app`` in the repository).

* The hooks prometheus-client's multiprocess mode needs (docs/operations.md, "Metrics"): with
  ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its request histogram to files there and
  ``/metrics`` adds them up. The directory is emptied when gunicorn starts (stale files of a
  previous run would be counted) and a worker's live files are marked dead when it exits. Without
  the variable these hooks do nothing.
* The garbage collector: once a worker has imported the app, everything it holds (modules, mapped
  classes, compiled statements, translations: a few hundred thousand objects) is moved out of the
  collector's reach (``gc.freeze``). Left in, each full collection walked all of it: 80–190 ms
  during which the worker's threads all stood still, once per worker every 20–40 s under the
  callback benchmark (the p99 at a steady 300/s). A full collection now walks only what requests
  left behind.
* The access log (off unless ``--access-logfile`` is given): request lines and paths without the
  secret segment of the SMS status-report address (``app.core.logs.redact_secret_paths``).

Workers, threads and the bind address stay on the command line (README).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger


def _multiproc_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def on_starting(server: Any) -> None:
    directory = _multiproc_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if _multiproc_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """The app is imported (gunicorn loads it in each worker after the fork): freeze what it holds."""
    gc.collect()
    gc.freeze()


class RedactingLogger(Logger):
    """gunicorn's logger, with the secret path segments taken out of every access-log atom: the
    request line (``%(r)s``), the path (``%(U)s``), the Referer (``%(f)s``), the environ and header
    atoms (``%({raw_uri}e)s``…)."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        from app.core.logs import redact_secret_paths

        atoms = super().atoms(resp, req, environ, request_time)
        return {name: redact_secret_paths(v) if isinstance(v, str) else v for name, v in atoms.items()}


logger_class = RedactingLogger
