"""Customer-service callback tasks (a churn-risk win-back call, a low benefit rating …): open →
claimed by one agent (notes on the way, append-only) → closed with a note and an outcome. A claim is
one conditional UPDATE, so two agents cannot both take a task. Tasks carry no dealer: they are HQ
customer service's work."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from app.care.models import CALLBACK_OUTCOMES, CallbackTask, CallbackTaskNote
from app.core import audit
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.i18n import _l
from app.members.models import Member
from app.operators.models import Operator


@dataclass(frozen=True)
class Agent:
    """Who works the task: the operator's id, their audit actor and whether they supervise."""

    operator_id: int
    actor: str
    supervisor: bool


def open_task(member_id: int, reason: str, period: str) -> None:
    """Open a task, once per (member, reason, period): a rerun or a repeated event adds none."""
    insert_if_absent(
        CallbackTask,
        {"member_id": member_id, "reason": reason, "period": period, "status": "open", "created_at": utcnow()},
        ("member_id", "reason", "period"),
    )


def listing(status: str, *, page: int, per_page: int, agent: Agent, mine: bool = False) -> tuple[list[dict], int]:
    """Tasks in ``status`` (``mine``: those the agent holds), oldest first, with the member number
    to look the member up by (audited)."""
    query = (
        sa.select(CallbackTask, Member.member_no, Operator.name)
        .join(Member, Member.id == CallbackTask.member_id)
        .outerjoin(Operator, Operator.id == CallbackTask.claimed_by)
    )
    query = query.where(CallbackTask.status == status)
    if mine:
        query = query.where(CallbackTask.claimed_by == agent.operator_id)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(
        query.order_by(CallbackTask.created_at, CallbackTask.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    audit.record(
        actor=("staff", agent.actor),
        action="callback_tasks.listed",
        subject=("callback_tasks", status),
        details={"members": [task.member_id for task, _no, _name in rows]},
    )
    return [{**_fields(task), "member_no": no, "claimed_by_name": name} for task, no, name in rows], total


def tasks_of(member_id: int, *, page: int, per_page: int) -> tuple[list[dict], int]:
    """The member's callback tasks, newest first (the member 360; its read is audited there)."""
    query = sa.select(CallbackTask).where(CallbackTask.member_id == member_id)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.order_by(CallbackTask.created_at.desc(), CallbackTask.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return [_fields(task) for task in rows], total


def _fields(task: CallbackTask) -> dict:
    columns = (
        "id",
        "member_id",
        "reason",
        "period",
        "status",
        "created_at",
        "claimed_by",
        "claimed_at",
        "closed_at",
        "note",
        "outcome",
    )
    return {name: getattr(task, name) for name in columns}


def _task(task_id: int) -> CallbackTask:
    task = db.session.get(CallbackTask, task_id, populate_existing=True)
    if task is None:
        raise NotFound(_l("No such callback task."))
    return task


def claim(task_id: int, agent: Agent) -> CallbackTask:
    """Take an open task; a task someone else holds is a 409."""
    taken = db.session.execute(
        sa.update(CallbackTask)
        .where(CallbackTask.id == task_id, CallbackTask.status == "open")
        .values(status="claimed", claimed_by=agent.operator_id, claimed_at=utcnow())
        .returning(CallbackTask.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    task = _task(task_id)
    if taken is None:
        raise Conflict(_l("This callback task is already taken."))
    audit.record(actor=("staff", agent.actor), action="callback_task.claimed", subject=("member", task.member_id))
    return task


def _text(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > 500:
        raise ValidationFailed(fields={field: [_l("Write at most 500 characters.")]})
    return value


def _held(task_id: int, agent: Agent) -> CallbackTask:
    """The task locked, if it is claimed and the agent holds it (or supervises)."""
    task = db.session.get(CallbackTask, task_id, with_for_update=True, populate_existing=True) or _task(task_id)
    if task.status != "claimed":
        raise Conflict(_l("Claim the callback task first."))
    if task.claimed_by != agent.operator_id and not agent.supervisor:
        raise Forbidden(_l("Another agent holds this callback task."))
    return task


def add_note(task_id: int, body: str, agent: Agent) -> CallbackTaskNote:
    """Write down how the calls go (no answer, call back after 18:00 …); notes are never edited."""
    body = _text(body, "body")
    task = _held(task_id, agent)
    note = CallbackTaskNote(task_id=task.id, author_id=agent.operator_id, author=agent.actor, body=body)
    db.session.add(note)
    db.session.flush()
    audit.record(
        actor=("staff", agent.actor),
        action="callback_task.noted",
        subject=("member", task.member_id),
        details={"task": task.id, "note": note.id},
    )
    return note


def notes_of(task_ids: list[int]) -> dict[int, list[CallbackTaskNote]]:
    """The notes of these tasks, oldest first, by task id."""
    found: dict[int, list[CallbackTaskNote]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        rows = db.session.scalars(
            sa.select(CallbackTaskNote)
            .where(CallbackTaskNote.task_id.in_(task_ids))
            .order_by(CallbackTaskNote.created_at, CallbackTaskNote.id)
        )
        for row in rows:
            found[row.task_id].append(row)
    return found


def close(task_id: int, note: str, agent: Agent, outcome: str | None = None) -> CallbackTask:
    """Close a claimed task with what came of the call; only its agent (or a supervisor) may.
    ``outcome`` is one of ``CALLBACK_OUTCOMES`` (the console requires it; the API may leave it out)."""
    note = _text(note, "note")
    if outcome is not None and outcome not in CALLBACK_OUTCOMES:
        raise ValidationFailed(fields={"outcome": [_l("Choose what came of the call.")]})
    task = _held(task_id, agent)
    task.status, task.note, task.outcome, task.closed_at = "closed", note, outcome, utcnow()
    audit.record(
        actor=("staff", agent.actor),
        action="callback_task.closed",
        subject=("member", task.member_id),
        details={"task": task.id, "outcome": outcome},
    )
    return task
