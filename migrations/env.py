"""Alembic environment: URL from LOYALTY_DATABASE_URL, metadata from the app's models."""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from app import models
from app.config import load_settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("database_url"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = models.metadata


def render_item(type_: str, obj: object, _autogen_context: object) -> str | bool:
    """Render our TypeDecorators as their plain SQL types so migrations never import app code."""
    if type_ == "type" and isinstance(obj, sa.TypeDecorator):
        impl = obj.impl_instance if hasattr(obj, "impl_instance") else obj.impl
        if isinstance(impl, sa.DateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(impl, sa.LargeBinary):
            return "sa.LargeBinary()"
        if isinstance(impl, sa.Text):
            return "sa.Text()"
    return False


def _url() -> str:
    return config.attributes.get("database_url") or load_settings().DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_item=render_item,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
