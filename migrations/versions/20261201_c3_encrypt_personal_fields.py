"""personal fields encrypted at rest: name, birthday, VIN, plate, WeChat location; VIN and plate
blind indexes

Revision ID: c3
Revises: c2
Create Date: 2026-12-01 11:00:00

Existing rows are encrypted in place with the app's cipher (``app.core.security.PiiCipher``) under
``LOYALTY_DATA_KEY`` (the keys the app would use: ``alembic_config`` passes them, a bare
``alembic`` run reads the environment), batched by primary key. The VIN's uniqueness moves to
``vin_index``; the open-claim guard to ``vehicle_claims.vin_index``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from app.config import load_settings
from app.core.security import PiiCipher, cipher_for

revision = "c3"
down_revision = "c2"
branch_labels = None
depends_on = None

BATCH = 1000
_PENDING = sa.text("status = 'pending'")


def _cipher() -> PiiCipher:
    attributes = context.config.attributes
    if attributes.get("data_keys"):
        return PiiCipher(attributes["data_keys"], index_key=attributes.get("blind_index_key", ""))
    return cipher_for(load_settings())


def _rewrite(table: str, columns: list[str], change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite ``columns`` of every row, ``BATCH`` rows at a time in primary-key order."""
    bind = op.get_bind()
    select = sa.text(f"SELECT id, {', '.join(columns)} FROM {table} WHERE id > :after ORDER BY id LIMIT {BATCH}")
    last = 0
    while True:
        rows = [dict(row._mapping) for row in bind.execute(select, {"after": last})]
        if not rows:
            return
        updates = [{"id": row["id"], **change(row)} for row in rows]
        targets = list(updates[0].keys() - {"id"})
        bind.execute(
            sa.text(f"UPDATE {table} SET {', '.join(f'{c} = :{c}' for c in targets)} WHERE id = :id"), updates
        )
        last = rows[-1]["id"]


def _enc(c: PiiCipher, value: Any) -> str | None:
    return None if value is None else c.encrypt(str(value))


def _dec(c: PiiCipher, value: str | None) -> str | None:
    return None if value is None else c.decrypt(value)


def _vin_index(c: PiiCipher, vin: str | None) -> str | None:
    return None if vin is None else c.blind_index(vin.strip().upper(), "vin")


def _plate_index(c: PiiCipher, plate: str | None) -> str | None:
    return None if plate is None else c.blind_index(plate.replace(" ", "").upper(), "plate")


