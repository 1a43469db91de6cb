"""CRM outbox delivery rate, as a ratio against the fake CRM's own rate on the same machine.

The fake CRM (``app.gateways.fakes.FakeCrm``) is served over HTTP by a threaded WSGI server in its
own process that checks each request's signature, as the real CRM would, and records it
(per-member order checked).

* Floor: the fake CRM's own rate: ``--workers`` client processes sign and POST changes straight
  to it, nothing else.
* Ours: ``--rows`` outbox rows for ``--members`` members, delivered by the real delivery
  (``crm.delivery.deliver_until_idle``: claim a batch of member heads with ``SKIP LOCKED``, build
  each payload from the current rows, sign, POST through ``HttpCrm``, record the outcomes, commit
  per batch) in ``--workers`` processes, as RQ workers run it, against a fresh PostgreSQL
  database. The fake CRM runs in its own process in both cases; only the work is timed (each
  process sets up, then all start together).

Target: ours / floor ≥ 0.5. The run also checks that every row arrived once and in order.

    .venv/bin/python bench/crm_outbox.py [--rows 2000] [--members 500] [--workers 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import requests
import sqlalchemy as sa
from werkzeug.serving import WSGIRequestHandler, make_server
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


def _serve_crm() -> None:
    """The fake CRM behind HTTP, in its own process (the CRM is another system): verify the
    signature, record the change, 202. ``GET /stats`` tells what it received; ``POST /reset``."""
    from app.core.security import verify_timestamped_signature
    from app.gateways import CrmChange
    from app.gateways.fakes import FakeCrm

    fake = FakeCrm()

    def app(environ, start_response):
        request = Request(environ)
        if request.path == "/stats":
            stats = {
                "delivered": fake.delivered(),
                "out_of_order": len(fake.out_of_order),
                "duplicates": fake.duplicates,
            }
            return Response(json.dumps(stats), content_type="application/json")(environ, start_response)
        if request.path == "/reset":
            fake.reset()
            return Response("{}", content_type="application/json")(environ, start_response)
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

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    WSGIRequestHandler.protocol_version = "HTTP/1.1"
    make_server("127.0.0.1", PORT, app, threaded=True).serve_forever()


def _start_crm() -> multiprocessing.Process:
    process = multiprocessing.Process(target=_serve_crm, daemon=True)
    process.start()
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{PORT}/stats", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("the fake CRM did not start")


def _stats() -> dict:
    return requests.get(f"http://127.0.0.1:{PORT}/stats", timeout=5).json()


def _in_processes(workers: int, target, *args) -> float:
    """Run ``target(worker, ready, times, *args)`` in ``workers`` processes; each sets up, waits at
    the barrier and reports its (start, end) wall-clock times. Returns the span of the work alone."""
    ready, times = multiprocessing.Barrier(workers), multiprocessing.Queue()
    processes = [multiprocessing.Process(target=target, args=(i, ready, times, *args)) for i in range(workers)]
    for process in processes:
        process.start()
    spans = [times.get(timeout=900) for _ in processes]
    for process in processes:
        process.join()
        assert process.exitcode == 0
    return max(end for _start, end in spans) - min(start for start, _end in spans)


def _post_directly(worker: int, ready, times, count: int, members: int) -> None:
    from app.core.security import sign_timestamped

    session = requests.Session()
    ready.wait()
    started = time.time()
    for n in range(count):
        member_no = f"7{worker:03d}{n % members:06d}"
        body = json.dumps(
            {
                "idempotency_key": f"floor-{worker}-{n}",
                "member_no": member_no,
                "seq": n // members + 1,
                "kind": "balance",
                "occurred_at": "2026-12-02T00:00:00+00:00",
                "payload": {"member": {"member_no": member_no, "tier": "silver", "balance": n}},
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", **sign_timestamped(SECRET, body)}
        session.post(f"http://127.0.0.1:{PORT}/v1/member-changes", data=body, headers=headers, timeout=10)
    times.put((started, time.time()))


def floor_rate(rows: int, members: int, workers: int) -> float:
    """Pre-built changes signed and POSTed straight to the fake CRM by ``workers`` processes."""
    per_worker = rows // workers
    return per_worker * workers / _in_processes(workers, _post_directly, per_worker, max(members // workers, 1))


def _app():
    from app import create_app

    return create_app(
        overrides={
            "ENV": "development",
            "DATABASE_URL": DB_URL,
            "REDIS_URL": "redis://127.0.0.1:6379/8",
            "JOBS_MODE": "eager",
            "CRM_URL": f"http://127.0.0.1:{PORT}",
            "CRM_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
        }
    )


def _deliver(worker: int, ready, times) -> None:
    from app.crm import delivery

    with _app().app_context():
        ready.wait()
        started = time.time()
        delivery.deliver_until_idle()
        times.put((started, time.time()))


def seed_members(members: int) -> list[int]:
    from app.core.db import db
    from app.members import services

    with _app().app_context():
        ids = [services.create_member(channel="import", status="active", city="Shanghai").id for _ in range(members)]
        db.session.commit()
        db.engine.dispose()
    return ids


def our_rate(rows: int, ids: list[int], workers: int) -> float:
    """``rows`` outbox rows delivered by ``workers`` worker processes (as RQ workers would)."""
    from app.core.db import db
    from app.crm import outbox

    with _app().app_context():
        db.session.execute(sa.text("DELETE FROM crm_outbox"))  # earlier rounds' rows: start from a known count
        db.session.commit()
        for n in range(rows):
            outbox.enqueue(ids[n % len(ids)], "balance")
            if n % len(ids) == len(ids) - 1:
                db.session.commit()  # one transaction per round: a member's rows in separate transactions
        db.session.commit()
        db.engine.dispose()  # the worker processes open their own connections
    return rows / _in_processes(workers, _deliver)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    _fresh_database()
    crm = _start_crm()
    floors, ours = [], []
    try:
        ids = seed_members(args.members)
        for round_no in range(args.rounds):  # alternate: this VM's speed drifts within a minute
            requests.post(f"http://127.0.0.1:{PORT}/reset", timeout=5)
            floors.append(floor_rate(args.rows, args.members, args.workers))
            requests.post(f"http://127.0.0.1:{PORT}/reset", timeout=5)
            ours.append(our_rate(args.rows, ids, args.workers))
            stats = _stats()
            assert stats == {"delivered": args.rows, "out_of_order": 0, "duplicates": 0}, stats
            ratio = ours[-1] / floors[-1]
            print(f"round {round_no + 1}: floor {floors[-1]:6.0f}/s  ours {ours[-1]:6.0f}/s  ratio {ratio:.2f}")
    finally:
        crm.terminate()
    floor, ours_total = len(floors) / sum(1 / f for f in floors), len(ours) / sum(1 / o for o in ours)
    print(f"fake CRM's own rate : {floor:8.0f} changes/s ({args.workers} client processes, harmonic mean)")
    shape = f"{args.workers} worker processes, {args.rows} rows, {args.members} members"
    print(f"outbox delivery     : {ours_total:8.0f} changes/s ({shape})")
    print(f"ratio               : {ours_total / floor:.2f}  (target >= 0.5); order kept, none twice")


if __name__ == "__main__":
    main()
