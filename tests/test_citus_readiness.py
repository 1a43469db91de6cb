"""The Citus prerequisite, enforced on the schema (docs/scaling.md, "Beyond one primary").

Citus distributes a table by one column and can enforce a primary key or a unique constraint only
when it contains that column. The plan distributes member-owned data by member id, colocated with
``members``. So every member-owned table — one with a foreign-key path to ``members`` — carries its
member's id and puts it in its primary key and in every unique constraint and unique index.

What does not hold yet is listed below, each with a one-line reason, and the test also fails when
an entry is stale (the table or key was fixed or removed), so the lists only shrink. A new
member-owned table without its member id in its keys fails until it is fixed or listed here.

The rest of the plan is checked too: every other table has a place (reference, coordinator-local
or its own colocation group), and every foreign key Citus could not keep under that placement is
listed as one to drop at distribution.
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

REFERENCE, LOCAL, BY_OPENID, BY_VEHICLE = "reference", "coordinator-local", "by openid", "by vehicle id"
#: Every table NOT distributed by member id, and where it goes (docs/scaling.md). The walk from
#: ``members`` stops at these; a table in neither this list nor the walk fails ``test_every_table_is_placed``.
PLACEMENT = {
    # Reference tables: small, copied to every node, rarely written.
    "dealers": REFERENCE,
    "staff": REFERENCE,
    "staff_invites": REFERENCE,
    "operators": REFERENCE,
    "enrollment_targets": REFERENCE,
    "program_settings": REFERENCE,
    "rule_sets": REFERENCE,
    "earning_rules": REFERENCE,
    "benefit_catalogs": REFERENCE,
    "benefits": REFERENCE,
    "campaigns": REFERENCE,
    "maintenance_intervals": REFERENCE,
    # Coordinator-local: hot counters (one row serialises them anyway), ordered or staging data.
    "mall_items": LOCAL,
    "mall_flash_offers": LOCAL,
    "mall_code_batches": LOCAL,
    "mall_partner_codes": LOCAL,
    "dealer_slots": LOCAL,
    "rule_budgets": LOCAL,
    "audit_log": LOCAL,
    "inbound_events": LOCAL,
    "qr_codes": LOCAL,
    "point_undos": LOCAL,
    "daily_metrics": LOCAL,
    "dealer_settlements": LOCAL,
    "dealer_settlement_lines": LOCAL,
    "import_runs": LOCAL,
    "import_row_errors": LOCAL,
    "consent_leads": LOCAL,
    # Own colocation groups.
    "wechat_identities": BY_OPENID,  # the lookup of every callback: (app_id, openid) -> member_id
    "miniapp_sessions": BY_OPENID,  # found through its identity
    "vehicles": BY_VEHICLE,
    "vehicle_servicings": BY_VEHICLE,
}

#: Foreign keys Citus cannot keep (distributed -> local or another group, reference/local ->
#: distributed, or across members); dropped at distribution (plan step 4), the code keeps them.
FKS_DROPPED = {
    "members.merged_into_id": "the survivor is another member, on another shard",
    "referrals.referrer_member_id": "the referrer is another member",
    "sales_leads.referrer_member_id": "the referrer is another member",
    "benefit_shares.claimed_by_member_id": "the claimant is another member",
    "benefit_shares.booking_id": "the claimant's booking, on the claimant's shard",
    "bookings.slot_id": "slots are coordinator-local counters (capacity under the slot lock)",
    "bookings.vehicle_id": "vehicles are their own group",
    "entitlement_entries.vehicle_id": "vehicles are their own group",
    "enrollment_tokens.vehicle_id": "vehicles are their own group",
    "ownerships.vehicle_id": "vehicles are their own group",
    "mall_orders.item_id": "items are coordinator-local counters (stock under the item lock)",
    "mall_orders.flash_offer_id": "flash offers are coordinator-local counters",
    "point_entries.source_event_id": "the inbox is coordinator-local",
    "ownerships.source_event_id": "the inbox is coordinator-local",
    "enrollment_tokens.source_event_id": "the inbox is coordinator-local",
    "mall_partner_codes.order_id": "a local row may not reference a distributed one",
    "qr_codes.enrollment_token_id": "a local row may not reference a distributed one",
    "staff.miniapp_identity_id": "a reference row may not reference a distributed one",
    "wechat_identities.member_id": "identities are grouped by openid, not member",
}

#: Foreign keys to a member-owned row of ANOTHER member, which the schema cannot tell apart.
OTHER_MEMBERS_ROWS = {"benefit_shares.booking_id"}


#: Tables whose primary key is a surrogate ``id`` today: step 2 of the migration plan in
#: docs/scaling.md widens each to ``(member_id, id)`` or its member column (ids stay unique from their sequence).
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
    """Tables with a foreign-key path to ``members``, not walking through PLACEMENT ones."""
    tables = metadata.tables
    owned = {"members"}
    grew = True
    while grew:
        grew = False
        for name, table in tables.items():
            if name in owned or name in PLACEMENT:
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
        | (set(PLACEMENT) - set(metadata.tables))
        | (set(FKS_DROPPED) - set(_fks_citus_refuses()))
        | (set(DISTRIBUTION_COLUMN) - set(_member_owned()))
    )
    assert not stale, f"exceptions that no longer apply: {sorted(stale)}"


def _group(table: str) -> str:
    return PLACEMENT.get(table, "by member id")


def _fks_citus_refuses() -> list[str]:
    """Foreign keys that break Citus's rules under the placement above."""
    refused = []
    for name, table in metadata.tables.items():
        for fk in table.foreign_keys:
            child, parent = _group(name), _group(fk.column.table.name)
            if parent == REFERENCE:
                allowed = True  # anything may reference a reference table
            elif child == REFERENCE:
                allowed = False
            elif child == "by member id" and parent == "by member id":
                # Colocated: the member's own rows (FK widened with member_id in plan step 2), not
                # another member (a column other than the distribution column naming members.id).
                column = DISTRIBUTION_COLUMN.get(name, "member_id")
                allowed = fk.column.table.name != "members" or fk.parent.name == column
                allowed = allowed and f"{name}.{fk.parent.name}" not in OTHER_MEMBERS_ROWS
            else:
                allowed = child == parent
            if not allowed:
                refused.append(f"{name}.{fk.parent.name}")
    return refused


