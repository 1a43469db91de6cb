"""The mall's part in a member merge (``members.merging``): redemption orders, vouchers and
sign-ins move to the survivor. An order whose request id the survivor already used, and a sign-in
on a day the survivor signed in too, stay with the merged member (their unique keys)."""

from __future__ import annotations

from typing import Any

from app.mall.models import RedemptionOrder, SignIn, Voucher
from app.members.merging import move_rows, participant
from app.members.models import Member


@participant("mall", order=80)
def move_mall(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    return {
        "orders": move_rows(RedemptionOrder, survivor, merged, unless_survivor_has=("request_id",)),
        "vouchers": move_rows(Voucher, survivor, merged),
        "sign_ins": move_rows(SignIn, survivor, merged, unless_survivor_has=("day",)),
    }
