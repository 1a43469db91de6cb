"""Telling members: one Notification row per message, planned, then sent once.

Kinds: ``tier_upgrade`` (at once, SPEC §4), ``tier_dropped`` (after a review), chat replies, and
the reminders the planners write (``care.planning``). Sent on the first channel that reaches the
member (``care.channels``: mini-app subscribe message, template message, SMS), only with the consent
the kind's category needs and not to a member who opted out of it (``care.preferences``), marketing
kinds within the frequency caps (``care.caps``). ``TEMPLATESENDJOBFINISH`` and subscribe-message
send events record the delivery result.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from app import gateways
from app.care import caps, channels, dispatch, preferences, rendering, rules
from app.care.models import Notification
from app.core import tunables
from app.core.clock import to_business, utcnow
from app.core.db import db, insert_all_if_absent, insert_if_absent, memo_in_transaction, remember_in_transaction
from app.core.i18n import in_locale, normalize_locale
from app.jobs import job
from app.members.models import Member

log = logging.getLogger(__name__)

TEMPLATE_IDS = channels.TEMPLATE_IDS
CONCURRENCY = tunables.define(
    "care.send_concurrency",
    8,
    "Messages one dispatcher has in flight at once (worker threads calling WeChat or the SMS provider); "
    "also the most marketing messages it lets through per batch",
)
LANES = tunables.define(
    "care.dispatch_lanes",
    1,
    "Batches one dispatcher works on at once (threads, each its own session): with 2 the next batch is "
    "claimed and checked while the current one's calls are in flight; the lanes share the dispatcher's "
    "care.send_concurrency calls in flight",
)
TEXTS = tunables.define(
    "care.texts",
    {},
    "Operators' wording per kind and locale, over the catalogs: {kind: {locale: {field: text}}}, e.g. "
    "{'anniversary': {'zh_CN': {'remark': '…'}}}; fields not given keep the catalog's text",
)


def _tier_notice(from_tier: str | None, to_tier: str, reason: str, at: dt.datetime) -> Notice | None:
    kind = {"upgrade": "tier_upgrade", "review_drop": "tier_dropped"}.get(reason)
    if kind is None:
        return None
    return Notice(kind, f"{to_tier}:{to_business(at).date()}", {"from_tier": from_tier, "to_tier": to_tier})


def tier_changed(member_id: int, from_tier: str | None, to_tier: str, reason: str, at: dt.datetime) -> None:
    notice = _tier_notice(from_tier, to_tier, reason, at)
    if notice is None or memo_in_transaction(_planned_key(member_id, notice), lambda: False, models=()):
        return  # planned already with its batch (``tier_changes_coming``)
    queue_all(member_id, [notice])


def tier_changes_coming(changes: Sequence[tuple[int, str | None, str, str, dt.datetime]]) -> None:
    """Plan the notices of many tier changes (a review's chunk: member, from, to, reason, at) in
    one INSERT; each change's own ``tier_changed`` then finds its notice planned in this transaction."""
    planned = []
    for member_id, from_tier, to_tier, reason, at in changes:
        notice = _tier_notice(from_tier, to_tier, reason, at)
        if notice is not None:
            planned.append((member_id, notice))
    _queue_many(planned)
    for member_id, notice in planned:
        remember_in_transaction(_planned_key(member_id, notice), True, models=())


def _planned_key(member_id: int, notice: Notice) -> tuple:
    return ("tier_notice_planned", member_id, notice.kind, notice.period)


def queue(member_id: int, kind: str, *, period: str, payload: dict, due_at: dt.datetime | None = None) -> int | None:
    """Plan one notification per (member, kind, period). Due now, it is sent by a job after the
    commit; due later (a reminder's day, or after quiet hours), by the dispatcher. A member without
    the consent the kind needs, or who opted out of its category, gets a ``skipped`` row, no send.
    Returns the new row's id (None: planned already)."""
    return queue_all(member_id, [Notice(kind, period, payload, due_at)])[0]


@dataclass(frozen=True)
class Notice:
    """One notification to plan (``queue``): due now unless ``due_at``."""

    kind: str
    period: str
    payload: dict
    due_at: dt.datetime | None = None


def queue_all(member_id: int, planned: Sequence[Notice]) -> list[int | None]:
    """``queue`` several notifications of one member in one INSERT (a booking's confirmation and
    its reminder); the new ids in order, None where that (kind, period) was planned already."""
    return _queue_many([(member_id, item) for item in planned])


def _queue_many(planned: Sequence[tuple[int, Notice]]) -> list[int | None]:
    """``queue_all`` for notices of several members, in one INSERT."""
    now = utcnow()
    rows = []
    for member_id, item in planned:
        refusal = preferences.why_not_wanted(member_id, item.kind)  # consents and opt-outs: read once
        rows.append(
            {
                "member_id": member_id,
                "kind": item.kind,
                "channel": (channels.order_for(item.kind) or [channels.OFFICIAL_TEMPLATE])[0],
                "status": "planned" if refusal is None else "skipped",
                "error": refusal,
                "dedupe_key": f"{item.kind}:{member_id}:{item.period}",
                "period": item.period,
                "payload": item.payload,
                "attempts": 0,
                "created_at": now,
                "due_at": rules.outside_quiet_hours(item.kind, item.due_at or now),
            }
        )
    new = insert_all_if_absent(Notification, rows, ("dedupe_key",))
    ids = [new.get((row["dedupe_key"],)) for row in rows]
    for notification_id, row in zip(ids, rows, strict=True):
        if notification_id is not None and row["status"] == "planned" and row["due_at"] <= now:
            send_notification.after_commit(notification_id, job_id=f"notification-{notification_id}")
    return ids


def queue_chat_reply(openid: str, member_id: int | None, reply: dict, *, for_event: int) -> int | None:
    """A conversation answer that comes later (customer-service message, allowed for 48 hours after the
    member wrote or scanned): one per inbound event."""
    notification_id = insert_if_absent(
        Notification,
        {
            "member_id": member_id,
            "kind": "chat_reply",
            "channel": "official_custom",
            "status": "planned",
            "dedupe_key": f"chat_reply:{for_event}",
            "payload": reply,
            "openid": openid,
            "attempts": 0,
            "created_at": utcnow(),
            "due_at": utcnow(),
        },
        conflict_columns=("dedupe_key",),
    )
    if notification_id is not None:
        send_notification.after_commit(notification_id, job_id=f"notification-{notification_id}")
    return notification_id


@job("notifications")
def send_notification(notification_id: int) -> str:
    """Send one notification now if it is still planned, due and not paused (the dispatcher sends the rest)."""
    claimed = dispatch.claim(notification_id)
    if claimed is None:
        return "not due"
    return deliver(*claimed)


def deliver(notification_id: int, claimed_at: dt.datetime | None = None) -> str:
    """Send one claimed (``sending``) notification and record the outcome (``deliver_batch``)."""
    return deliver_batch([(notification_id, claimed_at)])[notification_id]


def deliver_batch(claims: Sequence[tuple[int, dt.datetime | None]], slots: Slots | None = None) -> dict[int, str]:
    """Send claimed (``sending``) notifications and record the outcomes; returns each one's
    (``done``: no longer ours; ``released``: given back unclaimed, see ``_prepare_batch``).

    1. The rows, locked, and what their rules need, in a few set queries (members, consents and
       opt-outs, openids, points expiring, the mall's recommendation inputs), not several queries
       per message: a message the member does not want or with nothing left to say is skipped, one
       inside quiet hours or over a marketing cap postponed, before any call.
    2. Up to ``care.send_concurrency`` messages in flight at once, from worker threads (partners
       only, no database). Each time calls finish, one transaction records their outcomes and the
       attempts of as many messages as may start (one conditional UPDATE: only rows still carrying
       this claim and never attempted), committed before those calls go out. So at any commit at
       most ``care.send_concurrency`` rows are attempted without an outcome on record.
    3. A failure goes back with a backoff until ``MAX_ATTEMPTS``, then fails with its reason.

    The rules are checked when the batch is prepared: a consent withdrawn or an opt-out made while
    the batch is being sent (seconds) applies from the next batch; so do changed program settings.

    ``slots``: the calls in flight the dispatcher's lanes share (``send_due``); by default the batch's own."""
    with tunables.frozen():
        return _deliver_batch(claims, slots or Slots(max(1, int(CONCURRENCY.value()))))


class Slots:
    """The calls a dispatcher may have in flight, shared by its lanes. A slot is taken before a
    call's attempt is committed and given back only once its outcome is committed (or reused by the
    attempt committed with it), so that a dead dispatcher leaves at most this many rows attempted
    without an outcome, whatever its lanes were doing."""

    def __init__(self, width: int) -> None:
        self._free = width
        self._changed = threading.Condition()

    def take(self, wanted: int, *, at_least: int = 0) -> int:
        """Up to ``wanted`` slots; waits until ``at_least`` are free."""
        with self._changed:
            self._changed.wait_for(lambda: self._free >= at_least)
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    def give_back(self, count: int) -> None:
        if count:
            with self._changed:
                self._free += count
                self._changed.notify_all()


def _deliver_batch(claims: Sequence[tuple[int, dt.datetime | None]], slots: Slots) -> dict[int, str]:
    stamps = dict(claims)
    outcomes = dict.fromkeys(stamps, "done")
    rows = db.session.scalars(
        sa.select(Notification)
        .where(Notification.id.in_(sorted(stamps)))
        .order_by(Notification.id)
        .with_for_update()
        .execution_options(populate_existing=True)  # claimed by a statement the session did not see
    ).all()
    ready = _prepare_batch([row for row in rows if _still_ours(row, stamps[row.id])], outcomes)
    width = max(1, int(CONCURRENCY.value()))
    partners, app = gateways.installed(), current_app._get_current_object()  # type: ignore[attr-defined]

    def send(item: tuple[Notification, channels.Route]) -> channels.Outcome | None:
        with app.app_context():  # the partners' clients may read settings; the session is not used
            try:
                return channels.call(item[1], partners)
            except Exception:  # a bug: the row stays "sending", attempted, for the sweeper
                log.exception("sending notification %s failed", item[1].notification_id)
                return None

    waiting, in_flight = deque(ready), {}
    finished: list[tuple[tuple[Notification, channels.Route], channels.Outcome | None]] = []
    # the marketing messages (first in line) all start in the first commit, which releases their caps' locks
    first_wave = sum(1 for notification, _route in ready if rules.category_of(notification.kind) == "marketing")
    held = 0  # slots of this batch: its calls in flight and the finished ones not yet recorded
    try:
        with ThreadPoolExecutor(width) if len(ready) > 1 else nullcontext() as pool:
            while waiting or in_flight or finished:
                for (notification, planned), outcome in finished:
                    outcomes[notification.id] = (
                        "unknown" if outcome is None else _record(notification, planned, outcome)
                    )
                reused = min(len(finished), len(waiting), width - len(in_flight))
                must = max(first_wave - reused, 1 if waiting and not in_flight and not reused else 0)
                taken = slots.take(min(width - len(in_flight), len(waiting)) - reused, at_least=must)
                held, first_wave = held + taken, 0
                starting = [waiting.popleft() for _ in range(reused + taken)]
                starting = _mark_attempts(starting, stamps, outcomes)
                db.session.commit()  # outcomes in, attempts on record before the calls (and cap locks released)
                slots.give_back(held - len(in_flight) - len(starting))  # recorded, or not started after all
                held = len(in_flight) + len(starting)
                if pool is None:
                    finished = [(item, send(item)) for item in starting]
                    continue
                in_flight.update({pool.submit(send, item): item for item in starting})
                finished = []
                if in_flight:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    finished = [(in_flight.pop(future), future.result()) for future in done]
        db.session.commit()  # skips and holds, when nothing was to be sent
    finally:
        slots.give_back(held)  # (after a bug: the attempted rows stay "sending" for the sweeper)
    return outcomes


#: A claimed row put back unclaimed, for the next batch (see ``_prepare_batch``).
RELEASED = "released"


def _prepare_batch(rows: list[Notification], outcomes: dict[int, str]) -> list[tuple[Notification, channels.Route]]:
    """Check and render the batch; returns the messages to send with their routes, the marketing
    ones first. Their attempts are all in the first commit, which also releases the caps' member
    locks: a dispatcher lets at most ``care.send_concurrency`` marketing messages through per batch
    and gives the rest back unclaimed (``RELEASED``, taken again by the next claim)."""
    if not rows:
        return []
    member_ids = {row.member_id for row in rows if row.member_id is not None}
    members = db.session.scalars(sa.select(Member).where(Member.id.in_(sorted(member_ids)))).all()
    # the members are now in the session's identity map: the renderers' and channels' look-ups need no query
    found = {member.id for member in members}
    wishes, reach = preferences.wishes_of(found), channels.reach_of(found)
    width, now = max(1, int(CONCURRENCY.value())), utcnow()
    let_through: dict[int, int] = {}
    ready = []
    with rendering.preloaded(rows):
        for row in rows:
            marketing = rules.category_of(row.kind) == "marketing"
            if marketing and sum(let_through.values()) >= width:
                row.status, row.claimed_at, outcomes[row.id] = "planned", None, RELEASED
                continue
            data = None
            if row.channel != channels.OFFICIAL_CUSTOM:
                member_wishes = wishes.get(row.member_id)  # type: ignore[arg-type]
                data = _prepare(row, member_wishes, now, pending=let_through.get(row.member_id, 0))  # type: ignore[arg-type]
            if row.status != "sending":  # skipped or postponed before any call
                outcomes[row.id] = row.status
                continue
            if marketing:
                let_through[row.member_id] = let_through.get(row.member_id, 0) + 1  # type: ignore[index]
            ready.append((row, channels.route(row, data, reach)))
    ready.sort(key=lambda item: rules.category_of(item[0].kind) != "marketing")  # stable
    return ready


def _mark_attempts(
    starting: list[tuple[Notification, channels.Route]], stamps: dict[int, dt.datetime | None], outcomes: dict[int, str]
) -> list[tuple[Notification, channels.Route]]:
    """Record these messages' attempts (the caller commits), only on rows still claimed by this
    claim and never attempted; take their subscribe grants. Returns those that may be sent."""
    now, marked = utcnow(), set()
    by_stamp: dict[dt.datetime | None, list[int]] = {}
    for notification, _planned in starting:
        by_stamp.setdefault(stamps[notification.id], []).append(notification.id)
    for stamp, ids in by_stamp.items():
        statement = (
            sa.update(Notification)
            .where(Notification.id.in_(ids), Notification.status == "sending", Notification.attempted_at.is_(None))
            .values(attempted_at=now, attempts=Notification.attempts + 1)
            .returning(Notification.id)
            .execution_options(synchronize_session=False)
        )
        if stamp is not None:
            statement = statement.where(Notification.claimed_at == stamp)
        marked.update(db.session.scalars(statement))  # flushes the outcomes recorded before
    sendable = []
    for notification, planned in starting:
        if notification.id not in marked:
            outcomes[notification.id] = "done"
            continue
        set_committed_value(notification, "attempted_at", now)
        set_committed_value(notification, "attempts", notification.attempts + 1)
        channels.take_grant(planned)
        sendable.append((notification, planned))
    return sendable


def _record(notification: Notification, planned: channels.Route, outcome: channels.Outcome) -> str:
    channels.record(notification, planned, outcome)
    if outcome.error is not None:
        exc = outcome.error
        dispatch.retry_later(notification, f"{exc.code or type(exc).__name__}: {exc.message or exc}")
        return notification.status
    if outcome.channel is None:
        notification.channel = "none"  # counted apart in the delivery rates
        return _skip(notification, "no channel reaches the member: " + "; ".join(outcome.passed_over))
    return notification.status


def _still_ours(notification: Notification | None, claimed_at: dt.datetime | None) -> bool:
    """Still claimed, not attempted yet, and by this claim (a swept and re-claimed row is not)."""
    return (
        notification is not None
        and notification.status == "sending"
        and notification.attempted_at is None
        and (claimed_at is None or notification.claimed_at == claimed_at)
    )


def _prepare(
    notification: Notification, wishes: preferences.Wishes | None, now: dt.datetime, *, pending: int = 0
) -> rendering.TemplateData | None:
    """Check the member's rules and render; leaves the row ``sending`` only if it may go now.
    ``pending``: the member's marketing messages already let through in this batch."""
    refusal = preferences.refusal(notification.kind, wishes)
    if refusal is not None:
        _skip(notification, refusal)
        return None
    if (morning := rules.outside_quiet_hours(notification.kind, now)) != now:  # due before, reached late
        _hold(notification, morning, "postponed: quiet hours")
        return None
    if notification.kind not in rendering.RENDERERS:
        _skip(notification, f"no text for kind {notification.kind}")
        return None
    member = db.session.get(Member, notification.member_id)
    locale = normalize_locale(member.locale if member else None)
    with in_locale(locale):
        data = rendering.template_data(notification)
        if data is not None:  # as text now, in the member's locale (lazy texts would follow the sender's)
            data = {name: {key: str(value) for key, value in field.items()} for name, field in data.items()}
    overrides = TEXTS.value().get(notification.kind, {}).get(locale, {})
    if data is not None and overrides:
        data = {**data, **{field: {"value": str(text)} for field, text in overrides.items()}}
    if data is None:
        _skip(notification, "nothing to remind of any more")
        return None
    if rules.category_of(notification.kind) == "marketing":
        caps.lock_member(notification.member_id)  # type: ignore[arg-type]
        allowed_at = caps.next_allowed(notification, now, pending=pending)
        if allowed_at is None:
            return data
        if caps.too_late(notification, allowed_at):
            _skip(notification, "over the marketing frequency cap for too long")
        else:
            _hold(
                notification,
                rules.outside_quiet_hours(notification.kind, allowed_at),
                "postponed: marketing frequency cap",
            )
    return data


def _hold(notification: Notification, until: dt.datetime, reason: str) -> None:
    """Back to ``planned``, due ``until``; not an attempt."""
    notification.status, notification.claimed_at, notification.due_at = "planned", None, until
    notification.error = reason


def send_due(limit: int | None = None) -> int:
    """Claim due notifications in batches and send them until none is left (or ``limit``); returns
    how many were handled (a row released unclaimed is counted when it is handled). With
    ``care.dispatch_lanes`` > 1, that many lanes claim, check and send batches side by side, sharing
    ``care.send_concurrency`` calls in flight: one lane's batch is checked while another's calls
    are out."""
    lanes = max(1, int(LANES.value()))
    if lanes == 1:
        return _send_lane(_Budget(limit), None)
    budget, slots = _Budget(limit), Slots(max(1, int(CONCURRENCY.value())))
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def lane() -> int:
        with app.app_context():  # its own session
            return _send_lane(budget, slots)

    with ThreadPoolExecutor(lanes) as pool:
        return sum(future.result() for future in [pool.submit(lane) for _ in range(lanes)])


class _Budget:
    """How many more rows the lanes of one ``send_due`` may claim (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self._left, self._lock = limit, threading.Lock()

    def take(self, wanted: int) -> int:
        with self._lock:
            if self._left is None:
                return wanted
            taken = min(wanted, self._left)
            self._left -= taken
            return taken

    def give_back(self, count: int) -> None:
        with self._lock:
            if self._left is not None:
                self._left += count


def _send_lane(budget: _Budget, slots: Slots | None) -> int:
    handled = 0
    while wanted := budget.take(dispatch.BATCH_SIZE.value()):
        batch = dispatch.claim_batch(wanted)
        budget.give_back(wanted - len(batch))
        if not batch:
            break
        outcomes = _deliver_claimed(batch, slots)
        released = sum(1 for outcome in outcomes.values() if outcome == RELEASED)
        budget.give_back(released)
        handled += len(outcomes) - released
    return handled


def _deliver_claimed(batch: list[dispatch.Claim], slots: Slots | None = None) -> dict[int, str]:
    """The batch at once; if that raised (a bug, an outage), each row on its own, so that one bad
    row does not strand the rest."""
    try:
        return deliver_batch(batch, slots)
    except Exception:
        db.session.rollback()
        log.exception("a batch of %s notifications could not be delivered together; one by one", len(batch))
    outcomes = {}
    for notification_id, claimed_at in batch:
        try:
            outcomes[notification_id] = deliver_batch([(notification_id, claimed_at)], slots)[notification_id]
        except Exception as exc:
            db.session.rollback()
            log.exception("notification %s could not be delivered", notification_id)
            _give_up(notification_id, claimed_at, f"internal error: {type(exc).__name__}")
            outcomes[notification_id] = "failed"
    return outcomes


def _give_up(notification_id: int, claimed_at: dt.datetime, reason: str) -> None:
    """A row whose delivery raised: failed with the reason if never called, otherwise left for the
    sweeper (a call may have gone out). Best effort: with the database gone, the sweeper decides."""
    try:
        db.session.execute(
            sa.update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.status == "sending",
                Notification.claimed_at == claimed_at,
                Notification.attempted_at.is_(None),
            )
            .values(status="failed", error=reason[:255], finished_at=utcnow())
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not record the failure of notification %s", notification_id)


@job("notifications", timeout=600)
def send_due_notifications() -> int:
    """Every minute: send what is due (reminders at 09:00, messages held over quiet hours, retries)."""
    return send_due(limit=5_000)


def _skip(notification: Notification, reason: str) -> str:
    notification.status, notification.error, notification.finished_at = "skipped", reason[:255], utcnow()
    return notification.status


def record_delivery(msgid: int, status: str) -> bool:
    """A delivery report for a message WeChat accepted: TEMPLATESENDJOBFINISH ('success',
    'failed:user block', 'failed: system failed') or a subscribe-message send event ('success' or
    'failed:<ErrorStatus>'). A report for a row already finished by an earlier report changes nothing
    but the status text."""
    notification = db.session.scalar(sa.select(Notification).where(Notification.wechat_msgid == msgid))
    if notification is None:
        log.info("delivery report for unknown template msgid %s", msgid)
        return False
    notification.delivery_status = status[:32]
    notification.status = "delivered" if status == "success" else "failed"
    notification.finished_at = utcnow()
    return True
