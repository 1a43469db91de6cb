"""Dealer-club import of generated rows, as a ratio against PostgreSQL ``COPY`` of the same file.

Ours: ``flask members import dealer-club FILE --dealer B0001`` in its own process, the real
command (per row: phone and VIN checks, blind indexes, Fernet encryption of name, phone, birthday,
VIN and plate; per chunk: COPY into staging, dedupe against members by phone and VIN and within
the file, members, accounts, consents, cars, ownerships, leads, progress). Dedupe is always on:
the file repeats phones and the database already holds ``--existing`` members whose phones the
file reuses. Floors, on the same server, alternating with ours round by round (each round imports
a fresh file of ``--rows / --rounds`` rows):

1. ``COPY`` of the same CSV into a bare table of text columns (the issue's floor; target ≤ 5×);
2. the same Python half as ours (``club_import.stage_rows``: checks, blind indexes, five Fernet
   encryptions per row) in as many processes as ours uses (the importer and its helper), then
   ``COPY`` of the staged rows into a bare table: what any import that stores the rows encrypted
   must at least spend. Its CPU seconds are printed too.

    python bench/import.py [--rows 1000000] [--rounds 2] [--existing 50000] [--chunk-rows 5000]

Set ``LOYALTY_BENCH_DB`` when others bench on the same server (the run drops that database).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import BENCH_DB, ROOT, bench_environment

PG = "host=127.0.0.1 user=postgres"
BIN = Path(sys.executable).parent
FLASK_IMPORT = [str(BIN / "flask"), "--app", "wsgi.py", "members", "import", "dealer-club"]


def fresh_database(env: dict[str, str]) -> None:
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)


def write_file(path: Path, rows: int, seed: int = 7) -> None:
    from app.members.club_import import sample_rows

    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(sample_rows(rows, seed=seed))


def seed(env: dict[str, str], path: Path, existing: int) -> None:
    """The dealer, and ``existing`` members made by importing the file's first rows for another
    dealer (so the timed run meets them: dedupe against the table, not only within the file)."""
    with psycopg.connect(f"{PG} dbname={BENCH_DB}", autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dealers (code, name, region, city, active, created_at) VALUES"
            " ('B0001', '基准店', 'south', '广州', true, now()), ('B0002', '老店', 'south', '广州', true, now())"
        )
    if existing:
        head = path.with_name("existing.csv")
        with path.open(encoding="utf-8") as source, head.open("w", encoding="utf-8") as out:
            for i, line in enumerate(source):
                if i > existing:
                    break
                out.write(line)
        flask(env, head, "B0002")


def flask(env: dict[str, str], path: Path, dealer: str, chunk_rows: int = 5000) -> float:
    started = time.perf_counter()
    subprocess.run(
        [*FLASK_IMPORT, str(path), "--dealer", dealer, "--chunk-rows", str(chunk_rows)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def copy_floor(path: Path) -> float:
    with psycopg.connect(f"{PG} dbname={BENCH_DB}", autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_club")
        conn.execute(
            "CREATE TABLE bare_club (name text, phone text, gender text, birthday text, vin text, plate text,"
            " model text, consent text, marketing text, joined_at text)"
        )
        started = time.perf_counter()
        statement = "COPY bare_club FROM STDIN (FORMAT csv, HEADER true)"
        with conn.cursor() as cursor, cursor.copy(statement) as copy, path.open("rb") as source:
            while block := source.read(1 << 20):
                copy.write(block)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bare_club")
    return elapsed


_app: Any = None  # made before the pool forks: the floor's processes start warm


def _stage_part(args: tuple[Path, int, int]) -> float:
    """Floor 2 in one pool process: the Python half for every ``step``-th block of 5,000 rows, then
    COPY of the staged rows into the bare table; returns the process's CPU seconds."""
    from app.core.clock import utcnow
    from app.members import club_import

    path, part, step = args
    with _app.app_context():
        started = time.process_time()
        positions = club_import.check_headers(path)
        with path.open(encoding="utf-8", newline="") as source:
            reader = csv.reader(source)
            next(reader)
            rows = [(n, cells) for n, cells in enumerate(reader, start=2) if (n // 5000) % step == part]
        staged, _errors = club_import.stage_rows(rows, positions, utcnow().date())
        with (
            psycopg.connect(f"{PG} dbname={BENCH_DB}") as conn,
            conn.cursor() as cursor,
            cursor.copy("COPY bare_staged FROM STDIN") as copy,
        ):
            for row in staged:
                copy.write_row([None if v is None else str(v) for v in row])
        return time.process_time() - started


def encrypt_and_copy_floor(path: Path, env: dict[str, str], processes: int = 2) -> tuple[float, float]:
    """Floor 2: the Python half and COPY in ``processes`` processes (ours: the importer and its
    helper), started and warm before the clock starts; returns (seconds, their CPU seconds)."""
    global _app  # noqa: PLW0603 - handed to the forked pool
    from app import create_app
    from app.members.club_import_sql import COLUMNS

    os.environ.update(env)
    _app = _app or create_app()
    with psycopg.connect(f"{PG} dbname={BENCH_DB}", autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_staged")
        conn.execute(f"CREATE TABLE bare_staged ({', '.join(f'{c} text' for c in COLUMNS)})")
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(abs, range(processes))  # started
        started = time.perf_counter()
        cpu = pool.map(_stage_part, [(path, part, processes) for part in range(processes)])
        elapsed = time.perf_counter() - started
    with psycopg.connect(f"{PG} dbname={BENCH_DB}", autocommit=True) as conn:
        conn.execute("DROP TABLE bare_staged")
    return elapsed, sum(cpu)


def counts() -> dict[str, int]:
    with psycopg.connect(f"{PG} dbname={BENCH_DB}") as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("members", "vehicles", "consents", "consent_leads", "import_row_errors", "crm_outbox")
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--existing", type=int, default=50_000)
    parser.add_argument("--chunk-rows", type=int, default=5_000)
    args = parser.parse_args()
    env = bench_environment(LOYALTY_DB_STATEMENT_TIMEOUT_MS="0", LOYALTY_JOBS_MODE="eager")
    per_round = args.rows // args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"club{i}.csv" for i in range(args.rounds)]
        started = time.perf_counter()
        for i, path in enumerate(paths):
            write_file(path, per_round, seed=7 + i)
        took = time.perf_counter() - started
        print(f"generated {args.rounds} files of {per_round:,} rows in {took:.0f} s")
        fresh_database(env)
        seed(env, paths[0], args.existing)
        print(f"seeded {counts()['members']:,} existing members")
        totals = {"copy": 0.0, "floor2": 0.0, "ours": 0.0, "cpu2": 0.0}
        for i, path in enumerate(paths):
            copy_s = copy_floor(path)
            floor2_s, cpu2 = encrypt_and_copy_floor(path, env)
            ours = flask(env, path, "B0001", args.chunk_rows)
            for key, value in (("copy", copy_s), ("floor2", floor2_s), ("ours", ours), ("cpu2", cpu2)):
                totals[key] += value
            print(
                f"round {i + 1}: COPY {copy_s:.1f} s, encrypt+COPY {floor2_s:.1f} s (Python CPU {cpu2:.0f} s),"
                f" import {ours:.1f} s ({per_round / ours:,.0f} rows/s):"
                f" {ours / copy_s:.1f}× COPY, {ours / floor2_s:.2f}× encrypt+COPY"
            )
        print(f"rows now: {counts()}")
        print(
            f"total {args.rows:,} rows: import {totals['ours']:.1f} s ({args.rows / totals['ours']:,.0f} rows/s);"
            f" COPY {totals['copy']:.1f} s; encrypt+COPY {totals['floor2']:.1f} s (Python CPU {totals['cpu2']:.0f} s)"
        )
        print(
            f"ratio import / COPY: {totals['ours'] / totals['copy']:.1f}×  (target ≤ 5×);"
            f" import / encrypt+COPY: {totals['ours'] / totals['floor2']:.2f}×"
        )


if __name__ == "__main__":
    main()