def _unplaced() -> set[str]:
    return set(metadata.tables) - set(_member_owned()) - set(PLACEMENT)


def test_every_table_is_placed():
    """Each table is distributed by member id (the walk finds it) or placed in PLACEMENT."""
    unplaced = _unplaced()
    assert not unplaced, f"tables without a place in the Citus plan (docs/scaling.md): {sorted(unplaced)}"


def test_foreign_keys_citus_cannot_keep_are_listed():
    refused = set(_fks_citus_refuses()) - set(FKS_DROPPED)
    assert not refused, f"foreign keys Citus refuses under the plan (rethink or list them): {sorted(refused)}"


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


def test_a_new_table_needs_a_place_and_its_foreign_keys_are_checked():
    """A table outside member data must be placed; a reference table pointing at member data is refused."""
    loose = sa.Table("citus_probe_loose", metadata, sa.Column("id", sa.BigInteger, primary_key=True))
    pointing = sa.Table(
        "citus_probe_reference",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("order_id", sa.BigInteger, sa.ForeignKey("mall_orders.id")),
    )
    PLACEMENT["citus_probe_reference"] = REFERENCE
    try:
        assert _unplaced() == {"citus_probe_loose"}
        assert "citus_probe_reference.order_id" in _fks_citus_refuses()
    finally:
        del PLACEMENT["citus_probe_reference"]
        metadata.remove(loose)
        metadata.remove(pointing)
    assert not _unplaced()
