"""Run as ``python -m tests.care_dispatcher_probe DATABASE_URL REDIS_URL JOURNAL DIE_AFTER NOW``: a
dispatcher process that sends due notifications through a fake service account journaling every
call to JOURNAL, and exits hard (``os._exit``, no cleanup, no commit) right after WeChat "accepted"
its DIE_AFTER-th template message: the worst moment for a sender to die (its other calls of that
wave, sent from other threads, have then either reached WeChat before or never will). Its clock starts at NOW
(ISO 8601, the test's clock) and ticks."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
from pathlib import Path
from typing import Any

import time_machine

from app import create_app, gateways
from app.care import notify
from app.gateways.fakes import FakeOfficialAccount
from tests.conftest import DATA_KEY, WECHAT


class DyingOfficialAccount(FakeOfficialAccount):
    def __init__(self, journal: Path, die_after: int) -> None:
        super().__init__(journal)
        self.die_after = die_after
        self.accepting = threading.Lock()

    def send_template(self, openid: str, template_id: str, data: dict[str, Any], *, url: str | None = None) -> int:
        with self.accepting:  # one at a time, so that the journal holds exactly the calls WeChat accepted
            msgid = super().send_template(openid, template_id, data, url=url)
            if len(self.templates()) >= self.die_after:
                os._exit(3)  # WeChat has the message; our row will never hear of it (nor of the wave's others)
        return msgid


def main() -> None:
    database_url, redis_url, journal, die_after, now = sys.argv[1:6]
    time_machine.travel(dt.datetime.fromisoformat(now), tick=True).start()
    app = create_app(
        overrides={
            "ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "JOBS_MODE": "eager",
            "DATA_KEY": DATA_KEY,
            "LOG_LEVEL": "CRITICAL",
            **WECHAT,
        }
    )
    installed = gateways.installed(app)
    installed.official_account = DyingOfficialAccount(Path(journal), int(die_after))
    with app.app_context():
        notify.send_due()
    sys.exit(0)  # not reached when the dispatcher dies as planned


if __name__ == "__main__":
    main()
