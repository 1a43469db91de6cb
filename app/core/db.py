"""Database plumbing: the declarative base, column types, and a session per app context.

Domain code imports ``db`` and uses ``db.session``; it flushes, never commits. The edge that owns
the unit of work (request handler, job runner, CLI command) commits once.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import os
import select
import threading
import time
from collections.abc import Sequence
from typing import Annotated, Any

import sqlalchemy as sa
from flask import Flask, has_app_context, has_request_context
from flask.globals import app_ctx, request_ctx
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import (
    DeclarativeBase,
    Session,
    make_transient_to_detached,
    mapped_column,
    scoped_session,
    sessionmaker,
)

from app.config import settings_of

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator):
    """``timestamptz`` on PostgreSQL; always hands back aware UTC datetimes, refuses naive ones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use app.core.clock.utcnow()")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: JSON everywhere, JSONB on PostgreSQL.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids on PostgreSQL; SQLite only auto-increments a plain INTEGER primary key.
BigIntType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

BigIntPK = Annotated[int, mapped_column(BigIntType, primary_key=True)]


class Base(DeclarativeBase):
    """Declarative base for every model."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


def _unit_of_work_id() -> tuple[int, int]:
    """One session per app context and per request: a request, a job (its own app context, even
    when run inside a request) and a CLI command each get their own unit of work."""
    request_id = id(request_ctx._get_current_object()) if has_request_context() else 0
    return id(app_ctx._get_current_object()), request_id


class Database:
    """Engine + scoped session, configured from settings by ``init_app``."""

    def __init__(self) -> None:
        self.engine: sa.Engine | None = None
        self.session_factory = sessionmaker(expire_on_commit=False)
        self.session: scoped_session[Session] = scoped_session(self.session_factory, scopefunc=_unit_of_work_id)

    def init_app(self, app: Flask) -> None:
        settings = settings_of(app)
        self.engine = create_engine(
            settings.DATABASE_URL,
            connect_timeout=settings.DB_CONNECT_TIMEOUT,
            statement_timeout_ms=settings.DB_STATEMENT_TIMEOUT_MS,
            pooler=settings.DB_POOLER,
        )
        self.session_factory.configure(bind=self.engine)
        app.teardown_request(self._remove_session)
        app.teardown_appcontext(self._remove_session)
        app.extensions["loyalty.db"] = self

    def _remove_session(self, _exc: BaseException | None) -> None:
        self.session.remove()

    def remove(self) -> None:
        """Close the current app context's session, if there is an app context."""
        if has_app_context():
            self.session.remove()

    def bind_to(self, bind: sa.Engine | sa.Connection, *, savepoints: bool = False) -> None:
        """Point new sessions at another engine or connection (tests wrap each test in one)."""
        self.remove()
        mode = "create_savepoint" if savepoints else "conditional_savepoint"
        self.session_factory.configure(bind=bind, join_transaction_mode=mode)

    @property
    def bind(self) -> sa.Engine | sa.Connection:
        """What new sessions use (the engine, or a test's outer connection), without making one."""
        return self.session_factory.kw["bind"]

    def in_transaction(self) -> bool:
        """Whether this unit of work has begun a transaction (without creating a session for it)."""
        return self.session.registry.has() and self.session().in_transaction()

    def read_once(self, statement: sa.Select, params: dict[str, Any]) -> list[Any]:
        """The rows of one read-only statement in one round trip, each with attribute access and
        ``_mapping`` like SQLAlchemy's. On a PostgreSQL engine, when this unit of work has not begun
        a transaction, it runs in autocommit on a pooled connection: no BEGIN, no COMMIT (a single
        statement reads one snapshot on its own; nothing is written), see ``_read_in_autocommit``.
        Otherwise (SQLite, a test's outer transaction, a unit of work that already read or wrote)
        it runs in the session, where it sees the unit of work's own changes."""
        bind = self.bind
        if isinstance(bind, sa.Engine) and bind.dialect.name == "postgresql" and not self.in_transaction():
            return _read_in_autocommit(bind, _compiled_read(bind.dialect, statement), params)
        return self.session.execute(statement, params).all()

    @property
    def dialect(self) -> str:
        bind = self.session.get_bind()
        return bind.dialect.name


