"""The benefit catalog as program data, versioned like earning rule sets (``points/rulesets.py``):
a draft is copied from the version in force, edited as a whole, then published from a moment on,
which ends the previous version there. Every step is audited.

A pilot (``pilot_size``) is drawn when its version is published: the members whose
``md5(seed:member id)`` sort first, so the same seed over the same members draws the same cohort.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
import sqlalchemy as sa

from app.benefits.models import BINDINGS, DELIVERERS, FUNDERS, Benefit, BenefitCatalog, PilotMember
from app.core import after_commit, audit
from app.core.clock import utcnow
from app.core.db import db, detached_copy
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.core.schemas import BaseSchema, Length, Moment, OneOf, Range, identifier
from app.members.models import Member
from app.tiers.models import TIERS

LOCALES = ("zh_CN", "en")


class LocalizedText(ma.fields.Dict):
    """{"zh_CN": …, "en": …}: both languages required."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=ma.fields.String(validate=OneOf(LOCALES)), values=ma.fields.String(), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        missing = [locale for locale in LOCALES if not str(result.get(locale, "")).strip()]
        if missing:
            raise ma.ValidationError(str(_l("Give the text in: {locales}.").format(locales=", ".join(missing))))
        if any(len(text) > 500 for text in result.values()):
            raise ma.ValidationError(str(_l("Must be at most {max} characters.").format(max=500)))
        return result


