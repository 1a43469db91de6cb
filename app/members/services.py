"""Member services: lookup, creation, consent, vehicles and ownership. They flush, never commit."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.core import events, tunables
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent, memo_in_transaction, remember_in_transaction
from app.core.errors import Conflict
from app.core.i18n import _l
from app.core.security import cipher, sha256_hex
from app.members.events import ConsentChanged, MemberChanged, OwnershipChanged
from app.members.identifiers import is_member_number, new_member_number, normalize_cn_mobile, normalize_vin
from app.members.models import Consent, EnrollmentToken, Member, Ownership, Vehicle, VehicleServicing, vin_index
from app.points.ledger import insert_account
from app.tiers.policy import remember_current_tier

ORDER_TOKEN_DAYS = tunables.define(
    "enrollment.order_token_days",
    30,
    "Days an order enrollment QR stays valid (WeChat caps temporary QR at 30)",
)
ATTRIBUTION_DAYS = tunables.define(
    "enrollment.attribution_days",
    90,
    "Advisor protection period: purchases within it credit the enrolling advisor",
)


def phone_index(phone: str) -> str:
    return cipher().blind_index(phone, "phone")


def find_by_phone(phone: str) -> Member | None:
    normalized = normalize_cn_mobile(phone)
    if normalized is None:
        return None
    return db.session.scalar(sa.select(Member).where(Member.phone_index == phone_index(normalized)))


def find_by_member_no(member_no: str) -> Member | None:
    """The member with this number; a merged-away number resolves to the member it was merged into."""
    member = db.session.scalar(sa.select(Member).where(Member.member_no == member_no))
    for _hop in range(8):  # follow a chain of merges (a survivor merged later), a few hops at most
        if member is None or member.merged_into_id is None:
            break
        member = db.session.get(Member, member.merged_into_id)
    return member


def find_member(query: str) -> Member | None:
    """A member by mobile number or member number (what an agent or advisor types).

    A mobile number is tried first: before member numbers started with 9 (mobiles start with 1),
    about one phone in ten also passed as a member number. New numbers can never be a mobile, so
    only a legacy member number that equals some member's phone resolves to that phone's holder.
    """
    query = query.strip().replace(" ", "")
    if normalize_cn_mobile(query) is not None:
        member = find_by_phone(query)
        if member is not None:
            return member
    if is_member_number(query):
        return find_by_member_no(query)
    return None


def set_phone(member: Member, phone: str) -> None:
    """Store a normalized mobile number encrypted, with its blind index."""
    member.phone = phone
    member.phone_index = phone_index(phone)


def claim_phone(member: Member, phone: str) -> None:
    """Give ``member`` this number unless another member holds it (409), even one who took it a
    moment ago in a concurrent request: the unique blind index decides, inside a savepoint."""
    holder = find_by_phone(phone)
    if holder is not None and holder.id != member.id:
        raise Conflict(_l("This phone number belongs to another membership. Please contact customer service."))
    try:
        with db.session.begin_nested():
            set_phone(member, phone)
            db.session.flush()
    except IntegrityError:
        raise Conflict(
            _l("This phone number belongs to another membership. Please contact customer service.")
        ) from None
    events.publish(MemberChanged(member.id))


def create_member(*, channel: str, status: str = "pre_enrolled", **fields: object) -> Member:
    """A new member with a fresh member number; attribution fields come in ``fields``.

    What this transaction now knows of the newcomer is remembered for it: no consents yet, no tier
    state yet (Silver), so the enrollment that follows (the welcome gift's rules, care's welcome)
    reads neither."""
    member_no = _free_member_number()
    phone = fields.pop("phone", None)
    member = Member(member_no=member_no, status=status, enrollment_channel=channel, **fields)
    if phone:
        set_phone(member, str(phone))
    db.session.add(member)
    db.session.flush()
    events.publish(MemberChanged(member.id))
    insert_account(member.id)  # created with the member: ledger writes then only lock it
    remember_in_transaction(("consent_state", member.id), ConsentState(None, {}), models=(Consent,))
    remember_current_tier(member.id, None)
    return member


_FREE_NUMBERS = "free_member_numbers"
NUMBER_DRAWS = 16


def _free_member_number() -> str:
    """A fresh member number nobody holds. Numbers are drawn ``NUMBER_DRAWS`` at a time and checked
    in one query, the free ones kept for this transaction's next members (a drain's batch of
    enrollments checks once). The unique constraint stays the arbiter: two transactions drawing the
    same random number at once (one in ~10^9) fail one of them, which is retried."""
    session = db.session()
    transaction = session.get_transaction()
    kept = session.info.get(_FREE_NUMBERS)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, [])
        session.info[_FREE_NUMBERS] = kept
    while not kept[1]:
        drawn = {new_member_number() for _draw in range(NUMBER_DRAWS)}
        taken = set(db.session.scalars(sa.select(Member.member_no).where(Member.member_no.in_(drawn))))
        kept[1].extend(sorted(drawn - taken))
    return kept[1].pop()


def attribution_deadline(start: dt.datetime) -> dt.datetime:
    return start + dt.timedelta(days=ATTRIBUTION_DAYS.value())


@dataclass(frozen=True)
class ConsentState:
    policy_version: str | None
    purposes: dict[str, bool]

    @property
    def accepted_policy(self) -> bool:
        return self.purposes.get("privacy_policy", False)


def _current_consents(member: Member) -> dict[str, Consent]:
    """The last recorded decision per purpose: the order of recording (id), never a stated time."""
    rows = db.session.scalars(sa.select(Consent).where(Consent.member_id == member.id).order_by(Consent.id))
    return {row.purpose: row for row in rows}


def consent_state(member: Member) -> ConsentState:
    """The current decision per purpose (the last one recorded). Read once per transaction (the
    sign-in check and each notification planned in a booking ask again) until a consent is written."""
    state = memo_in_transaction(("consent_state", member.id), lambda: _read_consent_state(member), models=(Consent,))
    return ConsentState(policy_version=state.policy_version, purposes=dict(state.purposes))


def _read_consent_state(member: Member) -> ConsentState:
    rows = db.session.scalars(sa.select(Consent).where(Consent.member_id == member.id).order_by(Consent.id))
    return _consent_state_of(rows)


def _consent_state_of(rows: Iterable[Consent]) -> ConsentState:
    purposes: dict[str, bool] = {}
    version = None
    for row in rows:
        purposes[row.purpose] = row.granted
        if row.purpose == "privacy_policy" and row.granted:
            version = row.policy_version
    return ConsentState(policy_version=version, purposes=purposes)


def preload_consent_states(member_ids: Iterable[int]) -> list[Member]:
    """The members and their ``consent_state`` read for many members in two queries and remembered
    for this transaction (a batch about to plan a notice for each); returns the members, which the
    caller keeps while it needs them in the session."""
    ids = sorted(set(member_ids))
    members = list(db.session.scalars(sa.select(Member).where(Member.id.in_(ids))))
    rows: dict[int, list[Consent]] = {member_id: [] for member_id in ids}
    for row in db.session.scalars(sa.select(Consent).where(Consent.member_id.in_(ids)).order_by(Consent.id)):
        rows[row.member_id].append(row)
    for member_id, consents in rows.items():
        remember_in_transaction(("consent_state", member_id), _consent_state_of(consents), models=(Consent,))
    return members


def record_consent(
    member: Member,
    *,
    policy_version: str,
    granted: Iterable[str],
    channel: str,
    at: dt.datetime | None = None,
    withdrawn: Iterable[str] = (),
    accept_policy: bool = True,
) -> list[Consent]:
    """Append the decisions that differ from the current state. Granting purposes implies accepting
    the policy, except when ``accept_policy`` is False (changing purposes under a policy already
    accepted).

    ``at`` is the time a partner states the decision was made (kept as ``stated_at``). A decision
    stated before the current one for its purpose was recorded is older news and is not recorded:
    a late DMS delivery cannot re-grant what the member withdrew since.
    """
    current = consent_state(member)
    latest = _current_consents(member) if at is not None else {}
    decisions = {**({"privacy_policy": True} if accept_policy else {}), **{p: True for p in granted}}
    decisions |= {p: False for p in withdrawn}
    rows = []
    for purpose, value in decisions.items():
        unchanged = current.purposes.get(purpose) == value
        if unchanged and (purpose != "privacy_policy" or current.policy_version == policy_version):
            continue
        previous = latest.get(purpose)
        if at is not None and previous is not None and at < previous.recorded_at:
            continue
        rows.append(
            Consent(
                member_id=member.id,
                purpose=purpose,
                granted=value,
                policy_version=policy_version,
                channel=channel,
                recorded_at=utcnow(),
                stated_at=at,
            )
        )
    db.session.add_all(rows)
    if rows:
        events.publish(ConsentChanged(member.id))
    return rows


def vehicle_by_vin(vin: str) -> Vehicle | None:
    return db.session.scalar(sa.select(Vehicle).where(Vehicle.vin_index == vin_index(normalize_vin(vin))))


def current_owner(vehicle: Vehicle) -> Ownership | None:
    return db.session.scalar(
        sa.select(Ownership).where(
            Ownership.vehicle_id == vehicle.id, Ownership.role == "owner", Ownership.ended_on.is_(None)
        )
    )


def record_service(vehicle: Vehicle, completed_on: dt.date, mileage_km: int) -> None:
    """A service visit (DMS ``service.completed``): the latest one dates the next maintenance; an
    older one arriving late changes nothing but the odometer's high-water mark."""
    if vehicle.last_service_on is None or completed_on >= vehicle.last_service_on:
        vehicle.last_service_on = completed_on
        vehicle.last_service_km = mileage_km
    vehicle.last_mileage_km = max(vehicle.last_mileage_km or 0, mileage_km)


