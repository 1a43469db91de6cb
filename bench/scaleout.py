"""Scale-out proof: 2 gunicorn servers and 3 RQ workers behind PgBouncer (transaction pooling) against
one PostgreSQL, under a mixed load for a few minutes, one worker killed with SIGKILL and replaced
mid-run; then a full audit of the database that fails loudly.

Topology (all on this machine): PgBouncer on a free port with ``pool_mode = transaction`` and a small
server pool (``--server-connections``, default 8) in front of the bench database; every service
process talks to PgBouncer with ``LOYALTY_DB_POOLER=pgbouncer``. Two gunicorn servers (``wsgi:app``,
two ports, as two hosts would be) take the load round-robin; three ``flask jobs worker`` processes
and one ``flask jobs cron`` (the sweeper that re-nudges stalled inbox events) do the deferred work.

The load (closed loop, ``--clients`` connections, each alternating between the two servers), by weight:
WeChat callbacks (newcomers scanning advisor SA0101's QR code: subscribe with ``qrscene_adv``), DMS
events (deliveries to new buyers, then services of the vehicles delivered), balance reads, benefit
bookings (slots smaller than the demand: some must be refused) and mall redemptions (stock smaller
than the demand). One callback and one DMS event in 20 are resent as the senders' retries do.
Halfway through, an RQ worker that is running a job is killed with SIGKILL, its process group (the
work-horse) with it, and a new worker started.

The audit (after the inbox has drained): inbox all processed (nothing waiting, failed or dead);
every accepted subscribe has exactly one identity with a member, every accepted delivery exactly one
vehicle; point entries unique per idempotency key and per (inbound event, rule, kind); each account's
balance equals the sum of its entries and its lots; every slot's ``booked`` equals its live bookings
and stays within capacity; every stock ≥ 0 and stock + sold = the stock seeded. Any violation raises.

    .venv/bin/python bench/scaleout.py [--minutes 3] [--clients 8]

Defaults to its own database and Redis numbers (``loyalty_bench_scaleout``, Redis 50 and 51).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("LOYALTY_BENCH_DB", "loyalty_bench_scaleout")
os.environ.setdefault("LOYALTY_BENCH_REDIS_DB", "50")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.security import sign_timestamped
from app.members.identifiers import vin_with_check_digit
from app.sync.samples import sample_delivery
from app.wechat import simulator
from bench.common import (
    BENCH_DB,
    BENCH_REDIS_DB,
    ROOT,
    VENV_BIN,
    LoadResult,
    bench_environment,
    flush_redis,
    free_port,
    fresh_database,
    gunicorn,
    pgbouncer,
)

APP_ID, TOKEN, DMS_SECRET = "wxbench0000000001", "benchtoken", "bench-dms-secret"
BENEFIT, ITEM, PRICE, POINTS_EACH = "home_test_drive", "scaleout_coupon", 100, 100_000
#: (label, weight): the mix each client cycles through.
MIX = (("callback", 4), ("dms", 3), ("balance", 4), ("booking", 1), ("redemption", 1))
RESEND_EVERY = 20


@dataclass
class Seeded:
    tokens: list[str]
    slot_ids: list[int]
    seats: int
    stock: int
    vehicles: int  # before the load


def seed(env: dict[str, str], members: int, slots: int, capacity: int, stock: int) -> Seeded:
    """The demo base (dealer D0101, advisor SA0101), ``members`` registered Diamond members with
    points and a mini-app session, ``slots`` test-drive slots of ``capacity`` seats, one coupon."""
    import datetime as dt

    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "demo", "seed"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    os.environ.update(env)
    import sqlalchemy as sa

    from app import create_app
    from app.benefits import catalog as benefit_catalog
    from app.benefits import slots as benefit_slots
    from app.core.clock import utcnow
    from app.core.db import db
    from app.dealers.models import Dealer
    from app.mall import catalog as mall_catalog
    from app.members import registration, sessions
    from app.members.models import Vehicle
    from app.points import ledger
    from app.tiers import policy

    app = create_app()
    with app.app_context():
        benefit_catalog.seed_defaults(actor="bench")
        dealer = db.session.scalar(sa.select(Dealer).where(Dealer.code == "D0101"))
        start = utcnow().replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
        slot_ids = [
            benefit_slots.publish_slot(
                dealer,
                service_type="test_drive",
                starts_at=start + dt.timedelta(hours=i),
                ends_at=start + dt.timedelta(hours=i, minutes=45),
                capacity=capacity,
                actor="bench",
            ).id
            for i in range(slots)
        ]
        mall_catalog.create_item(
            ITEM,
            {
                "kind": "coupon",
                "name": {"zh_CN": "扩容压测券", "en": "Scale-out coupon"},
                "description": {"zh_CN": ""},
                "points_price": PRICE,
                "stock": stock,
                "cost_fen": 1000,
                "eligible_tiers": [],
            },
            actor="cli:bench",
        )
        tokens = []
        for i in range(members):
            openid = f"o-so-member-{i}"
            identity = sessions.sign_in(openid, "session-key", None).identity
            member = registration.register(
                identity,
                policy_version=registration.POLICY_VERSION.value(),
                purposes=["service_notifications"],
                phone=f"136{i:08d}",
            ).member
            policy.change_tier(policy.get_state(member.id, lock=True), "diamond", "upgrade", 0, utcnow())
            ledger.earn(
                ledger.Earning(
                    member_id=member.id,
                    currency="reward",
                    points=POINTS_EACH,
                    idempotency_key=f"bench-scaleout-{i}",
                    source_type="bench",
                )
            )
            tokens.append(sessions.sign_in(openid, "session-key", None).token)
        db.session.commit()
        vehicles = db.session.scalar(sa.select(sa.func.count()).select_from(Vehicle))
    return Seeded(tokens, slot_ids, slots * capacity, stock, vehicles)


# --- the load -------------------------------------------------------------------------------


class Traffic:
    """One client's requests, built at send time (signatures carry the current time)."""

    def __init__(self, client: int, seeded: Seeded) -> None:
        self.client, self.seeded = client, seeded
        self.rng = random.Random(client)
        self.n = 0
        self.last_callback: bytes | None = None
        self.last_dms: bytes | None = None
        self.delivered_vins: list[str] = []
        self.sent: dict[str, int] = {"subscribes": 0, "deliveries": 0, "services": 0, "resends": 0}

    def next(self, kind: str) -> tuple[str, str, bytes, dict[str, str]]:
        self.n += 1
        return getattr(self, kind)()

    def callback(self) -> tuple[str, str, bytes, dict[str, str]]:
        if self.last_callback is not None and self.n % RESEND_EVERY == 0:
            body = self.last_callback  # WeChat retries a callback it got no answer to in time
            self.sent["resends"] += 1
        else:
            body = (
                f"<xml><ToUserName><![CDATA[{APP_ID}]]></ToUserName>"
                f"<FromUserName><![CDATA[o-so-{self.client}-{self.n}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                f"<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_adv:SA0101]]></EventKey></xml>"
            ).encode()
            self.last_callback = body
            self.sent["subscribes"] += 1
        query = "&".join(f"{k}={v}" for k, v in simulator.signed_query(TOKEN).items())
        return "POST", f"/wechat/callback?{query}", body, {"Content-Type": "text/xml"}

    def dms(self) -> tuple[str, str, bytes, dict[str, str]]:
        if self.last_dms is not None and self.n % RESEND_EVERY == 0:
            body = self.last_dms  # the DMS resends an event it got no answer to
            self.sent["resends"] += 1
        elif self.delivered_vins and self.rng.random() < 0.4:
            vin = self.rng.choice(self.delivered_vins)
            body = _json(
                {
                    "event_id": f"so-svc-{self.client}-{self.n}",
                    "type": "service.completed",
                    "occurred_at": _now_iso(),
                    "dealer_code": "D0101",
                    "payload": {
                        "repair_order_no": f"RO-SO-{self.client}-{self.n}",
                        "vin": vin,
                        "completed_on": _now_iso()[:10],
                        "mileage_km": 8_000 + self.n,
                        "parts_fen": 80_000,
                        "labour_fen": 40_000,
                    },
                }
            )
            self.sent["services"] += 1
        else:
            suffix = f"S{self.client:02d}{self.n:05d}"
            event = sample_delivery(
                phone=f"139{self.client:02d}{self.n:06d}", event_id=f"so-dlv-{self.client}-{self.n}", vin_suffix=suffix
            )
            self.delivered_vins.append(vin_with_check_digit("LFV2A21K", suffix))
            body = _json(event)
            self.sent["deliveries"] += 1
        self.last_dms = body
        return (
            "POST",
            "/api/v1/dms/events",
            body,
            {"Content-Type": "application/json", **sign_timestamped(DMS_SECRET, body)},
        )

    def _member(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rng.choice(self.seeded.tokens)}", "Content-Type": "application/json"}

    def balance(self) -> tuple[str, str, bytes, dict[str, str]]:
        return "GET", "/api/v1/me/points", b"", self._member()

    def booking(self) -> tuple[str, str, bytes, dict[str, str]]:
        slot = self.rng.choice(self.seeded.slot_ids)
        body = {"benefit": BENEFIT, "slot": slot, "request_id": f"so-book-{self.client}-{self.n}"}
        return "POST", "/api/v1/me/bookings", _json(body), self._member()

    def redemption(self) -> tuple[str, str, bytes, dict[str, str]]:
        body = {"item": ITEM, "quantity": 1, "request_id": f"so-redeem-{self.client}-{self.n}"}
        return "POST", "/api/v1/me/redemptions", _json(body), self._member()


