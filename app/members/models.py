"""Member core: the member, WeChat identities, consent records, vehicles and ownership."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType
from app.core.security import EncryptedDate, EncryptedFloat, EncryptedText, cipher
from app.members.identifiers import normalize_address

MEMBER_STATUSES = ("pre_enrolled", "active", "frozen", "closed", "merged")
MERGE_STATUSES = ("requested", "applied", "rejected")
MERGE_SOURCES = ("crm", "console")
CUSTOMER_TYPES = ("private", "fleet", "taxi", "driving_school", "government")
ENROLLMENT_CHANNELS = (
    "purchase",
    "advisor_qr",
    "campaign_qr",
    "red_packet",
    "referral",
    "miniapp",
    "import",
    "cs",
)
LIFECYCLE_STAGES = ("new", "growing", "mature", "churn_risk", "churned")
GENDERS = ("male", "female", "unknown")
OWNERSHIP_ROLES = ("owner", "co_user", "family")
CONSENT_PURPOSES = ("privacy_policy", "service_notifications", "marketing", "dealer_sharing")
WECHAT_APP_KINDS = ("official", "miniapp")
CLAIM_STATUSES = ("pending", "approved", "rejected")


BIRTH_MONTH_DAY_COMMENT = (
    "MMDD of the encrypted birthday, in the clear for set-based birthday planning; not identifying without the year"
)


def address_index(address: str | None) -> str | None:
    """Blind index of a normalized address (``normalize_address``); None when nothing is left."""
    normalized = normalize_address(address) if address else ""
    return cipher().blind_index(normalized, "address") if normalized else None


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def month_day(day: dt.date | None) -> int | None:
    """MMDD of a date (``birth_month_day``); None for None."""
    return None if day is None else day.month * 100 + day.day


class Member(Base):
    __tablename__ = "members"

    id: Mapped[BigIntPK]
    member_no: Mapped[str] = mapped_column(sa.String(16), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pre_enrolled")
    #: Encrypted at rest; nothing looks members up by name (no blind index, no prefix search).
    name: Mapped[str | None] = mapped_column(EncryptedText)
    gender: Mapped[str | None] = mapped_column(sa.String(8))
    #: Encrypted at rest; the birthday-month multiplier reads it in Python (never filtered in SQL).
    birthday: Mapped[dt.date | None] = mapped_column(EncryptedDate)
    #: The birthday's month and day as MMDD (1203 for 3 December), in the clear, kept in step with
    #: ``birthday`` by ``_keep_birth_month_day`` (the one place it is set): the birthday planner
    #: selects by it in SQL, which the ciphertext cannot do. Without the year it does not identify
    #: anyone (one in 366 share it).
    birth_month_day: Mapped[int | None] = mapped_column(sa.SmallInteger, comment=BIRTH_MONTH_DAY_COMMENT)
    #: Changes after the first entry (at most one: the birthday month doubles service points).
    birthday_changes: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Encrypted at rest; ``phone_index`` is the blind index used for lookups and uniqueness.
    phone: Mapped[str | None] = mapped_column(EncryptedText)
    phone_index: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    city: Mapped[str | None] = mapped_column(sa.String(64))
    #: Home address, encrypted at rest; ``address_index`` is the blind index of its normalized form
    #: (``address_index()``), kept in step by ``_keep_address_index``: the household check compares it.
    address: Mapped[str | None] = mapped_column(EncryptedText)
    address_index: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    locale: Mapped[str] = mapped_column(sa.String(8), default="zh_CN")
    customer_type: Mapped[str] = mapped_column(sa.String(16), default="private")
    enrollment_channel: Mapped[str] = mapped_column(sa.String(16))
    enrolling_dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"), index=True)
    enrolling_staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"), index=True)
    #: The dealer the member prefers, as the CRM records it (``profile.updated``, last writer wins
    #: with the other profile fields): the default dealer for a booking that names none.
    preferred_dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"), index=True)
    #: End of the advisor's protection period: purchases before it are credited to that advisor.
    attribution_until: Mapped[dt.datetime | None]
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None]
    lifecycle_stage: Mapped[str] = mapped_column(sa.String(16), default="new")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: When the profile fields the CRM also edits (name, birthday, city, gender, address, preferred
    #: dealer) last changed here or were taken from the CRM: a CRM update stamped earlier is older
    #: than what we hold.
    profile_updated_at: Mapped[dt.datetime | None]
    #: Set with status ``merged``: the survivor this member was merged into (its number resolves there).
    merged_into_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"))

    identities: Mapped[list[WechatIdentity]] = relationship(back_populates="member")
    ownerships: Mapped[list[Ownership]] = relationship(
        back_populates="member", foreign_keys="Ownership.member_id", order_by="Ownership.started_on"
    )

    __table_args__ = (
        sa.CheckConstraint(_in("status", MEMBER_STATUSES), name="status"),
        sa.CheckConstraint(_in("customer_type", CUSTOMER_TYPES), name="customer_type"),
        sa.CheckConstraint(_in("enrollment_channel", ENROLLMENT_CHANNELS), name="enrollment_channel"),
        sa.CheckConstraint(_in("lifecycle_stage", LIFECYCLE_STAGES), name="lifecycle_stage"),
        sa.Index("ix_members_enrolled_at", "enrolled_at"),
        sa.Index("ix_members_birth_month_day", "birth_month_day"),
    )

    @validates("birthday")
    def _keep_birth_month_day(self, _key: str, birthday: dt.date | None) -> dt.date | None:
        """Every way a birthday is set (profile, registration, DMS, CRM, erasure) keeps MMDD in step."""
        self.birth_month_day = month_day(birthday)
        return birthday

    @validates("address")
    def _keep_address_index(self, _key: str, address: str | None) -> str | None:
        """Every way an address is set (profile, CRM, erasure) keeps its blind index in step."""
        self.address_index = address_index(address)
        return address

    @property
    def current_vehicles(self) -> list[Vehicle]:
        return [o.vehicle for o in self.ownerships if o.ended_on is None]


class WechatIdentity(Base):
    """An openid of one of our WeChat apps; may exist before its person becomes a member."""

    __tablename__ = "wechat_identities"

    id: Mapped[BigIntPK]
    member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    app_kind: Mapped[str] = mapped_column(sa.String(8))
    app_id: Mapped[str] = mapped_column(sa.String(32))
    openid: Mapped[str] = mapped_column(sa.String(64))
    unionid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    following: Mapped[bool] = mapped_column(default=False)
    followed_at: Mapped[dt.datetime | None]
    unfollowed_at: Mapped[dt.datetime | None]
    #: Last location WeChat reported (only with the member's permission in WeChat), encrypted.
    latitude: Mapped[float | None] = mapped_column(EncryptedFloat)
    longitude: Mapped[float | None] = mapped_column(EncryptedFloat)
    located_at: Mapped[dt.datetime | None]
    #: When the member last wrote to the account (an interaction; stamped at most once an hour).
    last_message_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    member: Mapped[Member | None] = relationship(back_populates="identities")

    __table_args__ = (
        sa.UniqueConstraint("app_id", "openid"),
        sa.CheckConstraint(_in("app_kind", WECHAT_APP_KINDS), name="app_kind"),
    )


class Consent(Base):
    """One consent decision (PIPL). Append-only: the last *recorded* row per purpose (highest id) is
    the current state. ``stated_at`` is when the partner says the decision was made (the DMS's
    ``accepted_at``); it is kept as evidence but never orders decisions, so a stated time cannot
    outrank a decision recorded after it."""

    __tablename__ = "consents"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    purpose: Mapped[str] = mapped_column(sa.String(24))
    granted: Mapped[bool]
    policy_version: Mapped[str] = mapped_column(sa.String(16))
    channel: Mapped[str] = mapped_column(sa.String(16))  # dms, miniapp, official, cs, import
    #: When we recorded it (our clock).
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: When the channel says the person decided (DMS ``accepted_at``); None when we saw it happen.
    stated_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.CheckConstraint(_in("purpose", CONSENT_PURPOSES), name="purpose"),
        sa.Index("ix_consents_member_purpose_id", "member_id", "purpose", "id"),
    )


def vin_index(vin: str) -> str:
    """Blind index of a VIN (upper case, no spaces): lookups and uniqueness, like ``phone_index``."""
    return cipher().blind_index(vin.strip().upper(), "vin")


def plate_index(plate: str) -> str:
    return cipher().blind_index(plate.replace(" ", "").upper(), "plate")


class Vehicle(Base):
    """A car. VIN and plate are encrypted; ``vin_index`` / ``plate_index`` (set whenever they are)
    are the blind indexes lookups use; the VIN's uniqueness is the index's."""

    __tablename__ = "vehicles"

    id: Mapped[BigIntPK]
    vin: Mapped[str] = mapped_column(EncryptedText)
    vin_index: Mapped[str] = mapped_column(sa.String(64), unique=True)
    model_code: Mapped[str] = mapped_column(sa.String(32))
    model_name: Mapped[str] = mapped_column(sa.String(64))
    model_year: Mapped[int | None]
    purchase_date: Mapped[dt.date | None]
    price_fen: Mapped[int | None] = mapped_column(BigIntType)
    selling_dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    plate: Mapped[str | None] = mapped_column(EncryptedText)
    plate_index: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    last_mileage_km: Mapped[int | None]
    last_service_on: Mapped[dt.date | None]
    #: The odometer at the latest ``service.completed`` (the maintenance planner counts from it).
    last_service_km: Mapped[int | None]
    #: End of the latest insurance policy the DMS reported (``insurance.renewed``), and its insurer.
    insurance_ends_on: Mapped[dt.date | None] = mapped_column(index=True)
    insurer: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    ownerships: Mapped[list[Ownership]] = relationship(back_populates="vehicle", order_by="Ownership.started_on")

    @validates("vin")
    def _index_vin(self, _key: str, vin: str) -> str:
        self.vin_index = vin_index(vin)
        return vin

    @validates("plate")
    def _index_plate(self, _key: str, plate: str | None) -> str | None:
        self.plate_index = None if plate is None else plate_index(plate)
        return plate


class Ownership(Base):
    """Who drives which car, in which role, from when to when. A resale ends one and starts another."""

    __tablename__ = "ownerships"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    vehicle_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("vehicles.id"), index=True)
    role: Mapped[str] = mapped_column(sa.String(8), default="owner")
    started_on: Mapped[dt.date]
    ended_on: Mapped[dt.date | None]
    end_reason: Mapped[str | None] = mapped_column(sa.String(32))
    #: Who the sale is credited to (an advisor's protection period can override the seller).
    credited_dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    credited_staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"))
    source_event_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("inbound_events.id"))
    #: The DMS sales order that started it; an order cancellation ends it.
    order_no: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship(back_populates="ownerships", foreign_keys=[member_id])
    vehicle: Mapped[Vehicle] = relationship(back_populates="ownerships")

    __table_args__ = (
        sa.CheckConstraint(_in("role", OWNERSHIP_ROLES), name="role"),
        # Race guards: one current owner per car, one open link per (car, member).
        sa.Index(
            "uq_ownerships_current_owner",
            "vehicle_id",
            unique=True,
            postgresql_where=sa.text("role = 'owner' AND ended_on IS NULL"),
            sqlite_where=sa.text("role = 'owner' AND ended_on IS NULL"),
        ),
        sa.Index(
            "uq_ownerships_open_link",
            "vehicle_id",
            "member_id",
            unique=True,
            postgresql_where=sa.text("ended_on IS NULL"),
            sqlite_where=sa.text("ended_on IS NULL"),
        ),
    )


class VehicleServicing(Base):
    """A dealer that serviced a car (DMS ``service.completed``), one row per (car, dealer): the
    *servicing dealer* of the back-office visibility rule (``members/access.py``)."""

    __tablename__ = "vehicle_servicings"

    vehicle_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("vehicles.id"), primary_key=True)
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"), primary_key=True)
    first_serviced_on: Mapped[dt.date]
    last_serviced_on: Mapped[dt.date]

    __table_args__ = (sa.Index("ix_vehicle_servicings_dealer", "dealer_id", "vehicle_id"),)


class EnrollmentToken(Base):
    """A one-time token an advisor shows as a QR code; scanning it binds WeChat to the member.

    The token is a bearer secret: only its SHA-256 is stored. The plaintext exists only when the
    code is shown (``services.issue_order_secret`` draws a fresh one, replacing the previous).
    """

    __tablename__ = "enrollment_tokens"

    id: Mapped[BigIntPK]
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    purpose: Mapped[str] = mapped_column(sa.String(16), default="order")
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    vehicle_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("vehicles.id"))
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"))
    source_event_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("inbound_events.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]

    member: Mapped[Member] = relationship()
    vehicle: Mapped[Vehicle | None] = relationship()


class MiniappSession(Base):
    __tablename__ = "miniapp_sessions"

    id: Mapped[BigIntPK]
    identity_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("wechat_identities.id"), index=True)
    #: WeChat's session key (decrypts data the mini-app sends); encrypted, never leaves the server.
    session_key: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: When the person signed in: refreshes carry it over, the absolute lifetime counts from it.
    signed_in_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    replaced_by_id: Mapped[int | None] = mapped_column(BigIntType)


class VehicleClaim(Base):
    __tablename__ = "vehicle_claims"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    #: Encrypted; ``vin_index`` is its blind index (lookups, one open claim per car and member).
    vin: Mapped[str] = mapped_column(EncryptedText)
    vin_index: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    plate: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(sa.String(64))
    decided_at: Mapped[dt.datetime | None]
    note: Mapped[str | None] = mapped_column(sa.String(255))
    #: The dealer the claim is routed to for verification (the member's choice, else the car's
    #: selling dealer, else the enrolling dealer); None: customer service at HQ.
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"), index=True)
    #: Claimed while the VIN already had its cap of other members' pending claims: only HQ reviews it.
    escalated: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    __table_args__ = (
        sa.CheckConstraint(f"status IN {CLAIM_STATUSES}", name="status"),
        # The race guard: one open claim per (car, member). Other members may claim the same car
        # (a member is never told someone else did); staff see the competing claims side by side.
        sa.Index(
            "uq_vehicle_claims_open_vin_member",
            "vin_index",
            "member_id",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )

    @validates("vin")
    def _index_vin(self, _key: str, vin: str) -> str:
        self.vin_index = vin_index(vin)
        return vin


class StaffInvite(Base):
    __tablename__ = "staff_invites"

    id: Mapped[BigIntPK]
    staff_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("staff.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class MemberMerge(Base):
    """Duplicates merged into a survivor: applied at once when the CRM says so, requested and then
    approved by a supervisor when it comes from the console. ``request_key`` makes it idempotent."""

    __tablename__ = "member_merges"

    id: Mapped[BigIntPK]
    request_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    survivor_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    merged_ids: Mapped[list[Any]]
    source: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(10), default="requested")
    reason: Mapped[str | None] = mapped_column(sa.String(255))
    requested_by: Mapped[str] = mapped_column(sa.String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(sa.String(64))
    applied_at: Mapped[dt.datetime | None]
    #: What each participant moved (row counts, points), for the audit trail and the console.
    summary: Mapped[dict[str, Any] | None]

    __table_args__ = (
        sa.CheckConstraint(_in("status", MERGE_STATUSES), name="status"),
        sa.CheckConstraint(_in("source", MERGE_SOURCES), name="source"),
    )


CONSENT_LEAD_STATUSES = ("open", "contacted", "converted", "declined")


class ConsentLead(Base):
    """A dealer-club member whose consent the club never recorded: not a member, a person for the
    dealer to contact for consent. Phone and name stay encrypted; one lead per (dealer, phone)."""

    __tablename__ = "consent_leads"

    id: Mapped[BigIntPK]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    phone: Mapped[str] = mapped_column(EncryptedText)
    phone_index: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str | None] = mapped_column(EncryptedText)
    vin: Mapped[str | None] = mapped_column(EncryptedText)
    vin_index: Mapped[str | None] = mapped_column(sa.String(64))
    import_run_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("import_runs.id"))
    row_no: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(10), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("dealer_id", "phone_index"),
        sa.CheckConstraint(_in("status", CONSENT_LEAD_STATUSES), name="status"),
    )