def upgrade() -> None:
    c = _cipher()
    with op.batch_alter_table("members") as batch:
        batch.alter_column("name", type_=sa.Text(), existing_type=sa.String(64))
        batch.alter_column("birthday", type_=sa.Text(), existing_type=sa.Date(), postgresql_using="birthday::text")
    _rewrite("members", ["name", "birthday"], lambda r: {k: _enc(c, r[k]) for k in ("name", "birthday")})

    with op.batch_alter_table("wechat_identities") as batch:
        for column in ("latitude", "longitude"):
            batch.alter_column(column, type_=sa.Text(), existing_type=sa.Float(), postgresql_using=f"{column}::text")
    _rewrite(
        "wechat_identities",
        ["latitude", "longitude"],
        lambda r: {k: _enc(c, None if r[k] is None else repr(float(r[k]))) for k in ("latitude", "longitude")},
    )

    op.add_column("vehicles", sa.Column("vin_index", sa.String(length=64), nullable=True))
    op.add_column("vehicles", sa.Column("plate_index", sa.String(length=64), nullable=True))
    with op.batch_alter_table("vehicles") as batch:
        batch.drop_constraint("uq_vehicles_vin", type_="unique")
        batch.drop_index("ix_vehicles_plate")
        batch.alter_column("vin", type_=sa.Text(), existing_type=sa.String(17))
        batch.alter_column("plate", type_=sa.Text(), existing_type=sa.String(16))
    _rewrite(
        "vehicles",
        ["vin", "plate"],
        lambda r: {
            "vin": _enc(c, r["vin"]),
            "vin_index": _vin_index(c, r["vin"]),
            "plate": _enc(c, r["plate"]),
            "plate_index": _plate_index(c, r["plate"]),
        },
    )
    with op.batch_alter_table("vehicles") as batch:
        batch.alter_column("vin_index", nullable=False, existing_type=sa.String(64))
        batch.create_unique_constraint("uq_vehicles_vin_index", ["vin_index"])
        batch.create_index("ix_vehicles_plate_index", ["plate_index"], unique=False)

    op.add_column("vehicle_claims", sa.Column("vin_index", sa.String(length=64), nullable=True))
    op.drop_index("uq_vehicle_claims_open_vin", table_name="vehicle_claims", postgresql_where=_PENDING)
    with op.batch_alter_table("vehicle_claims") as batch:
        batch.alter_column("vin", type_=sa.Text(), existing_type=sa.String(17))
        batch.alter_column("plate", type_=sa.Text(), existing_type=sa.String(16))
    _rewrite(
        "vehicle_claims",
        ["vin", "plate"],
        lambda r: {"vin": _enc(c, r["vin"]), "vin_index": _vin_index(c, r["vin"]), "plate": _enc(c, r["plate"])},
    )
    with op.batch_alter_table("vehicle_claims") as batch:
        batch.alter_column("vin_index", nullable=False, existing_type=sa.String(64))
    op.create_index(
        "uq_vehicle_claims_open_vin_index",
        "vehicle_claims",
        ["vin_index"],
        unique=True,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    c = _cipher()
    op.drop_index("uq_vehicle_claims_open_vin_index", table_name="vehicle_claims", postgresql_where=_PENDING)
    _rewrite("vehicle_claims", ["vin", "plate"], lambda r: {k: _dec(c, r[k]) for k in ("vin", "plate")})
    with op.batch_alter_table("vehicle_claims") as batch:
        batch.alter_column("vin", type_=sa.String(17), existing_type=sa.Text())
        batch.alter_column("plate", type_=sa.String(16), existing_type=sa.Text())
        batch.drop_column("vin_index")
    op.create_index(
        "uq_vehicle_claims_open_vin", "vehicle_claims", ["vin"], unique=True, postgresql_where=_PENDING, sqlite_where=_PENDING
    )

    _rewrite("vehicles", ["vin", "plate"], lambda r: {k: _dec(c, r[k]) for k in ("vin", "plate")})
    with op.batch_alter_table("vehicles") as batch:
        batch.drop_index("ix_vehicles_plate_index")
        batch.drop_constraint("uq_vehicles_vin_index", type_="unique")
        batch.drop_column("plate_index")
        batch.drop_column("vin_index")
        batch.alter_column("vin", type_=sa.String(17), existing_type=sa.Text())
        batch.alter_column("plate", type_=sa.String(16), existing_type=sa.Text())
        batch.create_unique_constraint("uq_vehicles_vin", ["vin"])
        batch.create_index("ix_vehicles_plate", ["plate"], unique=False)

    _rewrite("wechat_identities", ["latitude", "longitude"], lambda r: {k: _dec(c, r[k]) for k in ("latitude", "longitude")})
    with op.batch_alter_table("wechat_identities") as batch:
        for column in ("latitude", "longitude"):
            batch.alter_column(
                column, type_=sa.Float(), existing_type=sa.Text(), postgresql_using=f"{column}::double precision"
            )

    _rewrite("members", ["name", "birthday"], lambda r: {k: _dec(c, r[k]) for k in ("name", "birthday")})
    with op.batch_alter_table("members") as batch:
        batch.alter_column("name", type_=sa.String(64), existing_type=sa.Text())
        batch.alter_column("birthday", type_=sa.Date(), existing_type=sa.Text(), postgresql_using="birthday::date")
