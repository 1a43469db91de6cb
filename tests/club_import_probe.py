"""Run as ``python -m tests.club_import_probe DATABASE_URL REDIS_URL FILE DEALER CHUNK [CRASH_AT]``:
imports a club file in a fresh process. With ``CRASH_AT`` the process dies (``os._exit``, no
cleanup, like a kill) inside that chunk's transaction, after its rows were written but before the
commit. Prints the outcome's counts as JSON on success."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from app import create_app
from app.members import club_import
from tests.conftest import DATA_KEY


def main() -> None:
    database_url, redis_url, file, dealer, chunk = sys.argv[1:6]
    crash_at = int(sys.argv[6]) if len(sys.argv) > 6 else None
    app = create_app(
        overrides={
            "ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DATA_KEY": DATA_KEY,
            "LOG_LEVEL": "CRITICAL",
        }
    )
    if crash_at is not None:
        original, calls = club_import.apply_rows, [0]

        def apply_then_die(*args, **kwargs):
            result = original(*args, **kwargs)
            calls[0] += 1
            if calls[0] == crash_at:
                os._exit(137)
            return result

        club_import.apply_rows = apply_then_die
    with app.app_context():
        options = club_import.ImportOptions(
            dealer_code=dealer, actor=("cli", "probe"), chunk_rows=int(chunk), prepare_ahead=True
        )
        outcome = club_import.run_import(Path(file), options)
    print(json.dumps(outcome.counts))


if __name__ == "__main__":
    main()
