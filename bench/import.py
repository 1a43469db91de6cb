"""Dealer-club import of generated rows, as a ratio against PostgreSQL ``COPY`` of the same file.

Ours: ``flask members import dealer-club FILE --dealer B0001`` in its own process, the real
command (per row: phone and VIN checks, blind indexes, Fernet encryption of name, phone, birthday,
VIN and plate; per chunk: COPY into staging, dedupe against members by phone and VIN and within
the file, members, accounts, consents, cars, ownerships, leads, progress). Dedupe is always on:
the file repeats phones and the database already holds ``--existing`` members whose phones the
file reuses. Floor: ``COPY`` of the same CSV into a bare table of text columns on the same server.
Target: ratio ≤ 5.

    python bench/import.py [--rows 1000000] [--existing 50000] [--chunk-rows 5000]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def write_file(path: Path, rows: int) -> None:
    from app.members.club_import import sample_rows

    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(sample_rows(rows))


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


def counts() -> dict[str, int]:
    with psycopg.connect(f"{PG} dbname={BENCH_DB}") as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("members", "vehicles", "consents", "consent_leads", "import_row_errors")
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--existing", type=int, default=50_000)
    parser.add_argument("--chunk-rows", type=int, default=5_000)
    args = parser.parse_args()
    env = bench_environment(LOYALTY_DB_STATEMENT_TIMEOUT_MS="0", LOYALTY_JOBS_MODE="eager")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "club.csv"
        started = time.perf_counter()
        write_file(path, args.rows)
        took = time.perf_counter() - started
        print(f"generated {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in {took:.0f} s")
        fresh_database(env)
        seed(env, path, args.existing)
        print(f"seeded {counts()['members']:,} existing members")
        floor_before = copy_floor(path)
        ours = flask(env, path, "B0001", args.chunk_rows)
        floor_after = copy_floor(path)
        floor = (floor_before + floor_after) / 2
        print(f"COPY into a bare table: {floor_before:.1f} s before, {floor_after:.1f} s after")
        print(f"import: {ours:.1f} s ({args.rows / ours:,.0f} rows/s); rows now: {counts()}")
        print(f"ratio import / COPY: {ours / floor:.1f}×  (target ≤ 5×)")


if __name__ == "__main__":
    main()
