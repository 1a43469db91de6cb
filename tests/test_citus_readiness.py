"""The Citus prerequisite, enforced on the schema (docs/scaling.md, "Beyond one primary").

Citus distributes a table by one column and can enforce a primary key or a unique constraint only
when it contains that column. The plan distributes member-owned data by member id, colocated with
``members``. So every member-owned table — one with a foreign-key path to ``members`` — carries its
member's id and puts it in its primary key and in every unique constraint and unique index.

What does not hold yet is listed below, each with a one-line reason, and the test also fails when
an entry is stale (the table or key was fixed or removed), so the lists only shrink. A new
member-owned table without its member id in its keys fails until it is fixed or listed here.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.models import metadata

#: The distribution column when it is not ``member_id``.
DISTRIBUTION_COLUMN = {
    "members": "id",
    "benefit_shares": "from_member_id",  # the sharer owns the share; the claimant is another member
    "member_merges": "survivor_id",  # a merge is applied on the survivor's shard
    "referrals": "referee_member_id",  # one referral per referee (unique already)
}

#: Tables an FK walk from ``members`` reaches that are NOT distributed by member id. The walk stops
#: at them; the FK that leads them to member data is dropped when the table is distributed.
NOT_DISTRIBUTED = {
    "staff": "reference table (dealer staff); its FK to wechat_identities is kept in code only",
    "staff_invites": "reference table with staff",
    "enrollment_targets": "reference table (one row per dealer/staff and month)",
    "qr_codes": "coordinator-local (looked up by scene on every scan event); FK to enrollment_tokens dropped",
    "wechat_identities": "lookup table distributed by openid: (app_id, openid) -> member_id; FK dropped",
    "miniapp_sessions": "colocated with wechat_identities (found through its identity, not a member)",
    "mall_partner_codes": "coordinator-local partner code stock by item; FK to mall_orders dropped",
}

#: Tables whose primary key is a surrogate ``id`` today: step 2 of the migration plan in
#: docs/scaling.md widens each to ``(member_id, id)`` (ids stay globally unique from their sequence).
PRIMARY_KEY_WIDENED_IN_PLAN = frozenset(
    {
        "benefit_partner_orders",
        "benefit_shares",
        "bookings",
        "callback_task_notes",
        "callback_tasks",
        "complaints",
        "consents",
        "crm_outbox",
        "enrollment_tokens",
        "entitlement_entries",
        "mall_orders",
        "mall_vouchers",
        "member_lifecycle_history",
        "member_merges",
        "notifications",
        "ownerships",
        "point_adjustments",
        "point_allocations",
        "point_entries",
        "point_lots",
        "red_packet_grants",
        "referral_codes",
        "referrals",
        "sales_leads",
        "subscribe_grants",
        "subscribe_requests",
        "tier_changes",
        "vehicle_claims",
    }
)

#: Member-owned tables that lack the member id column (step 1 of the plan adds and backfills it).
MISSING_MEMBER_ID = {
    "point_allocations": "add member_id from point_entries (same member as its lot and entry)",
    "mall_payments": "add member_id from mall_orders; primary key becomes (member_id, order_id)",
    "callback_task_notes": "add member_id from callback_tasks",
}

#: Unique keys without the member id: (table, columns) -> how the rule survives distribution.
LOOKUP = "global uniqueness moves to lookup table"
UNIQUE_KEY_EXCEPTIONS = {
    ("members", ("member_no",)): f"{LOOKUP} member_numbers (member_no PK -> member_id)",
    ("members", ("phone_index",)): f"{LOOKUP} member_phones (phone_index PK -> member_id)",
    ("enrollment_tokens", ("token_hash",)): f"{LOOKUP} enrollment_token_keys (scan finds the member)",
    ("mall_vouchers", ("code_hash",)): f"{LOOKUP} voucher_codes (dealer redeems by code)",
    ("referral_codes", ("code",)): f"{LOOKUP} referral_code_keys (referee enters the code)",
    ("benefit_shares", ("key",)): f"{LOOKUP} share_keys (claimant opens the link)",
    ("member_merges", ("request_key",)): f"{LOOKUP} merge_requests (idempotent merge requests)",
    ("red_packet_grants", ("bill_no",)): f"{LOOKUP} red_packet_bills (WeChat Pay bill number)",
    ("benefit_partner_orders", ("out_order_no",)): f"{LOOKUP} partner_order_keys (partner callback)",
    ("mall_payments", ("out_trade_no",)): f"{LOOKUP} trade_numbers (WeChat Pay notification)",
    ("sales_leads", ("source", "source_ref")): f"{LOOKUP} lead_sources (DMS/CRM ref may precede a member)",
    ("point_adjustments", ("request_id",)): f"{LOOKUP} adjustment_requests (console request id)",
    ("ownerships", ("vehicle_id",)): "one current owner per vehicle: vehicle_owners distributed by vehicle_id",
    # Cheap and safe at migration time: both rows always belong to the same member.
    ("point_lots", ("entry_id",)): "widen to (member_id, entry_id): a lot and its entry share a member",
    ("benefit_partner_orders", ("booking_id",)): "widen to (member_id, booking_id): same member",
    ("crm_outbox", ("idempotency_key",)): "widen: the key is loyalty-{member_id}-{seq}, (member_id, seq) is unique",
    # The claimant's booking lives on the claimant's shard, not the sharer's.
    ("benefit_shares", ("booking_id",)): "moves to bookings as unique (member_id, share_id); FK dropped",
    # Idempotency keys name their source event or object, which names one member (plan step 3).
    ("point_entries", ("idempotency_key",)): "widen to (member_id, idempotency_key) after step 3's merge check",
    ("entitlement_entries", ("idempotency_key",)): "widen to (member_id, idempotency_key)",
    ("notifications", ("dedupe_key",)): "widen to (member_id, dedupe_key); keys name the member or its notification",
}


def _member_owned() -> dict[str, sa.Table]:
    """Tables with a foreign-key path to ``members``, not walking through NOT_DISTRIBUTED ones."""
    tables = metadata.tables
    owned = {"members"}
    grew = True
    while grew:
        grew = False
        for name, table in tables.items():
            if name in owned or name in NOT_DISTRIBUTED:
                continue
            if any(fk.column.table.name in owned for fk in table.foreign_keys):
                owned.add(name)
                grew = True
    return {name: tables[name] for name in sorted(owned)}


def _unique_keys(table: sa.Table) -> set[tuple[str, ...]]:
    keys = {
        tuple(col.name for col in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    }
    for index in table.indexes:
        if index.unique:
            keys.add(tuple(str(expr) if not isinstance(expr, sa.Column) else expr.name for expr in index.expressions))
    return keys


def _violations() -> dict[str, set]:
    missing_column, narrow_pk, narrow_unique = set(), set(), set()
    for name, table in _member_owned().items():
        column = DISTRIBUTION_COLUMN.get(name, "member_id")
        if column not in table.c:
            missing_column.add(name)
        if column not in {col.name for col in table.primary_key.columns}:
            narrow_pk.add(name)
        for key in _unique_keys(table):
            if column not in key:
                narrow_unique.add((name, key))
    return {"column": missing_column, "pk": narrow_pk, "unique": narrow_unique}


def test_member_owned_tables_carry_member_id():
    missing = _violations()["column"] - set(MISSING_MEMBER_ID)
    assert not missing, f"member-owned tables without their member id (add it or list it): {sorted(missing)}"


def test_member_id_is_in_every_primary_key():
    narrow = _violations()["pk"] - PRIMARY_KEY_WIDENED_IN_PLAN - set(MISSING_MEMBER_ID)
    assert not narrow, f"member-owned tables whose primary key lacks the member id: {sorted(narrow)}"


def test_member_id_is_in_every_unique_key():
    narrow = _violations()["unique"] - set(UNIQUE_KEY_EXCEPTIONS)
    assert not narrow, f"unique keys of member-owned tables without the member id: {sorted(narrow)}"


def test_exceptions_are_not_stale():
    """Fixing a table (or dropping it) must also remove its exception, so the lists only shrink."""
    found = _violations()
    stale = (
        (set(MISSING_MEMBER_ID) - found["column"])
        | (PRIMARY_KEY_WIDENED_IN_PLAN - found["pk"])
        | {f"{table}{key}" for table, key in set(UNIQUE_KEY_EXCEPTIONS) - found["unique"]}
        | (set(NOT_DISTRIBUTED) - set(metadata.tables))
        | (set(DISTRIBUTION_COLUMN) - set(_member_owned()))
    )
    assert not stale, f"exceptions that no longer apply: {sorted(stale)}"


def test_not_distributed_tables_are_reached_from_member_data():
    """Each NOT_DISTRIBUTED entry must be one the walk would otherwise pull in (or it is noise)."""
    owned = set(_member_owned())
    pulled_in = {
        name
        for name in NOT_DISTRIBUTED
        if any(fk.column.table.name in owned | set(NOT_DISTRIBUTED) for fk in metadata.tables[name].foreign_keys)
    }
    assert pulled_in == set(NOT_DISTRIBUTED)


def test_a_new_member_owned_table_without_member_id_in_its_keys_fails():
    """The rule catches the mistake it exists for: a new table hanging off member data."""
    probe = sa.Table(
        "citus_probe_rows",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("entry_id", sa.BigInteger, sa.ForeignKey("point_entries.id")),
        sa.Column("ref", sa.String(32), unique=True),
    )
    try:
        found = _violations()
        assert "citus_probe_rows" in found["column"]
        assert "citus_probe_rows" in found["pk"]
        assert ("citus_probe_rows", ("ref",)) in found["unique"]
    finally:
        metadata.remove(probe)
    assert "citus_probe_rows" not in _violations()["column"]