def record_insurance(vehicle: Vehicle, ends_on: dt.date, insurer: str | None) -> None:
    """A policy the DMS sold (``insurance.renewed``): the latest end date is the one to remind of."""
    if vehicle.insurance_ends_on is None or ends_on >= vehicle.insurance_ends_on:
        vehicle.insurance_ends_on = ends_on
        vehicle.insurer = insurer


def start_ownership(
    member: Member,
    vehicle: Vehicle,
    *,
    started_on: dt.date,
    role: str = "owner",
    credited_dealer_id: int | None = None,
    credited_staff_id: int | None = None,
    source_event_id: int | None = None,
    order_no: str | None = None,
) -> tuple[Ownership, bool]:
    """Link a member to a car; an owner link ends the previous owner's (a resale).

    Returns the open ownership and whether it is new. Linking the same owner again is a no-op.
    """
    if role == "owner":
        previous = current_owner(vehicle)
        if previous is not None and previous.member_id == member.id:
            return previous, False
        if previous is not None:
            previous.ended_on = started_on
            previous.end_reason = "resale"
            events.publish(OwnershipChanged(previous.member_id, previous.id))
    existing = db.session.scalar(
        sa.select(Ownership).where(
            Ownership.vehicle_id == vehicle.id, Ownership.member_id == member.id, Ownership.ended_on.is_(None)
        )
    )
    if existing is not None:  # e.g. a co-user who now buys the car
        existing.ended_on = started_on
        existing.end_reason = "role_change"
    db.session.flush()  # end the old rows before the partial unique indexes see the new one
    ownership = Ownership(
        member_id=member.id,
        vehicle_id=vehicle.id,
        role=role,
        started_on=started_on,
        credited_dealer_id=credited_dealer_id,
        credited_staff_id=credited_staff_id,
        source_event_id=source_event_id,
        order_no=order_no,
    )
    db.session.add(ownership)
    db.session.flush()
    events.publish(OwnershipChanged(member.id, ownership.id))
    return ownership, True