class BenefitSchema(BaseSchema):
    """One catalog entry as operators edit it (HQ API and CLI)."""

    code = ma.fields.String(required=True, validate=identifier(32))
    name = LocalizedText(required=True)
    description = LocalizedText(required=True)
    eligible_tiers = ma.fields.List(ma.fields.String(validate=OneOf(TIERS)), required=True, validate=Length(min=1))
    quotas = ma.fields.Dict(
        keys=ma.fields.String(validate=OneOf(TIERS)),
        values=ma.fields.Integer(allow_none=True, validate=Range(min=1, max=1000)),
        load_default=dict,
        metadata={"description": "Uses per membership year by tier; null: unlimited"},
    )
    points_price = ma.fields.Integer(allow_none=True, load_default=None, validate=Range(min=1, max=10_000_000))
    transferable = ma.fields.Boolean(load_default=False)
    binding = ma.fields.String(load_default="member", validate=OneOf(BINDINGS))
    needs_slot = ma.fields.Boolean(load_default=False)
    service_type = ma.fields.String(allow_none=True, load_default=None, validate=identifier(32))
    delivered_by = ma.fields.String(load_default="dealer", validate=OneOf(DELIVERERS))
    cost_fen = ma.fields.Integer(load_default=0, validate=Range(min=0, max=100_000_000))
    funder = ma.fields.String(load_default="oem", validate=OneOf(FUNDERS))
    active_from = Moment(allow_none=True, load_default=None)
    active_to = Moment(allow_none=True, load_default=None)
    pilot_size = ma.fields.Integer(allow_none=True, load_default=None, validate=Range(min=1, max=10_000_000))
    pilot_seed = ma.fields.String(allow_none=True, load_default=None, validate=identifier(32))
    creates_lead = ma.fields.Boolean(load_default=False)
    birthday_only = ma.fields.Boolean(load_default=False)

    @ma.validates_schema
    def _consistent(self, data: dict[str, Any], **_kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        stray = sorted(set(data.get("quotas", {})) - set(data.get("eligible_tiers", [])))
        if stray:
            errors["quotas"] = [
                str(_l("A quota is given for a tier that is not eligible: {tiers}.").format(tiers=", ".join(stray)))
            ]
        unpaid = [t for t in data.get("eligible_tiers", []) if t not in data.get("quotas", {})]
        if unpaid and not data.get("points_price"):
            errors["points_price"] = [str(_l("Tiers without a quota need a points price."))]
        if data.get("needs_slot") and not data.get("service_type"):
            errors["service_type"] = [str(_l("A benefit that needs a slot needs a service type."))]
        if data.get("active_from") and data.get("active_to") and data["active_to"] <= data["active_from"]:
            errors["active_to"] = [str(_l("Must be after the start."))]
        if data.get("pilot_size") and not data.get("pilot_seed"):
            errors["pilot_seed"] = [str(_l("A pilot needs a seed to draw its members reproducibly."))]
        if errors:
            raise ma.ValidationError(errors)  # type: ignore[arg-type]


_schema = BenefitSchema()
_FIELDS = tuple(_schema.fields)


def _t(zh: str, en: str) -> dict[str, str]:
    return {"zh_CN": zh, "en": en}


#: SPEC §5 defaults: the first catalog ``flask benefits seed`` publishes.
DEFAULT_BENEFITS: list[dict[str, Any]] = [
    {
        "code": "home_test_drive",
        "name": _t("免费上门试乘试驾", "Free at-home test drive"),
        "description": _t(
            "顾问将新车开到您家门口，供您或亲友试乘试驾。",
            "An advisor brings a new car to your door for you or a friend to try.",
        ),
        "eligible_tiers": list(TIERS),
        "quotas": {"gold": 1, "platinum": 2, "diamond": 3},
        "points_price": 1000,
        "transferable": True,
        "needs_slot": True,
        "service_type": "test_drive",
        "cost_fen": 30000,
        "funder": "oem",
        "creates_lead": True,
    },
    {
        "code": "vip_lane",
        "name": _t("VIP保养专属通道", "VIP maintenance lane"),
        "description": _t("保养时走专属通道，优先接车。", "Your car goes through the priority lane at service visits."),
        "eligible_tiers": ["gold", "platinum", "diamond"],
        "quotas": {"gold": None, "platinum": None, "diamond": None},
        "needs_slot": True,
        "service_type": "maintenance",
        "funder": "dealer",
    },
    {
        "code": "pickup_dropoff",
        "name": _t("上门取送车", "Pick-up and drop-off"),
        "description": _t("保养维修时上门取车、送车。", "We collect your car for its service and bring it back."),
        "eligible_tiers": ["platinum", "diamond"],
        "quotas": {"platinum": 2, "diamond": 2},
        "needs_slot": True,
        "service_type": "pickup",
        "cost_fen": 15000,
        "funder": "oem",
    },
    {
        "code": "roadside_assistance",
        "name": _t("24小时道路救援", "24-hour roadside assistance"),
        "description": _t(
            "随车权益：车辆转让后由新车主继续享有。", "Belongs to the car: a new owner keeps what is left."
        ),
        "eligible_tiers": list(TIERS),
        "quotas": {tier: 4 for tier in TIERS},
        "binding": "car",
        "delivered_by": "partner",
        "cost_fen": 40000,
        "funder": "oem",
    },
    {
        "code": "annual_inspection",
        "name": _t("免费年检", "Free annual inspection"),
        "description": _t("每个会员年度一次免费代办年检。", "One free annual inspection per membership year."),
        "eligible_tiers": list(TIERS),
        "quotas": {tier: 1 for tier in TIERS},
        "needs_slot": True,
        "service_type": "inspection",
        "cost_fen": 10000,
        "funder": "dealer",
    },
    {
        "code": "birthday_labour_discount",
        "name": _t("生日当天工时优惠", "Birthday-day labour discount"),
        "description": _t(
            "生日当天进店保养，工时费享受优惠。", "A labour discount for a service visit on your birthday."
        ),
        "eligible_tiers": list(TIERS),
        "quotas": {tier: 1 for tier in TIERS},
        "funder": "dealer",
        "birthday_only": True,
    },
    {
        "code": "airport_lounge",
        "name": _t("机场贵宾厅", "Airport lounge"),
        "description": _t("使用积分兑换一次机场贵宾厅服务。", "One airport lounge visit, paid with points."),
        "eligible_tiers": list(TIERS),
        "quotas": {},
        "points_price": 2500,
        "delivered_by": "partner",
        "cost_fen": 20000,
        "funder": "partner",
    },
]


def get(catalog_id: int) -> BenefitCatalog:
    catalog = db.session.get(BenefitCatalog, catalog_id)
    if catalog is None:
        raise NotFound()
    return catalog


def list_catalogs(limit: int = 50) -> list[BenefitCatalog]:
    return list(db.session.scalars(sa.select(BenefitCatalog).order_by(BenefitCatalog.id.desc()).limit(limit)))


def in_force(at: dt.datetime | None = None) -> BenefitCatalog | None:
    """The published catalog version in force at ``at`` (now by default)."""
    at = at or utcnow()
    return db.session.scalar(
        sa.select(BenefitCatalog)
        .where(
            BenefitCatalog.status == "published",
            BenefitCatalog.effective_from <= at,
            sa.or_(BenefitCatalog.effective_to.is_(None), BenefitCatalog.effective_to > at),
        )
        .order_by(BenefitCatalog.effective_from.desc())
        .limit(1)
    )


#: How long a process reuses the catalog in force it read (every booking and catalog page asks).
#: A version published here is seen at once (the cache is dropped on publish and on its commit);
#: other processes see it within this many seconds.
CACHE_SECONDS = 5.0
_CHANGED_KEY = "benefit_catalog_changed_in"


@dataclass(frozen=True)
class _Snapshot:
    """The entries in force when read (copies that belong to no session), and until when."""

    benefits: tuple[Benefit, ...]
    effective_from: dt.datetime | None
    effective_to: dt.datetime | None
    read_at: float  # time.monotonic()

    def serves(self, at: dt.datetime) -> bool:
        if time.monotonic() - self.read_at >= CACHE_SECONDS:
            return False
        if self.effective_from is None:  # nothing was in force
            return True
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)


