"""How tiers are named and what they bring, in the member's language (chat, mini-app, notices)."""

from __future__ import annotations

from app.core.i18n import _l

TIER_NAMES = {
    "silver": _l("Silver"),
    "gold": _l("Gold"),
    "platinum": _l("Platinum"),
    "diamond": _l("Diamond"),
}

#: The benefits that tell tiers apart (SPEC §5 defaults); the benefit catalog has the details.
TIER_HIGHLIGHTS = {
    "silver": [
        _l("24-hour roadside assistance"),
        _l("Free annual inspection once a year"),
        _l("Home test drive with points"),
    ],
    "gold": [
        _l("24-hour roadside assistance"),
        _l("Free annual inspection once a year"),
        _l("VIP maintenance lane"),
        _l("1 free home test drive a year"),
        _l("10 percent extra reward points"),
    ],
    "platinum": [
        _l("24-hour roadside assistance"),
        _l("Free annual inspection once a year"),
        _l("VIP maintenance lane"),
        _l("2 free home test drives a year"),
        _l("Pick-up and drop-off service twice a year"),
        _l("20 percent extra reward points"),
    ],
    "diamond": [
        _l("24-hour roadside assistance"),
        _l("Free annual inspection once a year"),
        _l("VIP maintenance lane"),
        _l("3 free home test drives a year"),
        _l("Pick-up and drop-off service twice a year"),
        _l("30 percent extra reward points"),
    ],
}


def tier_name(tier: str) -> str:
    return str(TIER_NAMES.get(tier, tier))


def tier_highlights(tier: str) -> list[str]:
    return [str(item) for item in TIER_HIGHLIGHTS.get(tier, [])]
