"""API tokens: shown once, stored as SHA-256, compared in constant time, revocable."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select

from ..db import get_session, utcnow
from ..models import ApiToken, AuditLog

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