class _CompiledRead:
    """A statement for ``Database.read_once``, compiled once: its SQL, the literal parameters it
    carries, the bind and result conversions of its types (``UTCDateTime``) and a row class."""

    def __init__(self, dialect: sa.Dialect, statement: sa.Select) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql or compiled.escaped_bind_names or compiled.positional:
            raise ValueError("read_once takes plain named parameters only (no expanding IN, no escaped names)")
        binds = {name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()}
        self.bind_processors = {name: processor for name, processor in binds.items() if processor is not None}
        self.defaults = {
            name: self.bind_processors[name](value) if name in self.bind_processors else value
            for name, value in compiled.params.items()
            if value is not None or not compiled.binds[name].required
        }
        columns = list(statement.selected_columns)
        self.row_class = _row_class(tuple(statement.selected_columns.keys()))
        self.result_processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]

    def parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        values = dict(self.defaults)
        processors = self.bind_processors
        for name, value in params.items():
            values[name] = processors[name](value) if name in processors else value
        return values

    def rows(self, fetched: list[tuple[Any, ...]]) -> list[Any]:
        make = self.row_class._make
        if not self.result_processors:
            return [make(row) for row in fetched]
        rows = []
        for row in fetched:
            values = list(row)
            for index, processor in self.result_processors:
                values[index] = processor(values[index])
            rows.append(make(values))
        return rows


def _row_class(keys: tuple[str, ...]) -> type:
    base = collections.namedtuple("ReadRow", keys)  # type: ignore[misc]

    class ReadRow(base):  # type: ignore[misc, valid-type]
        """A row read by ``read_once``: a named tuple with SQLAlchemy's ``Row._mapping``."""

        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return self._asdict()

    return ReadRow


@functools.lru_cache(maxsize=64)
def _compiled_read(dialect: sa.Dialect, statement: sa.Select) -> _CompiledRead:
    """Compiled once per engine's dialect: the statements are module constants, built once too."""
    return _CompiledRead(dialect, statement)


#: Idle connections ``read_once`` keeps in autocommit per engine, at most: about one per thread
#: that reads at the same time (gunicorn's threads). More concurrent reads check out and give back.
HELD_READS = 4


