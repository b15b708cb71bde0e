"""Single-use links sent by email (confirm an address; later sign-in links and invitations).

The raw token goes only into the email; the database keeps its SHA-256, the purpose, the
account and an expiry. Opening a link (GET) only looks; using it (POST) marks it used in the
same transaction as the change it makes, so a second use changes nothing.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Account, AccountToken


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(session: Session, purpose: str, account: Account | None, ttl: timedelta,
          data: dict[str, Any] | None = None) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(AccountToken(token_hash=_hash(token), purpose=purpose, account_id=account.id if account else None,
                             data=data or {}, created_at=now, expires_at=now + ttl))
    return token


def peek(session: Session, purpose: str, token: str) -> AccountToken | None:
    """The live link for this token, without using it (a mail scanner's GET burns nothing)."""
    if not token or len(token) > 200:
        return None
    row = session.scalars(select(AccountToken).where(AccountToken.token_hash == _hash(token),
                                                     AccountToken.purpose == purpose)).first()
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    return row


def use(session: Session, purpose: str, token: str) -> AccountToken | None:
    """Mark the link used, atomically: of two simultaneous uses only one gets the row."""
    row = peek(session, purpose, token)
    if row is None:
        return None
    claimed = session.execute(update(AccountToken).where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
                              .values(used_at=utcnow()))
    if claimed.rowcount != 1:
        return None
    session.refresh(row)
    return row


def withdraw(session: Session, purpose: str, account: Account) -> None:
    """Older live links of this purpose stop working (the newest request wins)."""
    session.execute(update(AccountToken).where(AccountToken.account_id == account.id, AccountToken.purpose == purpose,
                                               AccountToken.used_at.is_(None)).values(used_at=utcnow()))
