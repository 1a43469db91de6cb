"""points ledger, earning rules, tiers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:21:36.052827
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


APPEND_ONLY_TABLES = ("point_entries", "point_allocations", "tier_changes")

#: The program's default earning rules (SPEC §3), published as rule set 1 from 2020-01-01 so that
#: replays and simulations of historical events find them. Operators change rules by publishing
#: new rule sets; this literal is history and is never edited.
DEFAULT_RULES = [
    {"code": "car_purchase_reward", "name": "新车购买 消费积分 (1 pt / ¥100)", "event_type": "vehicle.delivered", "currency": "reward", "priority": 10, "conditions": {}, "formula": {"type": "per_amount", "attribute": "price_fen", "per_fen": 10000, "points": 1}, "caps": {}, "multipliers": {"tier": True}, "funder": "oem", "pending_days": 0},
    {"code": "car_purchase_tier_new", "name": "新车购买 定级积分 (price × 1)", "event_type": "vehicle.delivered", "currency": "tier", "priority": 10, "conditions": {"purchase_types": ["new"]}, "formula": {"type": "per_amount", "attribute": "price_fen", "per_fen": 100, "points": 1}, "caps": {}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "car_purchase_tier_additional", "name": "增购/置换/家人购车 定级积分 (price × 0.5)", "event_type": "vehicle.delivered", "currency": "tier", "priority": 10, "conditions": {"purchase_types": ["add_on", "replacement", "family"]}, "formula": {"type": "per_amount", "attribute": "price_fen", "per_fen": 200, "points": 1}, "caps": {}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "service_parts_reward", "name": "售后维修保养 零件材料 消费积分 (1 pt / ¥10)", "event_type": "service.completed", "currency": "reward", "priority": 20, "conditions": {}, "formula": {"type": "per_amount", "attribute": "parts_fen", "per_fen": 1000, "points": 1}, "caps": {}, "multipliers": {"tier": True, "birthday_month": 2}, "funder": "dealer", "pending_days": 7},
    {"code": "service_tier", "name": "售后维修保养 定级积分 (spend × 0.5)", "event_type": "service.completed", "currency": "tier", "priority": 20, "conditions": {}, "formula": {"type": "per_amount", "attribute": "total_fen", "per_fen": 200, "points": 1}, "caps": {}, "multipliers": {}, "funder": "dealer", "pending_days": 0},
    {"code": "insurance_renewal_reward", "name": "续保 消费积分 (1% of premium)", "event_type": "insurance.renewed", "currency": "reward", "priority": 30, "conditions": {}, "formula": {"type": "per_amount", "attribute": "premium_fen", "per_fen": 2000, "points": 1}, "caps": {}, "multipliers": {"tier": True}, "funder": "dealer", "pending_days": 0},
    {"code": "welcome_gift", "name": "入会礼", "event_type": "enrollment.welcome", "currency": "reward", "priority": 40, "conditions": {}, "formula": {"type": "fixed", "points": 500}, "caps": {}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "test_drive", "name": "试乘试驾", "event_type": "test_drive.completed", "currency": "reward", "priority": 50, "conditions": {}, "formula": {"type": "fixed", "points": 100}, "caps": {"per_member": {"month": 200}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "dealer_visit", "name": "到店", "event_type": "activity.dealer_visit", "currency": "reward", "priority": 50, "conditions": {}, "formula": {"type": "fixed", "points": 50}, "caps": {"per_member": {"month": 100}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "survey", "name": "问卷调研", "event_type": "activity.survey", "currency": "reward", "priority": 50, "conditions": {}, "formula": {"type": "fixed", "points": 100}, "caps": {"per_member": {"month": 200}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "profile_completed", "name": "完善资料", "event_type": "activity.profile_completed", "currency": "reward", "priority": 50, "conditions": {}, "formula": {"type": "fixed", "points": 200}, "caps": {"per_member": {"year": 200}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "daily_sign_in", "name": "每日签到", "event_type": "activity.daily_sign_in", "currency": "reward", "priority": 60, "conditions": {}, "formula": {"type": "fixed", "points": 5}, "caps": {"per_member": {"day": 5, "month": 100}}, "multipliers": {}, "funder": "oem", "pending_days": 0},
    {"code": "referral_referrer_reward", "name": "推荐购车 推荐人奖励", "event_type": "referral.delivered", "currency": "reward", "priority": 70, "conditions": {"attributes": [{"name": "role", "op": "eq", "value": "referrer"}]}, "formula": {"type": "fixed", "points": 2000}, "caps": {"per_member": {"year": 20000}}, "multipliers": {}, "funder": "oem", "pending_days": 30},
    {"code": "referral_referee_reward", "name": "推荐购车 被推荐人奖励", "event_type": "referral.delivered", "currency": "reward", "priority": 70, "conditions": {"attributes": [{"name": "role", "op": "eq", "value": "referee"}]}, "formula": {"type": "fixed", "points": 500}, "caps": {}, "multipliers": {}, "funder": "oem", "pending_days": 30},
    {"code": "referral_referrer_tier", "name": "推荐购车 推荐人定级积分 (price × 0.5)", "event_type": "referral.delivered", "currency": "tier", "priority": 70, "conditions": {"attributes": [{"name": "role", "op": "eq", "value": "referrer"}]}, "formula": {"type": "per_amount", "attribute": "price_fen", "per_fen": 200, "points": 1}, "caps": {}, "multipliers": {}, "funder": "oem", "pending_days": 0},
]


def _append_only_guards() -> None:
    """The function loyalty_forbid_mutation() comes from revision 0001."""
    for table in APPEND_ONLY_TABLES:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION loyalty_forbid_mutation()"
            )
        else:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def _seed_default_rules() -> None:
    bind = op.get_bind()
    rule_sets = sa.table(
        "rule_sets",
        sa.column("id", sa.BigInteger), sa.column("name", sa.String), sa.column("status", sa.String),
        sa.column("effective_from", sa.DateTime(timezone=True)), sa.column("created_by", sa.String),
        sa.column("published_by", sa.String), sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)), sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    rules = sa.table(
        "earning_rules",
        sa.column("rule_set_id", sa.BigInteger), sa.column("code", sa.String), sa.column("name", sa.String),
        sa.column("event_type", sa.String), sa.column("currency", sa.String), sa.column("priority", sa.Integer),
        sa.column("stop_here", sa.Boolean), sa.column("conditions", sa.JSON), sa.column("formula", sa.JSON),
        sa.column("caps", sa.JSON), sa.column("multipliers", sa.JSON), sa.column("funder", sa.String),
        sa.column("pending_days", sa.Integer), sa.column("budget_points", sa.BigInteger),
    )
    now = datetime.datetime.now(datetime.UTC)
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    if bind.dialect.name == "sqlite":
        now, start = now.replace(tzinfo=None), start.replace(tzinfo=None)
    rule_set_id = bind.execute(
        rule_sets.insert().returning(rule_sets.c.id),
        {"name": "默认积分规则 Default earning rules", "status": "published", "effective_from": start,
         "created_by": "migration", "published_by": "migration", "published_at": now,
         "created_at": now, "updated_at": now},
    ).scalar_one()
    bind.execute(rules.insert(), [{**rule, "rule_set_id": rule_set_id, "stop_here": False, "budget_points": None}
                                  for rule in DEFAULT_RULES])


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('rule_budgets',
    sa.Column('rule_code', sa.String(length=48), nullable=False),
    sa.Column('issued_points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('rule_code', name=op.f('pk_rule_budgets'))
    )
    op.create_table('rule_sets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('effective_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('based_on_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('simulation', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('simulated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('published_by', sa.String(length=64), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'simulated', 'published', 'retired')", name=op.f('ck_rule_sets_status')),
    sa.ForeignKeyConstraint(['based_on_id'], ['rule_sets.id'], name=op.f('fk_rule_sets_based_on_id_rule_sets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_sets'))
    )
    op.create_index('ix_rule_sets_status_from', 'rule_sets', ['status', 'effective_from'], unique=False)
    op.create_table('earning_rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_set_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=48), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('event_type', sa.String(length=48), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('stop_here', sa.Boolean(), nullable=False),
    sa.Column('conditions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('formula', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('caps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('multipliers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('funder', sa.String(length=8), nullable=False),
    sa.Column('pending_days', sa.Integer(), nullable=False),
    sa.Column('budget_points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['rule_set_id'], ['rule_sets.id'], name=op.f('fk_earning_rules_rule_set_id_rule_sets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_earning_rules')),
    sa.UniqueConstraint('rule_set_id', 'code', name=op.f('uq_earning_rules_rule_set_id_code'))
    )
    op.create_table('point_accounts',
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reward_available', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reward_pending', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reward_debt', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tier_points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lifetime_earned', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lifetime_spent', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lifetime_expired', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('reward_available >= 0 OR reward_debt > 0', name=op.f('ck_point_accounts_negative_only_as_debt')),
    sa.CheckConstraint('reward_debt >= 0', name=op.f('ck_point_accounts_debt_not_negative')),
    sa.CheckConstraint('reward_pending >= 0', name=op.f('ck_point_accounts_pending_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_point_accounts_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_point_accounts'))
    )
    op.create_table('point_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=160), nullable=False),
    sa.Column('source_type', sa.String(length=32), nullable=False),
    sa.Column('source_ref', sa.String(length=64), nullable=True),
    sa.Column('source_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rule_code', sa.String(length=48), nullable=True),
    sa.Column('rule_set_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('basis_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('funder', sa.String(length=8), nullable=False),
    sa.Column('dealer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reverses_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reason_code', sa.String(length=32), nullable=True),
    sa.Column('note', sa.String(length=255), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("currency IN ('reward', 'tier')", name=op.f('ck_point_entries_currency')),
    sa.CheckConstraint("funder IN ('oem', 'dealer', 'partner')", name=op.f('ck_point_entries_funder')),
    sa.CheckConstraint("kind IN ('earn', 'spend', 'expire', 'reverse', 'adjust', 'transfer')", name=op.f('ck_point_entries_kind')),
    sa.CheckConstraint('points <> 0', name=op.f('ck_point_entries_points_not_zero')),
    sa.ForeignKeyConstraint(['dealer_id'], ['dealers.id'], name=op.f('fk_point_entries_dealer_id_dealers')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_point_entries_member_id_members')),
    sa.ForeignKeyConstraint(['reverses_entry_id'], ['point_entries.id'], name=op.f('fk_point_entries_reverses_entry_id_point_entries')),
    sa.ForeignKeyConstraint(['source_event_id'], ['inbound_events.id'], name=op.f('fk_point_entries_source_event_id_inbound_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_entries')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_point_entries_idempotency_key'))
    )
    op.create_index('ix_point_entries_dealer_created', 'point_entries', ['dealer_id', 'created_at'], unique=False)
    op.create_index('ix_point_entries_member_created', 'point_entries', ['member_id', 'created_at'], unique=False)
    op.create_index('ix_point_entries_reverses', 'point_entries', ['reverses_entry_id'], unique=False)
    op.create_index('ix_point_entries_rule_member', 'point_entries', ['rule_code', 'member_id', 'occurred_at'], unique=False)
    op.create_index('ix_point_entries_source_ref', 'point_entries', ['source_ref'], unique=False)
    op.create_table('tier_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_tier', sa.String(length=10), nullable=True),
    sa.Column('to_tier', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('tier_points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_tier_changes_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    op.create_index(op.f('ix_tier_changes_member_id'), 'tier_changes', ['member_id'], unique=False)
    op.create_table('tier_states',
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tier', sa.String(length=10), nullable=False),
    sa.Column('achieved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('review_on', sa.Date(), nullable=True),
    sa.Column('last_qualifying_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("tier IN ('silver', 'gold', 'platinum', 'diamond')", name=op.f('ck_tier_states_tier')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_tier_states_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_tier_states'))
    )
    op.create_index('ix_tier_states_review_on', 'tier_states', ['review_on'], unique=False, postgresql_where=sa.text('review_on IS NOT NULL'), sqlite_where=sa.text('review_on IS NOT NULL'))
    op.create_table('point_lots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('remaining', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expired_points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('expired_by_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('funder', sa.String(length=8), nullable=False),
    sa.Column('dealer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('held', 'pending', 'available', 'depleted', 'expired', 'reversed')", name=op.f('ck_point_lots_status')),
    sa.CheckConstraint('remaining >= 0 AND remaining <= points', name=op.f('ck_point_lots_remaining_in_range')),
    sa.ForeignKeyConstraint(['dealer_id'], ['dealers.id'], name=op.f('fk_point_lots_dealer_id_dealers')),
    sa.ForeignKeyConstraint(['entry_id'], ['point_entries.id'], name=op.f('fk_point_lots_entry_id_point_entries')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_point_lots_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_lots')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_point_lots_entry_id'))
    )
    op.create_index('ix_point_lots_expiry_due', 'point_lots', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))
    op.create_index('ix_point_lots_member_status', 'point_lots', ['member_id', 'status'], unique=False)
    op.create_index('ix_point_lots_release_due', 'point_lots', ['available_at'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
    op.create_index('ix_point_lots_spendable', 'point_lots', ['member_id', 'expires_at', 'id'], unique=False, postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))
    op.create_table('point_allocations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['point_entries.id'], name=op.f('fk_point_allocations_entry_id_point_entries')),
    sa.ForeignKeyConstraint(['lot_id'], ['point_lots.id'], name=op.f('fk_point_allocations_lot_id_point_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_allocations'))
    )
    op.create_index(op.f('ix_point_allocations_entry_id'), 'point_allocations', ['entry_id'], unique=False)
    op.create_index(op.f('ix_point_allocations_lot_id'), 'point_allocations', ['lot_id'], unique=False)
    op.add_column('ownerships', sa.Column('order_no', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_ownerships_order_no'), 'ownerships', ['order_no'], unique=False)
    # ### end Alembic commands ###
    _append_only_guards()
    op.execute(
        "INSERT INTO point_accounts (member_id, reward_available, reward_pending, reward_debt, tier_points, "
        "lifetime_earned, lifetime_spent, lifetime_expired, updated_at) "
        "SELECT id, 0, 0, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP FROM members"
    )
    _seed_default_rules()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index(op.f('ix_ownerships_order_no'), table_name='ownerships')
    op.drop_column('ownerships', 'order_no')
    op.drop_index(op.f('ix_point_allocations_lot_id'), table_name='point_allocations')
    op.drop_index(op.f('ix_point_allocations_entry_id'), table_name='point_allocations')
    op.drop_table('point_allocations')
    op.drop_index('ix_point_lots_spendable', table_name='point_lots', postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))
    op.drop_index('ix_point_lots_release_due', table_name='point_lots', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
    op.drop_index('ix_point_lots_member_status', table_name='point_lots')
    op.drop_index('ix_point_lots_expiry_due', table_name='point_lots', postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))
    op.drop_table('point_lots')
    op.drop_index('ix_tier_states_review_on', table_name='tier_states', postgresql_where=sa.text('review_on IS NOT NULL'), sqlite_where=sa.text('review_on IS NOT NULL'))
    op.drop_table('tier_states')
    op.drop_index(op.f('ix_tier_changes_member_id'), table_name='tier_changes')
    op.drop_table('tier_changes')
    op.drop_index('ix_point_entries_source_ref', table_name='point_entries')
    op.drop_index('ix_point_entries_rule_member', table_name='point_entries')
    op.drop_index('ix_point_entries_reverses', table_name='point_entries')
    op.drop_index('ix_point_entries_member_created', table_name='point_entries')
    op.drop_index('ix_point_entries_dealer_created', table_name='point_entries')
    op.drop_table('point_entries')
    op.drop_table('point_accounts')
    op.drop_table('earning_rules')
    op.drop_index('ix_rule_sets_status_from', table_name='rule_sets')
    op.drop_table('rule_sets')
    op.drop_table('rule_budgets')
    # ### end Alembic commands ###
