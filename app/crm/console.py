"""The CRM's member-360 tab: what the CRM has of the member (last delivery, rows waiting, rows dead)."""

from __future__ import annotations

from typing import Any

from app.console.registry import Tab, TabContext, add_tab
from app.core.i18n import _l
from app.crm import outbox


def _crm_sync(context: TabContext) -> dict[str, Any]:
    return {"state": outbox.sync_state(context.member.id)}


def register_tabs() -> None:
    """Back-office plumbing: not shown to dealer managers."""
    add_tab(
        Tab(
            "crm",
            _l("CRM sync"),
            "console/tabs/crm.html",
            _crm_sync,
            roles=("agent", "supervisor", "operator"),
            order=90,
        )
    )