def _json(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _now_iso() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _client(client: int, ports: list[int], seeded: Seeded, stop_at: float, queue: multiprocessing.Queue) -> None:
    traffic = Traffic(client, seeded)
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for port in ports]
    cycle = [kind for kind, weight in MIX for _ in range(weight)]
    random.Random(client).shuffle(cycle)
    results: dict[str, tuple[list[float], dict[int, int]]] = {kind: ([], {}) for kind, _ in MIX}
    sent, error = 0, None
    try:
        while time.time() < stop_at:
            kind = cycle[sent % len(cycle)]
            method, path, body, headers = traffic.next(kind)
            connection = connections[sent % len(connections)]
            started = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            latencies, statuses = results[kind]
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            sent += 1
    except Exception as exc:
        error = f"client {client}: {exc!r}"
    queue.put((results, traffic.sent, error))


# --- the processes --------------------------------------------------------------------------


def _worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """A ``flask jobs …`` process in its own process group (so the kill takes its work-horse too),
    its output appended to ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [str(VENV_BIN / "flask"), "--app", "wsgi", "jobs", *args],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def worker_errors(log: Path) -> list[str]:
    """Lines of the workers' output that report an error (a job that raised, a traceback)."""
    words = ("Traceback", "ERROR", "Error:", "failed")
    return [line for line in log.read_text(errors="replace").splitlines() if any(w in line for w in words)]


