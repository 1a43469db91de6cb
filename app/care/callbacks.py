"""Customer-service callback tasks (a churn-risk win-back call, a low benefit rating …): open →
claimed by one agent → closed with a note. A claim is one conditional UPDATE, so two agents cannot
both take a task."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from app.care.models import CallbackTask
from app.core import audit
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.i18n import _l
from app.members.models import Member


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


def listing(status: str, *, page: int, per_page: int, agent: Agent) -> tuple[list[dict], int]:
    """Tasks in ``status``, oldest first, with the member number to look the member up by (audited)."""
    query = sa.select(CallbackTask, Member.member_no).join(Member, Member.id == CallbackTask.member_id)
    query = query.where(CallbackTask.status == status)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(
        query.order_by(CallbackTask.created_at, CallbackTask.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    audit.record(
        actor=("staff", agent.actor),
        action="callback_tasks.listed",
        subject=("callback_tasks", status),
        details={"members": [task.member_id for task, _no in rows]},
    )
    return [{**_fields(task), "member_no": member_no} for task, member_no in rows], total


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
    columns = ("id", "reason", "period", "status", "created_at", "claimed_by", "claimed_at", "closed_at", "note")
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


def close(task_id: int, note: str, agent: Agent) -> CallbackTask:
    """Close a claimed task with what came of the call; only its agent (or a supervisor) may."""
    task = db.session.get(CallbackTask, task_id, with_for_update=True, populate_existing=True) or _task(task_id)
    if task.status != "claimed":
        raise Conflict(_l("Claim the callback task before closing it."))
    if task.claimed_by != agent.operator_id and not agent.supervisor:
        raise Forbidden(_l("Another agent holds this callback task."))
    task.status, task.note, task.closed_at = "closed", note, utcnow()
    audit.record(
        actor=("staff", agent.actor),
        action="callback_task.closed",
        subject=("member", task.member_id),
        details={"task": task.id},
    )
    return task
