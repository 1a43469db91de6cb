"""What the CRM tells us (``POST /api/v1/crm/events``, stored first, drained like the DMS's):

* ``profile.updated``: name, gender, birthday, city, address, preferred dealer (by code; one
  naming no open dealer is left as it was and noted in the outcome). **Last writer wins by
  time**: the CRM stamps each change with ``version`` (when it was made there); a member's
  ``profile_updated_at`` is when the profile last changed here or was taken from the CRM. An
  update stamped at or before it is older news and is ignored as a whole (a field group, not field
  by field: a name and birthday typed together stay together). A closed or merged member's profile is never refilled.
* ``consent.changed``: a call-center grant or withdrawal, through the same consent service as the
  mini-app (append-only; an older stated decision never overrides a newer recorded one).
* ``member.merged``: duplicates merged into a survivor, applied at once (``members/merging``),
  idempotent by the event id.
* ``dealer.changed`` / ``staff.changed``: HQ's master data (``dealers/master_data``, the same rules
  as the master-file import): an older change than the one applied is ignored; a record HQ must fix
  is kept as the event's outcome (``refused: field: reason``), not retried.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from app.core.inbox import InboundEvent
from app.dealers import master_data
from app.dealers.services import dealer_by_code
from app.jobs.drain import handles
from app.members import merging, privacy, registration
from app.members import services as members
from app.members.models import Member

SOURCE = "crm"
PROFILE_FIELDS = ("name", "gender", "birthday", "city", "address")


def _data(body: bytes) -> dict[str, Any]:
    return json.loads(body)["data"]


def _member(member_no: str) -> Member:
    member = members.find_by_member_no(member_no)
    if member is None:
        raise LookupError(f"unknown member number {member_no[:4]}…")
    return member


def _preferred_dealer(member: Member, code: str | None) -> str | None:
    """Set the preferred dealer from its code (None clears it); a code that names no open dealer
    leaves the one held and is the outcome's note (HQ fixes its record), never an error."""
    if not code:
        member.preferred_dealer_id = None
        return None
    dealer = dealer_by_code(code)
    if dealer is None or not dealer.active:
        return f"preferred_dealer {code[:16]} refused: {'closed' if dealer else 'unknown'} dealer"
    member.preferred_dealer_id = dealer.id
    return None


def apply_profile(member: Member, version: dt.datetime, changes: dict[str, Any]) -> str:
    """Take the CRM's profile fields unless what we hold is as new or newer."""
    if member.status in ("closed", "merged"):
        return f"ignored: member {member.status}"
    if member.profile_updated_at is not None and version <= member.profile_updated_at:
        return "ignored: older than the local change"
    for field in PROFILE_FIELDS:
        if field in changes:
            value = changes[field]
            setattr(member, field, dt.date.fromisoformat(value) if field == "birthday" and value else value)
    refused = _preferred_dealer(member, changes["preferred_dealer"]) if "preferred_dealer" in changes else None
    member.profile_updated_at = version
    return f"profile updated; {refused}" if refused else "profile updated"


@handles(SOURCE, "profile.updated")
def on_profile_updated(event: InboundEvent, body: bytes) -> str:
    data = _data(body)
    version = dt.datetime.fromisoformat(data["version"]).astimezone(dt.UTC)
    return apply_profile(_member(data["member_no"]), version, data)


@handles(SOURCE, "consent.changed")
def on_consent_changed(event: InboundEvent, body: bytes) -> str:
    data = _data(body)
    member = _member(data["member_no"])
    purpose, granted = data["purpose"], bool(data["granted"])
    decided_at = dt.datetime.fromisoformat(data["decided_at"]).astimezone(dt.UTC)
    if purpose == "privacy_policy" and not granted:
        privacy.withdraw_everything(member, channel="cs")
        return "policy withdrawn"
    rows = members.record_consent(
        member,
        policy_version=data.get("policy_version") or registration.POLICY_VERSION.value(),
        granted=[purpose] if granted else [],
        withdrawn=[] if granted else [purpose],
        channel="cs",
        at=decided_at,
        accept_policy=False,
    )
    return f"consent {purpose} {'granted' if granted else 'withdrawn'}" if rows else "consent unchanged"


@handles(SOURCE, "member.merged")
def on_member_merged(event: InboundEvent, body: bytes) -> str:
    data = _data(body)
    survivor = _member(data["survivor"])
    merged_ids = []
    for member_no in data["merged"]:
        merged = members.find_by_member_no(member_no)
        if merged is None:
            raise LookupError("unknown merged member number")
        if merged.id != survivor.id:
            merged_ids.append(merged.id)
    if not merged_ids:
        return "nothing to merge"
    record = merging.merge(survivor.id, merged_ids, request_key=f"crm:{event.external_id}"[:64], actor=("crm", "crm"))
    return f"merged {len(record.merged_ids)} into member {survivor.id}"


def _master(apply: Callable[..., master_data.Applied], body: bytes) -> str:
    data = _data(body)
    version = dt.datetime.fromisoformat(data["version"]).astimezone(dt.UTC)
    try:
        applied = apply(data, changed_at=version, actor=("crm", "crm"))
    except master_data.RecordProblem as problem:
        return f"refused: {problem.field}: {problem.code}"
    return applied.outcome


@handles(SOURCE, "dealer.changed")
def on_dealer_changed(event: InboundEvent, body: bytes) -> str:
    return "dealer " + _master(master_data.apply_dealer_change, body)


@handles(SOURCE, "staff.changed")
def on_staff_changed(event: InboundEvent, body: bytes) -> str:
    return "staff " + _master(master_data.apply_staff_change, body)