class _HeldReads:
    """Pooled connections ``read_once`` keeps checked out, in autocommit, between reads (the group
    commit's pattern, ``GroupInserter._connection``, for several threads): a checkout, a return
    and two autocommit switches per read cost more CPU than the statement's own client side.

    Each is checked without a round trip before use (``closed_by_server``), replaced after an
    error, a server-side close or the pool's recycle age, and goes back to the pool transactional.
    Autocommit is psycopg's client-side switch: nothing is sent, nothing stays on the server's
    session, so PgBouncer's transaction pooling serves them like any other connection."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pool = engine.pool
        self.idle: list[tuple[Any, float]] = []  # (pooled connection, checked out at)
        self.lock = threading.Lock()

    def take(self) -> tuple[Any, float]:
        while True:
            with self.lock:
                if not self.idle:
                    break
                pooled, since = self.idle.pop()
            if still_usable(self.engine, pooled, since):
                return pooled, since
        return autocommit_connection(self.engine), time.monotonic()

    def keep(self, pooled: Any, since: float) -> None:
        with self.lock:
            if len(self.idle) < HELD_READS and self.pool is self.engine.pool:
                self.idle.append((pooled, since))
                return
        give_back_to_pool(pooled)

    def release(self) -> None:
        """Give every idle connection back (the engine is being disposed)."""
        with self.lock:
            idle, self.idle = self.idle, []
        for pooled, _since in idle:
            pooled.invalidate()  # its pool is going away: close it


_held_reads: dict[sa.Engine, _HeldReads] = {}
_held_reads_lock = threading.Lock()
#: Held connections a forked child inherited: the parent's, never to be used nor closed here.
_inherited_reads: list[dict[sa.Engine, _HeldReads]] = []


def _held_reads_of(engine: sa.Engine) -> _HeldReads:
    held = _held_reads.get(engine)
    if held is None or held.pool is not engine.pool:
        with _held_reads_lock:
            held = _held_reads.get(engine)
            if held is None or held.pool is not engine.pool:
                if held is not None:
                    held.release()
                held = _held_reads[engine] = _HeldReads(engine)
    return held


def _release_held_reads(engine: sa.Engine) -> None:
    with _held_reads_lock:
        held = _held_reads.pop(engine, None)
    if held is not None:
        held.release()


def autocommit_connection(engine: sa.Engine) -> Any:
    """A pooled connection (SQLAlchemy's pool proxy) with its driver's connection switched to
    autocommit, to be held; ``_give_to_pool`` switches it back."""
    pooled = engine.raw_connection()
    try:
        pooled.driver_connection.autocommit = True
    except BaseException:
        pooled.invalidate()
        raise
    return pooled


def still_usable(engine: sa.Engine, pooled: Any, since: float) -> bool:
    """Whether a connection held in autocommit since ``since`` may serve again, checked without a
    round trip; if not, it is invalidated (the server closed it) or given back (the pool's recycle
    age), and the caller takes a fresh one."""
    if closed_by_server(pooled.driver_connection):
        pooled.invalidate()  # closed and returned to the pool, which connects anew
        return False
    recycle = engine.pool._recycle
    if recycle >= 0 and time.monotonic() - since >= recycle:
        give_back_to_pool(pooled)
        return False
    return True


def give_back_to_pool(pooled: Any) -> None:
    """Back to the pool transactional, as it came; invalidated if it is in no state for it."""
    try:
        pooled.driver_connection.autocommit = False
    except Exception:  # anything here means: do not reuse this connection
        pooled.invalidate()
    else:
        pooled.close()


def _read_in_autocommit(engine: sa.Engine, read: _CompiledRead, params: dict[str, Any]) -> list[Any]:
    """Run a compiled read on a held connection (``_HeldReads``) in autocommit.

    Only the driver is involved: SQLAlchemy's ``Connection`` around one statement (its pool
    checkout and return, isolation-level switch and reset, execution context, compiled-cache
    lookup and result wrapping) cost 3–4 times the statement's own client side. What SQLAlchemy
    would do on an error is done here: a driver error is raised as SQLAlchemy's
    (``OperationalError``: a 503 at the HTTP edge), and a connection lost on the way is invalidated
    rather than used again. Statement events (``before_cursor_execute``) do not see this
    statement; the pool's (``checkout``) see each connection's first.
    """
    values = read.parameters(params)
    dbapi_error = engine.dialect.loaded_dbapi.Error
    held = _held_reads_of(engine)
    try:
        pooled, since = held.take()
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(read.sql, values, exc, dbapi_error, dialect=engine.dialect) from exc
    connection = pooled.driver_connection
    try:
        with connection.cursor() as cursor:
            cursor.execute(read.sql, values)
            fetched = cursor.fetchall()
    except dbapi_error as exc:
        lost = connection.closed or connection.broken
        if lost:
            pooled.invalidate(exc)
        else:
            give_back_to_pool(pooled)
        raise sa.exc.DBAPIError.instance(
            read.sql, values, exc, dbapi_error, connection_invalidated=lost, dialect=engine.dialect
        ) from exc
    except BaseException:
        pooled.invalidate()  # in an unknown state (interrupted): not for the next read
        raise
    held.keep(pooled, since)
    return read.rows(fetched)


def create_engine(
    url: str, *, connect_timeout: int = 5, statement_timeout_ms: int = 30_000, pooler: str = ""
) -> sa.Engine:
    """An engine tuned per backend: a pooled PostgreSQL, or a WAL-mode SQLite file for `make run`.

    On PostgreSQL a connection attempt gives up after ``connect_timeout`` seconds and every
    statement after ``statement_timeout_ms`` (0: never), so an unreachable or stuck database ends
    in an ``OperationalError`` (a 503 at the HTTP edge) rather than in a hung worker.

    Behind PgBouncer in transaction pooling (``pooler="pgbouncer"``) a server connection serves
    another client after each transaction, so nothing may live on it between transactions:
    psycopg's automatic server-side prepared statements are switched off, and the statement
    timeout, which PgBouncer will not take as a startup option, is the role's setting
    (``ALTER ROLE … SET statement_timeout``, docs/scaling.md). Everything else the code keeps on a
    connection is already transaction-scoped (``SET LOCAL``, ``pg_advisory_xact_lock``).
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": max(2, connect_timeout)}  # libpq treats 1 as 2 anyway
    if pooler == "pgbouncer":
        connect_args["prepare_threshold"] = None
    else:
        connect_args["options"] = f"-c statement_timeout={max(0, statement_timeout_ms)}"
    engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800, connect_args=connect_args)
    event.listen(engine, "checkout", _refuse_closed_by_server)
    event.listen(engine, "engine_disposed", _release_held_reads)
    return engine


