"""DMS intake throughput: signed events/s through POST /api/v1/dms/events vs a bare endpoint.

Both endpoints run in the same gunicorn app, in the same run, driven by the same client. The
intake path verifies the HMAC signature, validates the event, writes the encrypted inbox row on
PostgreSQL and enqueues the processing job in Redis (no worker runs, so processing is excluded).

    .venv/bin/python bench/dms_intake.py [--events 4000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.security import sign_timestamped
from app.sync.samples import sample_delivery
from bench.common import (
    ROOT,
    VENV_BIN,
    bench_environment,
    flush_redis,
    fresh_database,
    gunicorn,
    report,
    run_load,
)

DMS_SECRET = "bench-dms-secret"


def signed_event(i: int) -> tuple[str, str, bytes, dict[str, str]]:
    body = json.dumps(
        sample_delivery(phone=f"137{i:08d}", event_id=f"bench-{i}", vin_suffix=f"B{i:07d}"),
        ensure_ascii=False,
    ).encode()
    headers = {"Content-Type": "application/json", **sign_timestamped(DMS_SECRET, body)}
    return "POST", "/api/v1/dms/events", body, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=5801)
    args = parser.parse_args()

    env = bench_environment(LOYALTY_DMS_SECRET=DMS_SECRET)
    fresh_database(env)
    flush_redis()
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "demo", "seed"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )

    events = [signed_event(i) for i in range(args.events + 200)]
    warmup, measured = events[:200], events[200:]
    bare = [("POST", "/bench/bare", body, headers) for _, _, body, headers in measured]

    with gunicorn("bench.dms_app:app", env, args.port):
        run_load("warm-up", args.port, warmup + bare[:200], args.concurrency)
        floor = run_load("bare endpoint (floor)", args.port, bare, args.concurrency)
        ours = run_load("DMS intake", args.port, measured, args.concurrency)
        floor_again = run_load("bare endpoint (again)", args.port, bare, args.concurrency)

    assert set(ours.statuses) == {202}, f"unexpected statuses {ours.statuses}"
    best_floor = max(floor.rate, floor_again.rate)
    report(
        [floor.line(), ours.line(), floor_again.line()],
        "DMS intake / bare endpoint throughput ratio",
        ours.rate / best_floor,
    )
    flush_redis()


if __name__ == "__main__":
    main()
