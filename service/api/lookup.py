"""The paywall's one statement: the bearer token's row and the member's membership (with the
name and slug of the organisation whose seat entitles them), read together on an autocommit
connection, straight on the driver (see fastpath.py)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, true
from sqlalchemy.exc import DBAPIError

from ..accounts import api_tokens
from ..domain.membership import Comp, MembershipStatus
from ..models import Account, ApiToken, Membership, Organisation
from . import auth


@dataclass(frozen=True)
class MemberRow:
    status: MembershipStatus
    paid_through: datetime | None
    level: str | None
    comp: Comp
    organisation_name: str | None = None
    organisation_slug: str | None = None


def _member_statement(by_id: bool):
    # The organisation is joined in the same statement (an outer join on its primary key):
    # the answer still costs one round trip.
    member = (select(Membership.status, Membership.paid_through, Membership.level_name, Membership.comped_at,
                     Membership.comped_until, Organisation.name.label("organisation_name"),
                     Organisation.slug.label("organisation_slug"))
              .join(Account, Account.id == Membership.account_id)
              .outerjoin(Organisation, Organisation.id == Membership.organisation_id))
    return member.where(Account.id == bindparam("member_id") if by_id else Account.email == bindparam("email"))


def _lookup_statement(by_id: bool):
    """The token's row joined with the member's membership (bound parameters, built once)."""
    member = _member_statement(by_id).subquery()
    return (select(ApiToken.id, ApiToken.token_hash, ApiToken.revoked_at, ApiToken.scopes,
                   member.c.status, member.c.paid_through, member.c.level_name, member.c.comped_at,
                   member.c.comped_until, member.c.organisation_name, member.c.organisation_slug)
            .outerjoin(member, true())
            .where(ApiToken.token_hash == bindparam("digest")))


_BY_ID = _lookup_statement(True)
_BY_EMAIL = _lookup_statement(False)
_MEMBER_BY_ID = _member_statement(True)
_MEMBER_BY_EMAIL = _member_statement(False)


def entitlement_lookup(engines: tuple, digest: str, *, email: str | None, member_id: int | None,
                       cache_seconds: float = 0.0):
    """The paywall's one statement: the token's row and the member's membership together (or
    the membership alone while the token is known to be live). Returns (verdict, member), where
    member is a MemberRow, or None when no such member."""
    engine, write_engine = engines
    caller = auth.live_tokens.get(digest, cache_seconds)
    if member_id is not None:
        stmt = _MEMBER_BY_ID if caller else _BY_ID
        params: dict[str, Any] = {"digest": digest, "member_id": member_id}
    else:
        stmt = _MEMBER_BY_EMAIL if caller else _BY_EMAIL
        params = {"digest": digest, "email": (email or "").strip().lower()}
    row = _fetch_one(engine, stmt, params)
    verdict: auth.Caller | auth.Denied
    if caller is not None:
        verdict, member = caller, row
    else:
        token_row, member = (row[:4], row[4:]) if row is not None else ((None,) * 4, None)
        verdict = auth.judge(digest, *token_row, scope=auth.ENTITLEMENTS_READ)
        auth.live_tokens.remember(digest, verdict, cache_seconds)
    if isinstance(verdict, auth.Caller):
        api_tokens.note_use(verdict.token_id, write_engine)
    if member is None or member[0] is None:
        return verdict, None
    status, paid_through, level, comped_at, comped_until, org_name, org_slug = member
    return verdict, MemberRow(MembershipStatus(status), _as_utc(paid_through), level,
                              Comp(granted=comped_at is not None, until=_as_utc(comped_until)), org_name, org_slug)


_thread = threading.local()


def _fetch_one(engine, stmt, params: dict[str, Any]):
    """Driver errors (a refused connection, a dropped one) come out as SQLAlchemy's own, so the
    caller has one kind of database failure to answer with a JSON 503."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        return _fetch_one_raw(engine, stmt, params)
    except dbapi_error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi_error) from exc


def _fetch_one_raw(engine, stmt, params: dict[str, Any]):
    """Compiled once per engine; runs straight on the driver's cursor (no ORM, no transaction).

    On PostgreSQL each server thread keeps one autocommit connection for this read (taken
    out of the pool once); a broken one is dropped and the next request opens a new one."""
    sql, order = _compiled(engine, stmt)
    args = tuple(params[k] for k in order) if order else params
    if engine.dialect.name != "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql, args)
            row = cur.fetchone()
            cur.close()
            raw.rollback()
            return row
        finally:
            raw.close()
    conns = getattr(_thread, "conns", None)
    if conns is None:
        conns = _thread.conns = {}
    key = engine.__dict__.get("_paywall_key")
    if key is None:  # the engine's URL: ids of dead engines can be reused
        key = engine.__dict__["_paywall_key"] = engine.url.render_as_string(hide_password=False)
    conn = conns.get(key)
    if conn is None:
        proxy = engine.raw_connection()
        conn = proxy.driver_connection
        proxy.detach()  # this thread's own from now on
        conns[key] = conn
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()
    except Exception:
        conns.pop(key, None)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - it is being discarded anyway
            pass
        raise


def close_thread_connections() -> None:
    """Close this thread's hot-path connections (tests, and engines being disposed)."""
    for conn in getattr(_thread, "conns", {}).values():
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    _thread.conns = {}


_compiled_cache: dict[tuple[str, int], tuple[str, tuple[str, ...] | None]] = {}


def _compiled(engine, stmt) -> tuple[str, tuple[str, ...] | None]:
    # The SQL depends on the dialect only (an engine's id() can be reused after it is gone).
    key = (engine.dialect.name, id(stmt))
    hit = _compiled_cache.get(key)
    if hit is None:
        compiled = stmt.compile(dialect=engine.dialect)
        hit = (str(compiled), tuple(compiled.positiontup) if compiled.positional else None)
        _compiled_cache[key] = hit
    return hit


def _as_utc(value):
    """Raw driver values: SQLite gives text, PostgreSQL an aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
