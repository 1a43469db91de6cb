"""Program settings: the numbers operators tune without a deploy.

Each domain declares its settings next to the code that uses them::

    ATTRIBUTION_DAYS = tunables.define("enrollment.attribution_days", 90, "Advisor protection period")
    ...
    days = ATTRIBUTION_DAYS.value()

The default lives in code; an operator's override lives in ``program_settings`` and wins. Each
unit of work takes one snapshot of the overrides (kept on its session), so one request sees one
consistent set. Snapshots are shared by the process for ``SHARED_SECONDS``: a change made by an
operator reaches every process within that time, and hot paths do not read the table per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.core import audit
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import ProgramSettingRow


@dataclass(frozen=True)
class ProgramSetting:
    key: str
    default: Any
    description: str

    def value(self) -> Any:
        return get(self.key)

    def shared_value(self) -> Any:
        """``value``, without making a unit of work's session when none exists yet (a hot read
        that may need none: the balance read runs outside the session). See ``shared``."""
        return shared(self.key)


REGISTRY: dict[str, ProgramSetting] = {}
_CACHE_KEY = "program_settings"
_CHANGED_KEY = "program_settings_changed"
SHARED_SECONDS = 10.0
_shared: dict[str, Any] = {}  # {"at": monotonic time, "overrides": {...}}
_shared_lock = threading.Lock()


def define(key: str, default: Any, description: str) -> ProgramSetting:
    """Declare a setting (at import time of the owning module)."""
    if key in REGISTRY and REGISTRY[key].default != default:
        raise ValueError(f"program setting {key} declared twice with different defaults")
    setting = ProgramSetting(key, default, description)
    REGISTRY[key] = setting
    return setting


def _overrides() -> dict[str, Any]:
    session = db.session()
    cached = session.info.get(_CACHE_KEY)
    if cached is None:
        cached = _snapshot(session)
        session.info[_CACHE_KEY] = cached
    return cached


def _snapshot(session: Any) -> dict[str, Any]:
    """The process's recent snapshot, or a fresh read. A session that changed a setting reads its
    own (uncommitted) rows and does not share them."""
    changed_here = session.info.get(_CHANGED_KEY, False)
    with _shared_lock:
        if not changed_here and _shared and time.monotonic() - _shared["at"] < SHARED_SECONDS:
            return _shared["overrides"]
    rows = session.execute(sa.select(ProgramSettingRow.key, ProgramSettingRow.value))
    overrides = {key: value for key, value in rows}
    if not changed_here:
        with _shared_lock:
            _shared.update(at=time.monotonic(), overrides=overrides)
    return overrides


def forget_shared_snapshot() -> None:
    """Drop the process's snapshot (after a change here; tests call it between tests)."""
    with _shared_lock:
        _shared.clear()


def get(key: str) -> Any:
    setting = REGISTRY[key]
    frozen = _FROZEN.get()
    return (frozen if frozen is not None else _overrides()).get(key, setting.default)


def shared(key: str) -> Any:
    """``get`` from the process's snapshot while it is fresh, when this unit of work has no session
    yet: what ``get`` would return (a new session takes that same snapshot), minus the session it
    would make for it. Otherwise ``get``."""
    if _FROZEN.get() is None and not db.session.registry.has():
        with _shared_lock:
            if _shared and time.monotonic() - _shared["at"] < SHARED_SECONDS:
                return _shared["overrides"].get(key, REGISTRY[key].default)
    return get(key)


_FROZEN: ContextVar[dict[str, Any] | None] = ContextVar("tunables_frozen", default=None)


@contextmanager
def frozen() -> Iterator[None]:
    """Read every setting from one snapshot taken now, for a loop that reads them per item (a
    dispatcher's batch): a dictionary look-up each instead of the session's. Not for code that
    changes settings."""
    token = _FROZEN.set(dict(_overrides()))
    try:
        yield
    finally:
        _FROZEN.reset(token)


def set_value(key: str, value: Any, *, actor: tuple[str, str | int], reason: str | None = None) -> None:
    """Override a setting; the type must match the default's. Audited."""
    if key not in REGISTRY:
        raise KeyError(key)
    default = REGISTRY[key].default
    if type(value) is not type(default):
        raise TypeError(f"{key} takes {type(default).__name__}, not {type(value).__name__}")
    session = db.session()
    previous = get(key)
    row = session.get(ProgramSettingRow, key)
    if row is None:
        session.add(ProgramSettingRow(key=key, value=value, updated_by=f"{actor[0]}:{actor[1]}"))
    else:
        row.value = value
        row.updated_at = utcnow()
        row.updated_by = f"{actor[0]}:{actor[1]}"
    session.info.pop(_CACHE_KEY, None)
    session.info[_CHANGED_KEY] = True
    forget_shared_snapshot()
    audit.record(
        actor=actor,
        action="program_setting.changed",
        subject=("program_setting", key),
        reason=reason,
        details={"from": previous, "to": value},
    )
