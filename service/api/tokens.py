"""API tokens: shown once, stored as SHA-256, compared in constant time, revocable."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, select, true, update

from ..db import get_session, utcnow
from ..domain.membership import MembershipStatus
from ..models import Account, ApiToken, AuditLog, Membership

PREFIX = "dawns_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenExists(Exception):
    pass


def create_token(name: str, actor: str = "cli", actor_id: int | None = None) -> str:
    session = get_session()
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenExists(name)
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    session.add(AuditLog(actor_id=actor_id, actor_email=actor, action="token_create", details={"name": name}))
    session.commit()
    return token


def revoke_token(name: str, actor: str = "cli", actor_id: int | None = None) -> bool:
    session = get_session()
    row = session.scalars(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))).first()
    if row is None:
        return False
    row.revoked_at = utcnow()
    session.add(AuditLog(actor_id=actor_id, actor_email=actor, action="token_revoke", details={"name": name}))
    session.commit()
    return True


def list_tokens() -> list[ApiToken]:
    return list(get_session().scalars(select(ApiToken).order_by(ApiToken.created_at.desc())))


_last_recorded: dict[int, float] = {}


def _note_use(token_id: int, engine) -> None:
    """Record last use at most every five minutes per process: the hot path rarely writes."""
    now = time.monotonic()
    if now - _last_recorded.get(token_id, -1e9) < 300:
        return
    _last_recorded[token_id] = now
    with engine.begin() as conn:
        conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def _member_statement(by_id: bool):
    member = select(Membership.status, Membership.paid_through).join(Account, Account.id == Membership.account_id)
    return member.where(Account.id == bindparam("member_id") if by_id else Account.email == bindparam("email"))


def _lookup_statement(by_id: bool):
    """The token's row joined with the member's membership (bound parameters, built once)."""
    member = _member_statement(by_id).subquery()
    return (select(ApiToken.id, ApiToken.token_hash, ApiToken.revoked_at, member.c.status, member.c.paid_through)
            .outerjoin(member, true())
            .where(ApiToken.token_hash == bindparam("digest")))


_BY_ID = _lookup_statement(True)
_BY_EMAIL = _lookup_statement(False)
_MEMBER_BY_ID = _member_statement(True)
_MEMBER_BY_EMAIL = _member_statement(False)

# Live tokens seen recently, by hash: token id and when it was last confirmed live. A revoked
# token stops working on the paywall route within API_TOKEN_CACHE_SECONDS (default 5 s); on
# every other route at once.
_live_tokens: dict[str, tuple[int, float]] = {}


def entitlement_lookup(engines: tuple, token: str, *, email: str | None, member_id: int | None,
                       cache_seconds: float = 0.0):
    """None if the token is unknown or revoked; (None, None) if the token is good and the
    member unknown; else (status, paid_through). One statement on an autocommit connection:
    the token check and the membership read together, or the membership alone while the
    token is known to be live."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    engine, write_engine = engines
    now = time.monotonic()
    cached = _live_tokens.get(digest) if cache_seconds > 0 else None
    fresh = cached is not None and now - cached[1] < cache_seconds
    if member_id is not None:
        stmt = _MEMBER_BY_ID if fresh else _BY_ID
        params: dict[str, Any] = {"digest": digest, "member_id": member_id}
    else:
        stmt = _MEMBER_BY_EMAIL if fresh else _BY_EMAIL
        params = {"digest": digest, "email": (email or "").strip().lower()}
    row = _fetch_one(engine, stmt, params)
    if fresh:
        token_id = cached[0]
        status, paid_through = row if row is not None else (None, None)
    else:
        if row is None:
            return None
        token_id, stored_hash, revoked_at, status, paid_through = row
        if revoked_at is not None or not hmac.compare_digest(stored_hash, digest):
            _live_tokens.pop(digest, None)
            return None
        if cache_seconds > 0:
            _live_tokens[digest] = (token_id, now)
    _note_use(token_id, write_engine)
    return (MembershipStatus(status) if status is not None else None), _as_utc(paid_through)


_thread = threading.local()


def _fetch_one(engine, stmt, params: dict[str, Any]):
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


def verify(token: str) -> ApiToken | None:
    """The row for a live token, else None. The lookup is by hash (an index), and the stored
    hash is compared again in constant time."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    session = get_session()
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        row.last_used_at = now  # coarse, so the hot path rarely writes
        session.commit()
    return row