def _refuse_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pre-ping without the round trip (``closed_by_server``): the pool then discards the
    connection and checks out another."""
    if closed_by_server(dbapi_connection):
        raise sa.exc.DisconnectionError("the server closed this idle connection")


def closed_by_server(dbapi_connection: Any) -> bool:
    """An idle psycopg connection has nothing to read, unless the server ended it (restart,
    ``pg_terminate_backend``, idle timeout) and sent its goodbye or EOF. A peer that vanished
    without a word is caught by the first query failing, as with any disconnect."""
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; we emit BEGIN ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front: writers queue on busy_timeout instead of deadlocking.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


db = Database()


def _dispose_pool_after_fork() -> None:
    """RQ forks a work horse per job: the child must not reuse the parent's connections."""
    global _held_reads_lock  # noqa: PLW0603 - a lock another thread of the parent held is useless here
    _inherited_reads.append(dict(_held_reads))  # kept referenced: a collected one would close it
    _held_reads.clear()
    _held_reads_lock = threading.Lock()
    if db.engine is not None:
        db.engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_pool_after_fork)


def insert_if_absent(model: type[Base], values: dict[str, Any], conflict_columns: tuple[str, ...]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING pk: the new primary key, or None if the row existed.

    The unique constraint, not a prior SELECT, decides: concurrent callers cannot both win.
    """
    session = db.session
    statement = _insert_ignore_statement(session.get_bind().dialect.name, model, conflict_columns)
    return session.execute(statement, values).scalar_one_or_none()


def insert_all_if_absent(
    model: type[Base], rows: Sequence[dict[str, Any]], conflict_columns: tuple[str, ...]
) -> dict[tuple[Any, ...], Any]:
    """``insert_if_absent`` of several rows in one multi-row INSERT … ON CONFLICT DO NOTHING: the
    new primary key of each row inserted, keyed by its values of ``conflict_columns`` (rows that
    existed are absent)."""
    if not rows:
        return {}
    session = db.session
    statement = _insert_ignore_statement(session.get_bind().dialect.name, model, conflict_columns, keyed=True)
    result = session.execute(statement, list(rows))  # SQLAlchemy's "insertmanyvalues": one statement
    width = len(conflict_columns)
    return {tuple(row[1 : 1 + width]): row[0] for row in result}


@functools.cache
def _insert_ignore_statement(
    dialect: str, model: type[Base], conflict_columns: tuple[str, ...], *, keyed: bool = False
) -> sa.Insert:
    """Built once per (dialect, model): statement construction costs more than the insert itself.
    ``keyed`` also returns the conflict columns (to tell which of several rows were new)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - we run on PostgreSQL and SQLite only
        raise RuntimeError(f"unsupported dialect {dialect}")
    table = model.__table__  # type: ignore[attr-defined]
    primary_key = list(table.primary_key.columns)
    returned = primary_key + ([table.c[name] for name in conflict_columns] if keyed else [])
    return insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns)).returning(*returned)


def adopt_inserted(model: type[Base], pk: Any, values: dict[str, Any]) -> Any:
    """The row just inserted with ``values`` (primary key ``pk``) as a persistent object in the
    session, without reading it back: every column not in ``values`` takes its Python-side scalar
    default, else NULL. Only for tables without server-side defaults (nothing to read back)."""
    instance = model()
    mapper = sa.inspect(model)
    for attr in mapper.column_attrs:
        column = attr.columns[0]
        if attr.key in values:
            value = values[attr.key]
        elif column.primary_key:
            value = pk
        else:
            assert column.server_default is None, f"{model.__name__}.{attr.key} has a server default"
            default = column.default
            value = default.arg if default is not None and default.is_scalar else None
        setattr(instance, attr.key, value)
    return attach_detached(instance)


