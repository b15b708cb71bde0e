"""Engine, session and declarative base.

Plain SQLAlchemy 2: one engine per app, one session per app context. Only service functions
use `get_session()` and commit; views never touch it.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import DateTime, MetaData, bindparam, create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Made by migrations with SQL that SQLAlchemy cannot describe (a pg_trgm expression index);
# the drift check leaves them out.
MIGRATION_ONLY_INDEXES = frozenset({"ix_accounts_name_trgm"})


def include_in_drift_check(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    # No pre-ping (a round trip on every checkout, too dear for the paywall's hot path):
    # connections are recycled, and a request that meets a dropped connection fails cleanly
    # (JSON 5xx / error page) while the pool replaces it.
    # hide_parameters: a failed statement's values (a password hash, a token's hash, an email)
    # never reach an exception message or a log line.
    kwargs: dict = {"future": True, "pool_recycle": 1800, "pool_size": 10, "max_overflow": 20,
                    "hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs = {"future": True, "hide_parameters": True}
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        no_jit(engine)
    if url.startswith("sqlite"):
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Let SQLAlchemy, not pysqlite, begin transactions, so SAVEPOINTs work
            # (https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # IMMEDIATE takes the write lock up front: SQLite has no row locks, so writers queue
            # here (waiting up to busy_timeout) instead of failing on a read-then-write upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def no_jit(engine: Engine) -> None:
    """An OLTP workload: PostgreSQL's JIT compiles big plans for milliseconds of work (it cost
    the staff list ~420 ms a page at a million members), so the service's sessions turn it off."""
    @event.listens_for(engine, "connect")
    def _jit_off(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            cur.execute("SET jit = off")
        dbapi_conn.commit()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"], app.config.get("SQLITE_BUSY_TIMEOUT", 30.0))
    app.extensions["db_engine"] = engine
    if engine.dialect.name == "postgresql":
        # Single-statement reads on the hot path (the paywall): autocommit, no reset round trip.
        app.extensions["db_read_engine"] = create_engine(
            app.config["DATABASE_URL"], isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
            pool_recycle=1800, pool_size=10, max_overflow=20, hide_parameters=True)
        no_jit(app.extensions["db_read_engine"])
    else:
        app.extensions["db_read_engine"] = engine
    app.extensions["db_sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_session)


def queue_session() -> Session:
    """A session for the worker's Stripe queue, owned (and closed) by the caller.

    On PostgreSQL its commits do not wait for the WAL flush (`synchronous_commit = off`): an
    applied event and its outcome commit together, and the event itself was stored durably when
    the webhook answered, so a crash can only lose the newest applications, which are then
    applied again (they are idempotent). Every other commit (the webhook's, any page's) stays
    synchronous, and the next synchronous commit flushes these too."""
    engine = current_app.extensions["db_engine"]
    if engine.dialect.name != "postgresql":
        return current_app.extensions["db_sessionmaker"]()
    if "db_queue_sessionmaker" not in current_app.extensions:
        queue_engine = create_engine(engine.url, pool_recycle=1800, pool_size=4, max_overflow=4, hide_parameters=True)
        no_jit(queue_engine)

        @event.listens_for(queue_engine, "connect")
        def _async_commit(dbapi_conn, _record):
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit = off")
            dbapi_conn.commit()

        current_app.extensions["db_queue_engine"] = queue_engine
        current_app.extensions["db_queue_sessionmaker"] = sessionmaker(queue_engine, expire_on_commit=False)
    return current_app.extensions["db_queue_sessionmaker"]()


def write_now(session: Session, obj: Any, values: dict[str, Any]) -> None:
    """UPDATE these columns of a persistent row now, with one Core statement, and keep the ORM
    object in step (the values become its committed state, so no flush writes them again).

    For the worker's hottest writes: a unit-of-work flush costs several times the statement.
    Columns changed otherwise on the object still flush as usual."""
    if not values:
        return
    mapper = inspect(obj).mapper
    table = mapper.local_table
    values = {**values, "updated_at": utcnow()} if "updated_at" in table.c else values
    (pk,) = mapper.primary_key
    session.connection().execute(_update_by_pk(table, pk.name), {"_pk": getattr(obj, pk.key), **values},)
    for key, value in values.items():
        set_committed_value(obj, key, value)


@functools.lru_cache(maxsize=None)
def _update_by_pk(table: Any, pk: str) -> Any:
    return table.update().where(table.c[pk] == bindparam("_pk"))


def get_engine() -> Engine:
    return current_app.extensions["db_engine"]



def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["db_sessionmaker"]()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


