"""API tokens: shown once, stored as SHA-256, scoped, revocable (the CLI and the admin page).

Judging a presented token (unknown, revoked, scope) is `service/api/auth.py`'s job.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.engine import Engine

from ..db import get_session, utcnow
from ..models import ApiToken, AuditLog

PREFIX = "dawns_"
ENTITLEMENTS_READ = "entitlements:read"
MEMBERS_READ = "members:read"
ORGANISATIONS_READ = "organisations:read"
METRICS_READ = "metrics:read"
SCOPES = (ENTITLEMENTS_READ, MEMBERS_READ, ORGANISATIONS_READ, METRICS_READ)
DEFAULT_SCOPES = (ENTITLEMENTS_READ,)

NAME_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
NAME_RULE = "letters, digits, dot, underscore and hyphen; 1 to 64 characters"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenExists(Exception):
    pass


class TokenInvalid(ValueError):
    """A name or scope that is not allowed; the message says which rule."""


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise TokenInvalid(f"A token name uses {NAME_RULE}.")
    return name


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(scopes))  # keep the order given, drop repeats
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise TokenInvalid(f"Unknown scope {unknown[0]!r}; the scopes are {', '.join(SCOPES)}.")
    if not chosen:
        raise TokenInvalid("Give a token at least one scope.")
    return chosen


def create_token(name: str, scopes: Iterable[str] = DEFAULT_SCOPES, actor: str = "cli",
                 actor_id: int | None = None) -> str:
    check_name(name)
    chosen = check_scopes(scopes)
    session = get_session()
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))) is not None:
        raise TokenExists(name)
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token), scopes=" ".join(chosen)))
    session.add(AuditLog(actor_id=actor_id, actor_email=actor, action="token_create",
                         details={"name": name, "scopes": list(chosen)}))
    try:
        session.commit()
    except IntegrityError:  # the same name, created a moment ago
        session.rollback()
        raise TokenExists(name) from None
    return token


def revoke_token(name: str | None = None, *, token_id: int | None = None, actor: str = "cli",
                 actor_id: int | None = None) -> ApiToken | None:
    """Revoke a live token by name (CLI) or by id (the admin page, which can reach any name)."""
    session = get_session()
    stmt = select(ApiToken).where(ApiToken.revoked_at.is_(None))
    stmt = stmt.where(ApiToken.id == token_id) if token_id is not None else stmt.where(ApiToken.name == name)
    row = session.scalars(stmt).first()
    if row is None:
        return None
    row.revoked_at = utcnow()
    session.add(AuditLog(actor_id=actor_id, actor_email=actor, action="token_revoke",
                         details={"name": row.name, "id": row.id}))
    session.commit()
    return row


def list_tokens() -> list[ApiToken]:
    return list(get_session().scalars(select(ApiToken).order_by(ApiToken.created_at.desc())))




_last_recorded: dict[int, float] = {}


def note_use(token_id: int, engine: Engine) -> None:
    """Record last use at most every five minutes per process: the hot path rarely writes."""
    now = time.monotonic()
    if now - _last_recorded.get(token_id, -1e9) < 300:
        return
    _last_recorded[token_id] = now
    with engine.begin() as conn:
        conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))
