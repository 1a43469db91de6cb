"""What the console shows, contributed by the packages: the member-360 tabs and the navigation.

A package adds its tab without editing the console: in its ``register(app)`` it imports its own
``console`` module (a channel module, ``app/<package>/console.py``), which calls ``add_tab`` with a
view function returning the tab template's context. The member page lists the tabs the signed-in
operator's role may see; the member is already resolved and its read audited when ``view`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from app.members.models import Member
from app.operators.models import ROLES, Operator


@dataclass(frozen=True)
class TabContext:
    """What a tab's view gets: who looks, at whom, whether personal data was revealed, the query args."""

    operator: Operator
    member: Member
    revealed: bool
    args: MultiDict

    def page(self) -> int:
        value = self.args.get("page", "1")
        return max(1, min(int(value), 10_000)) if value.isdigit() else 1


@dataclass(frozen=True)
class Tab:
    """One tab of the member 360: ``view(context)`` returns the context of ``template``."""

    name: str
    label: Any  # a lazy gettext string
    template: str
    view: Callable[[TabContext], dict[str, Any]]
    roles: tuple[str, ...] = ROLES
    order: int = 100


@dataclass(frozen=True)
class NavItem:
    """An entry of the top navigation (the dashboard of part 2 adds itself here)."""

    endpoint: str
    label: Any
    roles: tuple[str, ...] = ROLES
    order: int = 100
    values: dict[str, Any] = field(default_factory=dict)


_TABS: dict[str, Tab] = {}
_NAV: dict[str, NavItem] = {}


def add_tab(tab: Tab) -> None:
    """Add (or replace, by name: registering twice is harmless) a member-360 tab."""
    _TABS[tab.name] = tab


def add_nav(item: NavItem) -> None:
    _NAV[item.endpoint] = item


def tabs_for(operator: Operator) -> list[Tab]:
    return sorted((tab for tab in _TABS.values() if operator.role in tab.roles), key=lambda t: (t.order, t.name))


def nav_for(operator: Operator) -> list[NavItem]:
    return sorted((item for item in _NAV.values() if operator.role in item.roles), key=lambda i: (i.order, i.endpoint))
