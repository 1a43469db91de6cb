"""Shared by the care tests: a Shanghai daytime clock, so sends happen outside quiet hours whenever
the suite runs (quiet hours are checked when a message is planned and again when it is sent)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import time_machine

from app.core.clock import BUSINESS_TZ

#: 10:00 in Shanghai on a working day.
DAYTIME = dt.datetime(2026, 12, 2, 10, 0, tzinfo=BUSINESS_TZ)


@contextmanager
def at_daytime() -> Iterator[None]:
    """The clock at ``DAYTIME``, ticking (threads and subprocess probes see it move)."""
    with time_machine.travel(DAYTIME, tick=True):
        yield
