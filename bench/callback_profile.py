"""Where a WeChat callback's CPU goes beyond the bare signature + XML endpoint: cProfile in-process
through the Flask test client against a PostgreSQL bench database (no gunicorn, no HTTP), and CPU µs
per request of this process and of its PostgreSQL backends, the floor and the callback alternating
in batches.

    .venv/bin/python bench/callback_profile.py [--requests 2000] [--batches 10] [--top 30] [--cpu]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.callback import APP_ID, TOKEN, subscribe
from bench.common import ROOT, VENV_BIN, bench_environment, flush_redis, fresh_database
from bench.miniapp import postgres_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="Profiled requests")
    parser.add_argument("--batches", type=int, default=10, help="Alternating floor/callback batches timed")
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time (time.process_time), not wall time")
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args()

    env = bench_environment(LOYALTY_WECHAT_APP_ID=APP_ID, LOYALTY_WECHAT_TOKEN=TOKEN)
    if not args.no_seed:
        fresh_database(env)
        seed = [str(VENV_BIN / "flask"), "--app", "wsgi", "demo", "seed"]
        subprocess.run(seed, cwd=ROOT, env=env, check=True, capture_output=True)
    flush_redis()
    os.environ.update(env)
    from bench.callback_app import app

    client = app.test_client()
    counter = iter(range(int(time.time()) * 100_000, 10**15))  # senders unique across runs (--no-seed)

    def call(path: str) -> None:
        method, url, body, headers = subscribe(next(counter), path)
        response = client.open(url, method=method, data=body, headers=headers)
        assert response.status_code == 200, response.get_data()

    floor, ours = "/bench/wechat-bare", "/wechat/callback"
    for _ in range(200):
        call(floor)
        call(ours)
    cpu = {floor: [], ours: []}
    pg = {floor: [], ours: []}
    for _ in range(args.batches):
        for path in (floor, ours):
            cpu_started, pg_started = time.process_time(), postgres_cpu()
            for _ in range(args.batch):
                call(path)
            cpu[path].append((time.process_time() - cpu_started) / args.batch * 1e6)
            pg[path].append((postgres_cpu() - pg_started) / args.batch * 1e6)
    for path in (floor, ours):
        print(
            f"{path}: CPU µs per request median {statistics.median(cpu[path]):.0f} "
            f"(min {min(cpu[path]):.0f}), PostgreSQL backends {statistics.median(pg[path]):.0f}"
        )
    total = {path: statistics.median(cpu[path]) + statistics.median(pg[path]) for path in (floor, ours)}
    print(f"CPU ratio floor/callback (process + backends): {total[floor] / total[ours]:.3f}")
    if args.top:
        with cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile() as profiler:
            for _ in range(args.requests):
                call(ours)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print("\n".join(out.getvalue().splitlines()[: 12 + args.top]))
    flush_redis()


if __name__ == "__main__":
    main()