def record_servicing(vehicle: Vehicle, dealer_id: int, on: dt.date) -> None:
    """This dealer serviced the car on that day (it becomes a *servicing dealer*). The primary key
    decides under concurrency; a later visit moves ``last_serviced_on`` forward, never back."""
    values = {"vehicle_id": vehicle.id, "dealer_id": dealer_id, "first_serviced_on": on, "last_serviced_on": on}
    if insert_if_absent(VehicleServicing, values, conflict_columns=("vehicle_id", "dealer_id")) is not None:
        return
    db.session.execute(
        sa.update(VehicleServicing)
        .where(VehicleServicing.vehicle_id == vehicle.id, VehicleServicing.dealer_id == dealer_id)
        .values(
            first_serviced_on=sa.case(
                (VehicleServicing.first_serviced_on > on, on), else_=VehicleServicing.first_serviced_on
            ),
            last_serviced_on=sa.case(
                (VehicleServicing.last_serviced_on < on, on), else_=VehicleServicing.last_serviced_on
            ),
        )
        .execution_options(synchronize_session=False)
    )


def open_enrollment_token(member: Member | None) -> EnrollmentToken | None:
    """The member's newest order enrollment token that is neither used nor expired."""
    if member is None:
        return None
    return db.session.scalar(
        sa.select(EnrollmentToken)
        .where(
            EnrollmentToken.member_id == member.id,
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > utcnow(),
        )
        .order_by(EnrollmentToken.created_at.desc())
        .limit(1)
    )