def _stop(process: subprocess.Popen) -> None:
    """A warm shutdown, as a supervisor does it: SIGTERM to the worker itself (its scheduler and
    work-horse children inherit RQ's handlers and must not get their own); then whatever is left
    of its process group is killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with suppress(ProcessLookupError):  # the group may be gone already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def running_job(pid: int) -> str | None:
    """What the RQ worker with main process ``pid`` is running now (``drain_inbox('wechat')``), if anything."""
    import redis
    from rq import Worker
    from rq.job import Job

    connection = redis.Redis(db=BENCH_REDIS_DB + 1)
    for worker in Worker.all(connection=connection):
        job_id = worker.get_current_job_id() if worker.pid == pid else None
        if job_id:
            job = Job.fetch(job_id, connection=connection)
            return f"{job.func_name.rsplit('.', 1)[-1]}{job.args!r}"
    return None


def busy_victim(workers: list[subprocess.Popen], patience: float = 10.0) -> tuple[int, str | None]:
    """The index of an RQ worker in the middle of a job (the first one, if none is within ``patience``)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        for index, process in enumerate(workers):
            job = running_job(process.pid)
            if job:
                return index, job
        time.sleep(0.2)
    return 0, None


def inbox_counts() -> dict[str, int]:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={BENCH_DB}") as conn:
        return dict(conn.execute("SELECT status, count(*) FROM inbound_events GROUP BY status").fetchall())


