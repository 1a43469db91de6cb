"""`make run` from a fresh clone: every step of the Makefile's ``run`` recipe before ``serve``, on
the embedded stack (development settings, a new SQLite file, the sandboxes), must succeed.

The steps are read from the Makefile itself, so a step added there is covered here; a model whose
migration cannot insert on SQLite (a ``BIGINT`` primary key is no rowid alias there) fails here
rather than on a new teammate's first `make run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from app.reporting import rollup

ROOT = Path(__file__).resolve().parent.parent


def _run_recipe_steps() -> list[list[str]]:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert recipe is not None, "the Makefile has no run target"
    steps = []
    for line in recipe.group(1).splitlines():
        command = line.strip()
        assert command.startswith("$(FLASK) "), command
        args = command.removeprefix("$(FLASK) ").split()
        if args[0] != "serve":
            steps.append(args)
    return steps


def _embedded_env(database: Path) -> dict[str, str]:
    """The environment of a new teammate's shell: no LOYALTY_ settings but the database file."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOYALTY_")}
    env.update(LOYALTY_ENV="development", LOYALTY_DATABASE_URL=f"sqlite:///{database}", LOYALTY_LOG_LEVEL="WARNING")
    return env


def test_every_step_of_make_run_succeeds_on_a_fresh_sqlite_file(tmp_path):
    database = tmp_path / "loyalty.db"
    env = _embedded_env(database)
    steps = _run_recipe_steps()
    assert ["db", "upgrade"] in steps and ["demo", "seed"] in steps
    for args in [*steps, ["demo", "walkthrough", "mall"]]:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert result.returncode == 0, f"flask {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            members = connection.execute(sa.text("SELECT count(*) FROM members")).scalar()
            bookings = connection.execute(sa.text("SELECT count(*) FROM bookings")).scalar()
            rolled = set(connection.execute(sa.text("SELECT DISTINCT metric FROM daily_metrics")).scalars())
    finally:
        engine.dispose()
    assert members > 0 and bookings > 0
    # the dashboard's every chart has numbers in the demo, rolled up on SQLite as on PostgreSQL
    assert set(rollup.METRICS) - rolled == set()


def test_every_integer_id_key_is_a_rowid_on_sqlite(tmp_path):
    """SQLite numbers a row only through an ``INTEGER PRIMARY KEY``; a ``BIGINT`` one stays NULL."""
    database = tmp_path / "schema.db"
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=_embedded_env(database),
        check=True,
        capture_output=True,
    )
    engine = sa.create_engine(f"sqlite:///{database}")
    wrong = []
    try:
        with engine.connect() as connection:
            tables = connection.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars().all()
            for table in tables:
                columns = connection.execute(sa.text(f'PRAGMA table_info("{table}")')).all()
                keys = [column for column in columns if column.pk]
                if len(keys) == 1 and keys[0].name == "id" and keys[0].type.upper() != "INTEGER":
                    wrong.append(f"{table}.id is {keys[0].type}")
    finally:
        engine.dispose()
    assert wrong == []