_cache: dict[str, _Snapshot] = {}
_cache_lock = threading.Lock()


def forget_cached() -> None:
    """Drop the process's copy of the catalog in force (on publish; tests between tests)."""
    with _cache_lock:
        _cache.clear()


def _changed_in_this_transaction() -> bool:
    session = db.session()
    changed_in = session.info.get(_CHANGED_KEY)
    return changed_in is not None and changed_in is session.get_transaction()


def benefits_in_force(at: dt.datetime | None = None) -> list[Benefit]:
    """The entries of the version in force at ``at`` (now), from the process's copy when it is
    fresh; the objects returned belong to the caller's session (merged without a read)."""
    at = at or utcnow()
    with _cache_lock:
        snapshot = _cache.get("in_force")
    if snapshot is not None and snapshot.serves(at) and not _changed_in_this_transaction():
        return [db.session.merge(benefit, load=False) for benefit in snapshot.benefits]
    catalog = in_force(at)
    benefits = list(catalog.benefits) if catalog else []
    if not _changed_in_this_transaction():  # a publish not yet committed is not shared
        fresh = _Snapshot(
            tuple(detached_copy(b) for b in benefits),
            catalog.effective_from if catalog else None,
            catalog.effective_to if catalog else None,
            time.monotonic(),
        )
        with _cache_lock:
            _cache["in_force"] = fresh
    return benefits


def benefit_in_force(code: str, at: dt.datetime | None = None) -> Benefit | None:
    at = at or utcnow()
    with _cache_lock:
        snapshot = _cache.get("in_force")
    if snapshot is not None and snapshot.serves(at) and not _changed_in_this_transaction():
        found = next((b for b in snapshot.benefits if b.code == code), None)
        return db.session.merge(found, load=False) if found is not None else None
    return next((b for b in benefits_in_force(at) if b.code == code), None)


def benefit_to_json(benefit: Benefit) -> dict[str, Any]:
    """The editable fields of an entry (what ``BenefitSchema`` loads)."""
    return {field: getattr(benefit, field) for field in _FIELDS}


def localized(text: dict[str, str], locale: str) -> str:
    return text.get(locale) or text.get("zh_CN") or next(iter(text.values()), "")