def wait_for_drain(timeout: float) -> tuple[dict[str, int], float]:
    started = time.monotonic()
    while True:
        counts = inbox_counts()
        if not counts.get("received") and not counts.get("failed"):
            return counts, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return counts, time.monotonic() - started
        time.sleep(1)


# --- the audit ------------------------------------------------------------------------------

#: (what must hold, a query that returns the rows breaking it)
CHECKS = (
    (
        "inbox: every event processed (none received, failed or dead)",
        "SELECT source, type, status, count(*) FROM inbound_events WHERE status <> 'processed' GROUP BY 1, 2, 3",
    ),
    (
        "points: one entry per idempotency key",
        "SELECT idempotency_key, count(*) FROM point_entries GROUP BY 1 HAVING count(*) > 1",
    ),
    (
        "points: an inbound event credits a member once per rule and kind",
        "SELECT source_event_id, member_id, currency, kind, rule_code, count(*) FROM point_entries"
        " WHERE source_event_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1",
    ),
    (
        "enrollment: one identity per openid, one member per identity",
        "SELECT app_id, openid, count(*), count(DISTINCT member_id) FROM wechat_identities GROUP BY 1, 2"
        " HAVING count(*) > 1 OR count(DISTINCT member_id) > 1",
    ),
    (
        "enrollment: every subscribed openid has a member",
        "SELECT openid FROM wechat_identities WHERE openid LIKE 'o-so-%' AND openid NOT LIKE 'o-so-member-%'"
        " AND member_id IS NULL",
    ),
    (
        "vehicles: one per VIN",
        "SELECT vin, count(*) FROM vehicles GROUP BY 1 HAVING count(*) > 1",
    ),
    (
        "balances: available + pending = the sum of the account's reward entries",
        "SELECT a.member_id, a.reward_available, a.reward_pending, coalesce(e.total, 0) FROM point_accounts a"
        " LEFT JOIN (SELECT member_id, sum(points) AS total FROM point_entries WHERE currency = 'reward'"
        " GROUP BY 1) e USING (member_id) WHERE a.reward_available + a.reward_pending <> coalesce(e.total, 0)",
    ),
    (
        "lots: available = spendable lots - debt, pending = pending and held lots, 0 <= remaining <= points",
        "SELECT a.member_id FROM point_accounts a LEFT JOIN (SELECT member_id,"
        " sum(remaining) FILTER (WHERE status = 'available') AS spendable,"
        " sum(remaining) FILTER (WHERE status IN ('pending', 'held')) AS pending,"
        " bool_or(remaining < 0 OR remaining > points) AS out_of_range FROM point_lots GROUP BY 1) l USING (member_id)"
        " WHERE a.reward_available <> coalesce(l.spendable, 0) - a.reward_debt"
        " OR a.reward_pending <> coalesce(l.pending, 0) OR coalesce(l.out_of_range, false)",
    ),
    (
        "slots: booked = live bookings, within capacity",
        "SELECT s.id, s.capacity, s.booked, count(b.id) FROM dealer_slots s"
        " LEFT JOIN bookings b ON b.slot_id = s.id AND b.status = 'booked' GROUP BY s.id"
        " HAVING s.booked <> count(b.id) OR s.booked > s.capacity OR s.booked < 0",
    ),
    (
        "bookings: one per (member, request id)",
        "SELECT member_id, request_id, count(*) FROM bookings GROUP BY 1, 2 HAVING count(*) > 1",
    ),
    (
        "mall: stock >= 0",
        "SELECT code, stock FROM mall_items WHERE stock < 0",
    ),
    (
        "mall: one order per (member, request id), and each paid order spent its points once",
        "SELECT member_id, request_id, count(*) FROM mall_orders GROUP BY 1, 2 HAVING count(*) > 1",
    ),
)


