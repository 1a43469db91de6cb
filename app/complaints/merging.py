"""Complaints in a member merge (``members.merging``): every complaint moves to the survivor."""

from __future__ import annotations

from typing import Any

from app.complaints.models import Complaint
from app.members.merging import move_rows, participant
from app.members.models import Member


@participant("complaints", order=80)
def move_complaints(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    return {"complaints": move_rows(Complaint, survivor, merged)}