def mint_order_token(
    member: Member,
    *,
    vehicle: Vehicle | None,
    dealer_id: int | None,
    staff_id: int | None,
    source_event_id: int | None,
) -> EnrollmentToken:
    """The order enrollment token an advisor shows as a temporary QR (reused while unexpired)."""
    now = utcnow()
    existing = db.session.scalar(
        sa.select(EnrollmentToken).where(
            EnrollmentToken.member_id == member.id,
            EnrollmentToken.purpose == "order",
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > now,
            EnrollmentToken.vehicle_id == (vehicle.id if vehicle else None),
        )
    )
    if existing is not None:
        return existing
    token = EnrollmentToken(
        token_hash=sha256_hex(secrets.token_urlsafe(16)),  # nobody holds it until the code is shown
        purpose="order",
        member_id=member.id,
        vehicle_id=vehicle.id if vehicle else None,
        dealer_id=dealer_id,
        staff_id=staff_id,
        source_event_id=source_event_id,
        created_at=now,
        expires_at=now + dt.timedelta(days=ORDER_TOKEN_DAYS.value()),
    )
    db.session.add(token)
    db.session.flush()
    return token


def issue_order_secret(token: EnrollmentToken) -> str:
    """A fresh secret for an open order token, to show as a QR code now; only its hash is kept.

    Codes shown before stop working: whoever shows the code again invalidates the earlier copies.
    """
    secret = secrets.token_urlsafe(16)
    token.token_hash = sha256_hex(secret)
    db.session.flush()
    return secret


def order_token_by_secret(secret: str) -> EnrollmentToken | None:
    """The token a scanned secret belongs to, locked for the scan."""
    return db.session.scalars(
        sa.select(EnrollmentToken).where(EnrollmentToken.token_hash == sha256_hex(secret)).with_for_update()
    ).one_or_none()


def member_numbers(member_ids: Iterable[int]) -> dict[int, str]:
    """Member id → member number, for lists that hold ids."""
    ids = list(member_ids)
    if not ids:
        return {}
    return dict(db.session.execute(sa.select(Member.id, Member.member_no).where(Member.id.in_(ids))).all())
