"""WeChat callback throughput: subscribe-with-scene enrollments/s through gunicorn, vs a bare endpoint
that only checks the signature and parses the XML (same app, same server, same run, in alternating
rounds), and p99 latency at a steady 300 requests/s.

Each request is a newcomer scanning an advisor's code: signature and window, hardened parse, the
encrypted inbox INSERT (group-committed; it also refuses a replayed nonce), the nudge to the drain
and the acknowledgement. The enrollment itself (identity, member with attribution, welcome points
through the rule engine and ledger, audit, the welcome message) is the drain's work, measured after
the load by 2 worker processes.

    .venv/bin/python bench/callback.py [--events 3000] [--concurrency 8]

``--drain-only`` measures just the drain: each round fills the inbox with ``--events`` scans at
once (rows as the callback stores them, no HTTP), then 2 worker processes drain it, timed from
the moment both are ready. With ``--compare <checkout>`` the rounds alternate between that
checkout's code (e.g. a worktree of main) and this one's, on the same database.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.wechat import simulator
from bench.common import (
    ROOT,
    VENV_BIN,
    bench_environment,
    flush_redis,
    fresh_database,
    gunicorn,
    report,
    run_interleaved,
    run_load,
    run_paced,
)

APP_ID, TOKEN = "wxbench0000000001", "benchtoken"


def subscribe(i: int, path: str = "/wechat/callback") -> tuple[str, str, bytes, dict[str, str]]:
    body = (
        f"<xml><ToUserName><![CDATA[{APP_ID}]]></ToUserName><FromUserName><![CDATA[o-bench-{i}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_adv:SA0101]]></EventKey></xml>"
    )
    query = simulator.signed_query(TOKEN)
    path_with_query = path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return "POST", path_with_query, body.encode(), {"Content-Type": "text/xml"}


DRAIN_WORKER = """
import sys, time
from app import create_app
from app.core.db import db
from app.jobs.drain import drain_inbox
app = create_app()
with app.app_context():
    db.session.execute(__import__("sqlalchemy").text("SELECT 1"))
    db.session.commit()
    print("ready", flush=True)
    sys.stdin.readline()
    done = 0
    while True:
        processed = drain_inbox("wechat")
        db.session.commit()
        done += processed
        if processed == 0:
            break
    print("done", done, flush=True)
