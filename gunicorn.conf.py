"""gunicorn reads this file from the working directory (``gunicorn wsgi:app`` in the repository).

Only the hooks prometheus-client's multiprocess mode needs (docs/operations.md, "Metrics"): with
``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its request histogram to files there and
``/metrics`` adds them up. The directory is emptied when gunicorn starts (stale files of a previous
run would be counted) and a worker's live files are marked dead when it exits. Without the variable
these hooks do nothing. Workers, threads and the bind address stay on the command line (README).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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