def adopt_loaded(model: type[Base], values: dict[str, Any]) -> Any:
    """A row a raw statement read (``values``: every column attribute, as the ORM hands them back)
    as the session's persistent object, as an ORM load would give it: the object already in the
    session under that primary key if there is one, else one built from ``values`` and attached
    without a SELECT."""
    mapper = sa.inspect(model)
    key = mapper.identity_key_from_primary_key([values[column.key] for column in mapper.primary_key])
    present = db.session.identity_map.get(key)
    if present is not None:
        return present
    instance = model()
    for name, value in values.items():
        setattr(instance, name, value)
    return attach_detached(instance)


def attach_detached(instance: Any) -> Any:
    """Put an object built in Python for a row that exists into the session as persistent (no SELECT)."""
    make_transient_to_detached(instance)
    db.session.add(instance)
    return instance


def detached_copy(instance: Any) -> Any:
    """A copy of a loaded row (columns only) that belongs to no session: safe to keep across
    sessions and threads (a process-wide cache) and to ``merge(load=False)`` into a session later."""
    mapper = sa.inspect(type(instance))
    copy = mapper.class_()
    for attr in mapper.column_attrs:
        setattr(copy, attr.key, getattr(instance, attr.key))
    make_transient_to_detached(copy)
    return copy


_MEMO_KEY = "memo_in_transaction"


def memo_in_transaction(key: Any, load: Any, *, models: tuple[type[Base], ...]) -> Any:
    """``load()`` once per transaction: later calls with ``key`` in the same transaction get the
    first answer, until a flush in this session writes a row of one of ``models`` (then it is read
    again). For facts read several times per request (a member's consents on a booking)."""
    session = db.session()
    transaction = session.get_transaction()
    memo = session.info.get(_MEMO_KEY)
    if transaction is not None and memo is not None and memo[0] is transaction and key in memo[2]:
        return memo[2][key]
    return remember_in_transaction(key, load(), models=models)


def remember_in_transaction(key: Any, value: Any, *, models: tuple[type[Base], ...]) -> Any:
    """Hand ``memo_in_transaction`` a value read along with something else (the member's tier with
    their session), so that its first call for ``key`` in this transaction needs no statement."""
    session = db.session()
    transaction = session.get_transaction()
    if transaction is None:
        return value
    memo = session.info.get(_MEMO_KEY)
    if memo is None or memo[0] is not transaction:
        memo = (transaction, set(), {})
        session.info[_MEMO_KEY] = memo
    memo[1].update(models)
    memo[2][key] = value
    return value


@event.listens_for(Session, "after_flush")
def _forget_memos_on_write(session: Session, _flush_context: Any) -> None:
    memo = session.info.get(_MEMO_KEY)
    if memo is None:
        return
    watched = memo[1]
    if any(isinstance(obj, tuple(watched)) for obj in (*session.new, *session.dirty, *session.deleted)):
        session.info.pop(_MEMO_KEY, None)


def forget_memo(key: Any) -> None:
    """Drop one memo of this transaction (after a write the flush does not see: a Core statement)."""
    memo = db.session().info.get(_MEMO_KEY)
    if memo is not None:
        memo[2].pop(key, None)


def driver_execute(sql: str, params: Any, session: Session | None = None) -> Any:
    """Run ``sql`` (psycopg's ``%s`` / ``%(name)s`` placeholders) on the session's own connection and
    transaction, straight through the driver: a hot path's statement without SQLAlchemy's execution
    machinery, which costs more client CPU than the statement. Returns the driver's cursor.

    What SQLAlchemy would do on an error is done here: a driver error is raised as SQLAlchemy's
    (``OperationalError`` for a lost server or a statement timeout: a 503 at the HTTP edge, not a
    500), and a connection lost on the way is invalidated rather than used again. Statement events
    do not see the statement. Flush first if ORM changes must reach the database before it runs.
    ``session``: another session than ``db.session`` (a commit hook's own)."""
    connection = (session or db.session).connection()
    driver = connection.connection.driver_connection
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        return driver.execute(sql, params)  # type: ignore[union-attr]
    except dbapi_error as exc:
        lost = driver.closed or driver.broken  # type: ignore[union-attr]
        if lost:
            connection.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, params, exc, dbapi_error, connection_invalidated=lost, dialect=connection.dialect
        ) from exc
