"""Care's member-360 tabs: the notifications sent (with their delivery state) and callback tasks."""

from __future__ import annotations

from typing import Any

from app.care import callbacks, operations
from app.console.registry import Tab, TabContext, add_tab
from app.core.i18n import _l

PER_PAGE = 20


def _pages(total: int) -> int:
    return max(1, -(-total // PER_PAGE))


def _notifications(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = operations.history(context.member.id, page=page, per_page=PER_PAGE)
    return {"notifications": rows, "page": page, "pages": _pages(total), "total": total}


def _callback_tasks(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = callbacks.tasks_of(context.member.id, page=page, per_page=PER_PAGE)
    return {"tasks": rows, "page": page, "pages": _pages(total), "total": total}


def register_tabs() -> None:
    """Notifications for everyone who sees the member; callback tasks are customer service's work."""
    add_tab(Tab("notifications", _l("Notifications"), "console/tabs/notifications.html", _notifications, order=60))
    add_tab(
        Tab(
            "callbacks",
            _l("Callback tasks"),
            "console/tabs/callbacks.html",
            _callback_tasks,
            roles=("agent", "supervisor", "operator"),
            order=85,
        )
    )