def audit(seeded: Seeded, sent: dict[str, int]) -> list[str]:
    """Every check's verdict; raises with all the failures if any."""
    import psycopg

    lines, failures = [], []
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={BENCH_DB}") as conn:
        for label, query in CHECKS:
            rows = conn.execute(query).fetchall()
            lines.append(f"{'ok  ' if not rows else 'FAIL'} {label}" + (f": {rows[:5]}" if rows else ""))
            if rows:
                failures.append(label)

        def one(query: str, *params: object) -> int:
            return conn.execute(query, params).fetchone()[0]

        counted = {
            "enrolled members from the load's subscribes": (
                one(
                    "SELECT count(*) FROM wechat_identities WHERE openid LIKE 'o-so-%%'"
                    " AND openid NOT LIKE 'o-so-member-%%' AND member_id IS NOT NULL"
                ),
                sent["subscribes"],
            ),
            "vehicles from the load's deliveries (new vehicles)": (
                one("SELECT count(*) FROM vehicles") - seeded.vehicles,
                sent["deliveries"],
            ),
            "stored service events": (
                one("SELECT count(*) FROM inbound_events WHERE source = 'dms' AND external_id LIKE 'so-svc-%%'"),
                sent["services"],
            ),
            "seats taken + refused bookings fit the seats": (
                one("SELECT sum(booked) FROM dealer_slots"),
                one("SELECT count(*) FROM bookings WHERE status = 'booked'"),
            ),
            "stock seeded = stock left + coupons sold": (
                seeded.stock,
                one(
                    "SELECT i.stock + coalesce(sum(o.quantity) FILTER (WHERE o.status <> 'cancelled'), 0)"
                    " FROM mall_items i LEFT JOIN mall_orders o ON o.item_id = i.id WHERE i.code = %s GROUP BY i.stock",
                    ITEM,
                ),
            ),
        }
        for label, (found, expected) in counted.items():
            good = found == expected
            lines.append(f"{'ok  ' if good else 'FAIL'} {label}: {found} (expected {expected})")
            if not good:
                failures.append(label)
        retried = one("SELECT count(*) FROM inbound_events WHERE attempts > 1")
        lines.append(f"     inbound events that needed more than one attempt: {retried}")
        sold = one("SELECT count(*) FROM mall_orders WHERE status <> 'cancelled'")
        booked = one("SELECT count(*) FROM bookings WHERE status = 'booked'")
        lines.append(f"     sold {sold} of {seeded.stock} coupons, booked {booked} of {seeded.seats} seats")
    for line in lines:
        print(line)
    if failures:
        raise SystemExit(f"AUDIT FAILED: {len(failures)} check(s): {failures}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--capacity", type=int, default=30)
    parser.add_argument("--stock", type=int, default=400)
    parser.add_argument("--server-connections", type=int, default=8, help="PgBouncer's server pool")
    parser.add_argument("--gunicorn-workers", type=int, default=1, help="worker processes per gunicorn server")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    args = parser.parse_args()

    direct = bench_environment(LOYALTY_WECHAT_APP_ID=APP_ID, LOYALTY_WECHAT_TOKEN=TOKEN, LOYALTY_DMS_SECRET=DMS_SECRET)
    fresh_database(direct)
    flush_redis()
    print(f"seeding {args.members} members, {args.slots}×{args.capacity} seats, {args.stock} coupons …", flush=True)
    seeded = seed(direct, args.members, args.slots, args.capacity, args.stock)

    seconds = args.minutes * 60
    with ExitStack() as stack:
        port = stack.enter_context(pgbouncer(BENCH_DB, args.server_connections))
        pooled = dict(
            direct,
            LOYALTY_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/{BENCH_DB}",
            LOYALTY_DB_POOLER="pgbouncer",
        )
        ports = [free_port(), free_port()]
        for web_port in ports:
            stack.enter_context(gunicorn("wsgi:app", pooled, web_port, args.gunicorn_workers, args.threads))
        log = Path(tempfile.mkdtemp(prefix="scaleout-workers-")) / "workers.log"
        workers = [_worker(pooled, log, "worker") for _ in range(3)] + [_worker(pooled, log, "cron")]
        stack.callback(lambda: [_stop(process) for process in workers])
        print(
            f"PgBouncer :{port} (transaction pooling, {args.server_connections} server connections), "
            f"gunicorn :{ports[0]} :{ports[1]}, 3 RQ workers + cron; {args.clients} clients for {seconds:.0f} s",
            flush=True,
        )

        queue: multiprocessing.Queue = multiprocessing.Queue()
        started = time.time()
        clients = [
            multiprocessing.Process(target=_client, args=(i, ports, seeded, started + seconds, queue))
            for i in range(args.clients)
        ]
        for client in clients:
            client.start()
        time.sleep(seconds / 2)
        index, job = busy_victim(workers[:3])
        victim = workers[index]
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its work-horse, mid-transaction
        victim.wait()
        workers[index] = _worker(pooled, log, "worker")
        print(
            f"t={time.time() - started:.0f} s: killed RQ worker pid {victim.pid} (SIGKILL) while it ran {job}, "
            "started a new one",
            flush=True,
        )
        results = [queue.get(timeout=seconds + 120) for _ in clients]
        elapsed = time.time() - started
        for client in clients:
            client.join()
        waiting = inbox_counts()
        counts, drained_in = wait_for_drain(args.drain_timeout)
        left = waiting.get("received", 0) + waiting.get("failed", 0)
        print(
            f"inbox at the end of the load {waiting}; {drained_in:.0f} s later {counts} "
            f"(the backlog drained at {left / max(drained_in, 1):.0f}/s by 3 workers)"
        )

    sent: dict[str, int] = {}
    per_kind: dict[str, LoadResult] = {}
    for kind, _weight in MIX:
        latencies = [value for by_kind, _, _ in results for value in by_kind[kind][0]]
        statuses: dict[int, int] = {}
        for by_kind, _, _ in results:
            for status, n in by_kind[kind][1].items():
                statuses[status] = statuses.get(status, 0) + n
        per_kind[kind] = LoadResult(kind, len(latencies), elapsed, latencies, statuses)
    errors = [error for _, _, error in results if error]
    if errors:
        raise SystemExit(f"load clients failed: {errors}")
    for _, client_sent, _ in results:
        for key, n in client_sent.items():
            sent[key] = sent.get(key, 0) + n
    total = sum(result.requests for result in per_kind.values())
    print()
    for result in per_kind.values():
        print(result.line())
    print(f"{'all':<28} {total / elapsed:9.1f} req/s over {elapsed:.0f} s; sent {sent}")
    expected = {"callback": {200}, "dms": {200, 202}, "balance": {200}, "booking": {201, 409}, "redemption": {201, 409}}
    unexpected = {k: r.statuses for k, r in per_kind.items() if not set(r.statuses) <= expected[k]}
    errors = worker_errors(log)
    print(f"worker log {log}: {len(errors)} error line(s)" + "".join(f"\n    {line}" for line in errors[:10]))
    print()
    audit(seeded, sent)
    if unexpected:
        raise SystemExit(f"unexpected statuses: {unexpected}")
    print("audit passed")
    flush_redis()


if __name__ == "__main__":
    main()