def validate_benefits(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated entries; field errors keyed by position, duplicate codes refused."""
    errors: dict[str, Any] = {}
    loaded = []
    for index, raw in enumerate(items):
        try:
            loaded.append(_schema.load(raw))
        except ma.ValidationError as err:
            errors[str(index)] = err.normalized_messages()
    codes = [item["code"] for item in loaded]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        errors["codes"] = [
            str(_l("Benefit codes must be unique in a catalog: {codes}").format(codes=", ".join(duplicates)))
        ]
    if errors:
        raise ValidationFailed(fields={"benefits": errors})
    return loaded


def draft_from_published(name: str, *, actor: str) -> BenefitCatalog:
    current = in_force()
    draft = BenefitCatalog(name=name, status="draft", based_on_id=current.id if current else None, created_by=actor)
    if current is not None:
        for position, benefit in enumerate(current.benefits):
            draft.benefits.append(Benefit(position=position, **benefit_to_json(benefit)))
    db.session.add(draft)
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="benefit_catalog.drafted",
        subject=("benefit_catalog", draft.id),
        details={"based_on": draft.based_on_id},
    )
    return draft


def replace_benefits(catalog: BenefitCatalog, items: list[dict[str, Any]], *, actor: str) -> BenefitCatalog:
    if catalog.status != "draft":
        raise Conflict(_l("Only a draft catalog can be edited."))
    loaded = validate_benefits(items)
    catalog.benefits.clear()
    db.session.flush()
    for position, item in enumerate(loaded):
        catalog.benefits.append(Benefit(position=position, **item))
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="benefit_catalog.edited",
        subject=("benefit_catalog", catalog.id),
        details={"benefits": len(loaded)},
    )
    return catalog


def publish(catalog: BenefitCatalog, *, actor: str, effective_from: dt.datetime | None = None) -> BenefitCatalog:
    """Put a draft in force from ``effective_from`` (now); the version before ends there."""
    if catalog.status != "draft":
        raise Conflict(_l("Only a draft catalog can be published."))
    if not catalog.benefits:
        raise ValidationFailed(fields={"benefits": [_l("A catalog needs at least one benefit.")]})
    start = effective_from or utcnow()
    if start < utcnow() - dt.timedelta(minutes=5):
        raise ValidationFailed(fields={"effective_from": [_l("A catalog cannot take effect in the past.")]})
    previous = db.session.scalars(
        sa.select(BenefitCatalog)
        .where(
            BenefitCatalog.status == "published",
            sa.or_(BenefitCatalog.effective_to.is_(None), BenefitCatalog.effective_to > start),
        )
        .with_for_update()
    ).all()
    for older in previous:
        if older.effective_from is not None and older.effective_from >= start:
            older.status = "retired"  # a future version that never took effect
        else:
            older.effective_to = start
    session = db.session()
    session.info[_CHANGED_KEY] = session.get_transaction()  # this unit of work reads its own catalog
    forget_cached()
    after_commit.defer(forget_cached)  # and the process's copy is read again once it is committed
    catalog.status = "published"
    catalog.effective_from = start
    catalog.published_by = actor
    catalog.published_at = utcnow()
    db.session.flush()
    for benefit in catalog.benefits:
        if benefit.pilot_size:
            draw_pilot(benefit)
    audit.record(
        actor=("staff", actor),
        action="benefit_catalog.published",
        subject=("benefit_catalog", catalog.id),
        details={"effective_from": start.isoformat(), "replaces": [o.id for o in previous]},
    )
    return catalog


def draw_pilot(benefit: Benefit) -> int:
    """Draw the cohort of a pilot once per (code, seed); returns its size."""
    assert benefit.pilot_size and benefit.pilot_seed
    where = (PilotMember.benefit_code == benefit.code, PilotMember.seed == benefit.pilot_seed)
    drawn = db.session.scalar(sa.select(sa.func.count()).select_from(PilotMember).where(*where)) or 0
    if drawn:
        return drawn
    eligible = Member.status.in_(("active", "frozen"))
    if db.dialect == "postgresql":
        order = sa.func.md5(sa.literal(f"{benefit.pilot_seed}:") + sa.cast(Member.id, sa.String))
        chosen = (
            sa.select(sa.literal(benefit.code), sa.literal(benefit.pilot_seed), Member.id, sa.literal(utcnow()))
            .where(eligible)
            .order_by(order, Member.id)
            .limit(benefit.pilot_size)
        )
        columns = ["benefit_code", "seed", "member_id", "drawn_at"]
        db.session.execute(sa.insert(PilotMember).from_select(columns, chosen))
    else:  # SQLite (make run) has no md5(): the same order, computed here
        ids = db.session.scalars(sa.select(Member.id).where(eligible)).all()
        ordered = sorted(ids, key=lambda i: (hashlib.md5(f"{benefit.pilot_seed}:{i}".encode()).hexdigest(), i))  # noqa: S324
        db.session.add_all(
            PilotMember(benefit_code=benefit.code, seed=benefit.pilot_seed, member_id=i)
            for i in ordered[: benefit.pilot_size]
        )
        db.session.flush()
    return db.session.scalar(sa.select(sa.func.count()).select_from(PilotMember).where(*where)) or 0


def in_pilot(benefit: Benefit, member_id: int) -> bool:
    if not benefit.pilot_size:
        return True
    return (
        db.session.scalar(
            sa.select(PilotMember.member_id).where(
                PilotMember.benefit_code == benefit.code,
                PilotMember.seed == benefit.pilot_seed,
                PilotMember.member_id == member_id,
            )
        )
        is not None
    )


def seed_defaults(*, actor: str) -> BenefitCatalog | None:
    """Publish the SPEC §5 defaults as the first catalog; nothing if a catalog is in force."""
    if in_force() is not None:
        return None
    draft = draft_from_published("SPEC §5 defaults", actor=actor)
    replace_benefits(draft, DEFAULT_BENEFITS, actor=actor)
    return publish(draft, actor=actor)
