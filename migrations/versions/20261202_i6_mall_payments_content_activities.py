"""mall: points + cash through WeChat Pay (orders awaiting payment, mall_payments); default earning
rules for the content activities (article read, content shared)

Revision ID: i6
Revises: i1
Create Date: 2026-12-02 19:10:00.000000
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from alembic import op

revision = "i6"
down_revision = "i1"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('created', 'fulfilled', 'completed', 'cancelled', 'expired')"
NEW_STATUSES = "status IN ('awaiting_payment', 'created', 'fulfilled', 'completed', 'cancelled', 'expired')"
OPEN = "status IN ('awaiting', 'refunding')"
RULE_SET_NAME = "内容活动奖励 Content activity rewards"
#: SPEC §3 activities: an article read counts once per article, a share once per content and day;
#: the caps per member and period are the rule's, tuned by operators like any other rule.
CONTENT_RULES = [
    {"code": "article_read", "name": "阅读文章", "event_type": "activity.article_read", "currency": "reward", "priority": 50, "conditions": {}, "formula": {"type": "fixed", "points": 10}, "caps": {"per_member": {"day": 30, "month": 300}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "content_shared", "name": "分享内容", "event_type": "activity.content_shared", "currency": "reward", "priority": 50, "conditions": {}, "formula": {"type": "fixed", "points": 20}, "caps": {"per_member": {"day": 40, "month": 400}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
]  # fmt: skip
RULE_COLUMNS = (
    "code", "name", "event_type", "currency", "priority", "stop_here", "conditions", "formula", "caps",
    "multipliers", "funder", "pending_days", "budget_points",
)  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("mall_orders") as batch:
        batch.drop_constraint(op.f("ck_mall_orders_status"), type_="check")
        batch.alter_column("status", type_=sa.String(length=16), existing_type=sa.String(length=10))
        batch.create_check_constraint(op.f("ck_mall_orders_status"), NEW_STATUSES)
    op.create_table(
        "mall_payments",
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("prepay_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", sa.String(length=32), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_id", sa.String(length=64), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_mall_payments_amount_positive")),
        sa.CheckConstraint(
            "status IN ('awaiting', 'paid', 'closed', 'refunding', 'refunded')", name=op.f("ck_mall_payments_status")
        ),
        sa.ForeignKeyConstraint(["order_id"], ["mall_orders.id"], name=op.f("fk_mall_payments_order_id_mall_orders")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_mall_payments")),
        sa.UniqueConstraint("out_trade_no", name=op.f("uq_mall_payments_out_trade_no")),
    )
    op.create_index(
        "ix_mall_payments_open",
        "mall_payments",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )
    _publish_content_rules()


def _tables() -> tuple[sa.TableClause, sa.TableClause]:
    rule_sets = sa.table(
        "rule_sets",
        sa.column("id", sa.BigInteger), sa.column("name", sa.String), sa.column("status", sa.String),
        sa.column("effective_from", sa.DateTime(timezone=True)), sa.column("effective_to", sa.DateTime(timezone=True)),
        sa.column("based_on_id", sa.BigInteger), sa.column("created_by", sa.String),
        sa.column("published_by", sa.String), sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)), sa.column("updated_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    rules = sa.table(
        "earning_rules",
        sa.column("rule_set_id", sa.BigInteger), *[sa.column(c) for c in RULE_COLUMNS[:6]],
        sa.column("conditions", sa.JSON), sa.column("formula", sa.JSON), sa.column("caps", sa.JSON),
        sa.column("multipliers", sa.JSON), sa.column("funder", sa.String), sa.column("pending_days", sa.Integer),
        sa.column("budget_points", sa.BigInteger),
    )  # fmt: skip
    return rule_sets, rules


def _publish_content_rules() -> None:
    """A new published rule set: the current one's rules plus the content activities' (the
    current set is history and is not edited)."""
    bind = op.get_bind()
    rule_sets, rules = _tables()
    now = datetime.datetime.now(datetime.UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    current = bind.execute(
        sa.select(rule_sets.c.id)
        .where(rule_sets.c.status == "published", rule_sets.c.effective_to.is_(None))
        .order_by(rule_sets.c.effective_from.desc())
        .limit(1)
    ).scalar_one_or_none()
    if current is None:
        return
    new_id = bind.execute(
        rule_sets.insert().returning(rule_sets.c.id),
        {"name": RULE_SET_NAME, "status": "published", "effective_from": now, "based_on_id": current,
         "created_by": "migration", "published_by": "migration", "published_at": now,
         "created_at": now, "updated_at": now},
    ).scalar_one()  # fmt: skip
    copied = [
        {**dict(row._mapping), "rule_set_id": new_id}
        for row in bind.execute(sa.select(*[rules.c[c] for c in RULE_COLUMNS]).where(rules.c.rule_set_id == current))
    ]
    added = [{**rule, "rule_set_id": new_id, "stop_here": False, "budget_points": None} for rule in CONTENT_RULES]
    bind.execute(rules.insert(), copied + [r for r in added if r["code"] not in {c["code"] for c in copied}])
    bind.execute(rule_sets.update().where(rule_sets.c.id == current).values(effective_to=now))


def downgrade() -> None:
    rule_sets, rules = _tables()
    bind = op.get_bind()
    ours = bind.execute(
        sa.select(rule_sets.c.id, rule_sets.c.based_on_id).where(
            rule_sets.c.name == RULE_SET_NAME, rule_sets.c.created_by == "migration"
        )
    ).all()
    for rule_set_id, based_on in ours:
        bind.execute(rules.delete().where(rules.c.rule_set_id == rule_set_id))
        bind.execute(rule_sets.delete().where(rule_sets.c.id == rule_set_id))
        bind.execute(rule_sets.update().where(rule_sets.c.id == based_on).values(effective_to=None))
    op.drop_index("ix_mall_payments_open", table_name="mall_payments", postgresql_where=sa.text(OPEN))
    op.drop_table("mall_payments")
    with op.batch_alter_table("mall_orders") as batch:
        batch.drop_constraint(op.f("ck_mall_orders_status"), type_="check")
        batch.alter_column("status", type_=sa.String(length=10), existing_type=sa.String(length=16))
        batch.create_check_constraint(op.f("ck_mall_orders_status"), OLD_STATUSES)