"""


def run_drain_workers(env: dict[str, str], code_root: Path, workers: int = 2) -> tuple[int, float, float]:
    """Drain the wechat inbox with ``workers`` processes running the code at ``code_root`` (each
    runs ``DRAIN_WORKER``, the one drain loop): enrollments completed, seconds from the moment every
    worker was ready, and seconds from their start (app import included)."""
    spawned = time.perf_counter()
    worker_env = {**env, "PYTHONPATH": str(code_root)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", DRAIN_WORKER],
            cwd=code_root,
            env=worker_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    completed = 0
    for process in processes:
        assert process.stdout is not None
        completed += int(process.stdout.readline().split()[1])
    finished = time.perf_counter()
    for process in processes:
        process.wait()
    return completed, finished - started, finished - spawned


def _fill_inbox(env: dict[str, str], prefix: str, events: int) -> None:
    """Store ``events`` advisor-code scans of newcomers as the callback would (encrypted body, type,
    a unique dedupe key), in multi-row INSERTs."""
    os.environ.update(env)
    import sqlalchemy as sa

    from app import create_app
    from app.core.clock import utcnow
    from app.core.db import db
    from app.core.models import InboundEvent

    app = create_app()
    with app.app_context():
        now, rows = utcnow(), []
        for i in range(events):
            xml = subscribe(i)[2].replace(b"o-bench-", f"o-{prefix}-".encode())
            rows.append(
                {
                    "source": "wechat",
                    "external_id": f"{prefix}-{i}",
                    "type": "event.subscribe_scan",
                    "body": xml,  # encrypted by the column type
                    "occurred_at": now,
                    "received_at": now,
                    "status": "received",
                    "attempts": 0,
                }
            )
        for start in range(0, len(rows), 500):
            db.session.execute(sa.insert(InboundEvent.__table__), rows[start : start + 500])
        db.session.commit()


def drain_round(env: dict[str, str], code_root: Path, prefix: str, events: int, workers: int = 2) -> float:
    """Fill the inbox, then drain it with ``workers`` processes running the code at ``code_root``;
    enrollments completed per second, from the moment every worker is ready."""
    flush_redis()
    filler = multiprocessing.Process(target=_fill_inbox, args=(env, prefix, events))
    filler.start()
    filler.join()
    assert filler.exitcode == 0, "filling the inbox failed"
    completed, seconds, _ = run_drain_workers(env, code_root, workers)
    assert completed >= events, (completed, events)  # the demo seed leaves a few of its own
    return completed / seconds


def drain_only(args: argparse.Namespace) -> None:
    env = bench_environment(LOYALTY_WECHAT_APP_ID=APP_ID, LOYALTY_WECHAT_TOKEN=TOKEN)
    fresh_database(env)
    flush_redis()
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "demo", "seed"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    ours_root = ROOT
    drain_round(env, ours_root, "warm", 200)  # the first drain of a fresh database pays for its caches
    if args.compare:
        base_root = Path(args.compare).resolve()
        base_rates, our_rates = [], []
        for round_no in range(args.rounds):
            base_rates.append(drain_round(env, base_root, f"b{round_no}", args.events))
            our_rates.append(drain_round(env, ours_root, f"o{round_no}", args.events))
            print(
                f"round {round_no + 1}: {base_root.name} {base_rates[-1]:.1f}/s  {ours_root.name} "
                f"{our_rates[-1]:.1f}/s  ratio {our_rates[-1] / base_rates[-1]:.2f}",
                flush=True,
            )
        base_mean, our_mean = sum(base_rates) / len(base_rates), sum(our_rates) / len(our_rates)
        print(
            f"enrollments completed by 2 workers draining {args.events} scans: {base_root.name} {base_mean:.1f}/s, "
            f"{ours_root.name} {our_mean:.1f}/s (ratio {our_mean / base_mean:.2f}; per round "
            + " ".join(f"{o / b:.2f}" for o, b in zip(our_rates, base_rates, strict=True))
            + ")"
        )
    else:
        rates = [drain_round(env, ours_root, f"o{round_no}", args.events) for round_no in range(args.rounds)]
        print(
            f"enrollments completed by 2 workers draining {args.events} scans: "
            + " ".join(f"{rate:.1f}/s" for rate in rates)
        )
    flush_redis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6, help="Alternating floor/ours rounds")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the steady-rate run")
    parser.add_argument("--port", type=int, default=5802)
    parser.add_argument("--drain-only", action="store_true", help="Measure only the drain (no HTTP)")
    parser.add_argument("--compare", help="With --drain-only: alternate with the code of this checkout")
    args = parser.parse_args()
    if args.drain_only:
        drain_only(args)
        return

    env = bench_environment(LOYALTY_WECHAT_APP_ID=APP_ID, LOYALTY_WECHAT_TOKEN=TOKEN)
    fresh_database(env)
    flush_redis()
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "demo", "seed"], cwd=ROOT, env=env, check=True, capture_output=True
    )

    steady = int(args.rate * args.seconds)
    enrollments = [subscribe(i) for i in range(args.events + 200 + steady)]
    warmup, measured, paced = enrollments[:200], enrollments[200 : 200 + args.events], enrollments[200 + args.events :]
    bare = [subscribe(i, "/bench/wechat-bare") for i in range(args.events)]

    with gunicorn("bench.callback_app:app", env, args.port):
        run_load("warm-up", args.port, warmup + bare[:200], args.concurrency)
        labels = ("bare: signature + XML (floor)", "subscribe-with-scene enroll")
        floor, ours, ratios = run_interleaved(labels, args.port, bare, measured, args.concurrency, args.rounds)
        steady_run = run_paced(f"enrollments at {args.rate:.0f}/s", args.port, paced, args.rate)

    assert set(ours.statuses) == {200}, ours.statuses
    completed, _, seconds = run_drain_workers(env, ROOT, workers=2)  # timed from their start, as before
    report(
        [floor.line(), ours.line(), steady_run.line()],
        "callback enrollments / bare signature+parse throughput ratio",
        ours.rate / floor.rate,
        target=">= 0.5",
    )
    print(f"per round ({args.rounds} alternating rounds): " + " ".join(f"{ratio:.2f}" for ratio in ratios))
    print(
        f"p99 at a steady {args.rate:.0f} requests/s: {steady_run.percentile(99):.1f} ms "
        f"(p50 {steady_run.percentile(50):.1f} ms)"
    )
    print(
        f"enrollments completed by 2 workers draining the inbox: {completed / seconds:.1f}/s "
        f"({completed} in {seconds:.1f} s)"
    )
    flush_redis()


if __name__ == "__main__":
    main()
