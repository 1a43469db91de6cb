"""CRM outbox delivery rate, as a ratio against the fake CRM's own rate on the same machine.

The fake CRM (``app.gateways.fakes.FakeCrm``) is served over HTTP by a threaded WSGI server that
checks each request's signature, as the real CRM would, and records it (per-member order checked).

* Floor: the fake CRM's own rate: ``--workers`` threads POST pre-signed changes straight to it
  (keep-alive sessions), nothing else.
* Ours: ``--rows`` outbox rows for ``--members`` members, delivered by ``--workers`` threads
  running the real delivery (``crm.delivery.deliver_until_idle``: claim the member's head row with
  ``SKIP LOCKED``, build the payload from the current rows, sign, POST through ``HttpCrm``,
  record the outcome, commit), against a fresh PostgreSQL database.

Target: ours / floor ≥ 0.5. The run also checks that every row arrived once and in order.

    .venv/bin/python bench/crm_outbox.py [--rows 5000] [--members 500] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench.common import ROOT

DB = "loyalty_bench_crm"
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB}"
SECRET = "bench-crm-secret"
PORT = 8765


def _fresh_database() -> None:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    env = {**os.environ, "LOYALTY_ENV": "development", "LOYALTY_DATABASE_URL": DB_URL, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "alembic", "upgrade", "head"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)


def _crm_server(fake):
    """The fake CRM behind HTTP: verify the signature, record the change, 202."""
    from app.core.security import verify_timestamped_signature
    from app.gateways import CrmChange

    def app(environ, start_response):
        request = Request(environ)
        body = request.get_data()
        try:
            verify_timestamped_signature(
                secret=SECRET,
                timestamp=request.headers.get("X-Timestamp"),
                signature=request.headers.get("X-Signature"),
                body=body,
                window_seconds=300,
            )
        except Exception:
            return Response("bad signature", status=401)(environ, start_response)
        document = json.loads(body)
        fake.deliver(
            CrmChange(
                document["idempotency_key"],
                document["member_no"],
                document["seq"],
                document["kind"],
                document["occurred_at"],
                document["payload"],
            )
        )
        return Response('{"status":"accepted"}', status=202, content_type="application/json")(environ, start_response)

    server = make_server("127.0.0.1", PORT, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _in_threads(workers: int, fn) -> float:
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def floor_rate(rows: int, members: int, workers: int) -> float:
    """Pre-signed changes POSTed straight to the fake CRM."""
    from app.core.security import sign_timestamped

    per_worker = rows // workers

    def post(worker: int) -> None:
        session = requests.Session()
        for n in range(per_worker):
            member_no = f"7{worker:03d}{n % max(members // workers, 1):06d}"
            body = json.dumps(
                {
                    "idempotency_key": f"floor-{worker}-{n}",
                    "member_no": member_no,
                    "seq": n + 1,
                    "kind": "balance",
                    "occurred_at": "2026-12-02T00:00:00+00:00",
                    "payload": {"member": {"member_no": member_no, "tier": "silver", "balance": n}},
                },
                separators=(",", ":"),
            ).encode()
            headers = {"Content-Type": "application/json", **sign_timestamped(SECRET, body)}
            session.post(f"http://127.0.0.1:{PORT}/v1/member-changes", data=body, headers=headers, timeout=10)

    return per_worker * workers / _in_threads(workers, post)


def our_rate(rows: int, members: int, workers: int) -> tuple[float, int]:
    from app import create_app
    from app.core.db import db
    from app.crm import delivery, outbox
    from app.members import services

    app = create_app(
        overrides={
            "ENV": "development",
            "DATABASE_URL": DB_URL,
            "REDIS_URL": "redis://127.0.0.1:6379/12",
            "JOBS_MODE": "eager",
            "CRM_URL": f"http://127.0.0.1:{PORT}",
            "CRM_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
        }
    )
    with app.app_context():
        ids = []
        for _ in range(members):
            ids.append(services.create_member(channel="import", status="active", city="Shanghai").id)
        db.session.commit()
        db.session.execute(sa.text("DELETE FROM crm_outbox"))  # the creations' rows: start from a known count
        db.session.execute(sa.text("UPDATE crm_member_sync SET last_seq = 0"))
        db.session.commit()
        for n in range(rows):
            outbox.enqueue(ids[n % members], "balance")
            if n % members == members - 1:
                db.session.commit()  # one transaction per round: a member's rows in separate transactions
        db.session.commit()

    counts: list[int] = [0] * workers

    def work(worker: int) -> None:
        with app.app_context():
            counts[worker] = delivery.deliver_until_idle()

    elapsed = _in_threads(workers, work)
    return sum(counts) / elapsed, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    from app.gateways.fakes import FakeCrm

    _fresh_database()
    fake = FakeCrm()
    server = _crm_server(fake)
    try:
        floor = floor_rate(args.rows, args.members, args.workers)
        fake.reset()
        ours, delivered = our_rate(args.rows, args.members, args.workers)
    finally:
        server.shutdown()
    assert delivered == args.rows == fake.delivered(), (delivered, fake.delivered())
    assert fake.out_of_order == [] and fake.duplicates == 0
    print(f"fake CRM's own rate : {floor:8.0f} changes/s ({args.workers} client threads, HTTP keep-alive)")
    shape = f"{args.workers} workers, {args.rows} rows, {args.members} members"
    print(f"outbox delivery     : {ours:8.0f} changes/s ({shape})")
    print(f"ratio               : {ours / floor:.2f}  (target >= 0.5); order kept, none twice")


if __name__ == "__main__":
    main()
