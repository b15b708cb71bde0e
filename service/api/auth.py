"""One way in for every API route, the paywall's fast path included (SPEC "Trust rules").

Reading the bearer token, judging a stored token row (unknown, revoked, wrong scope), the error
bodies and the headers that go with them all live here. The Flask routes look the row up with
`authenticate`; the fast path reads the same columns inside its one combined statement and
hands them to `judge`, so neither holds a second copy of these rules.

Nothing here ever puts a token (raw or hashed) into a message, a log line or a key: a caller is
known by its token id from here on.
"""
from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..accounts.api_tokens import (  # noqa: F401  (the scopes, re-exported for the routes)
    ENTITLEMENTS_READ,
    MEMBERS_READ,
    METRICS_READ,
    ORGANISATIONS_READ,
    PREFIX,
    hash_token,
)
from ..errors import error_body
from ..models import ApiToken

MAX_TOKEN_LENGTH = 200

REALM = 'Bearer realm="dawns-membership"'


@dataclass(frozen=True)
class Caller:
    """A live token: who is asking, by id only."""

    token_id: int
    scopes: frozenset[str]


@dataclass(frozen=True)
class Denied:
    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


# RFC 6750 section 3: 401 with a challenge, 403 with error="insufficient_scope".
MISSING = Denied(401, "unauthorized", "Send an API token: Authorization: Bearer <token>.", (("WWW-Authenticate", REALM),))
INVALID = Denied(401, "unauthorized", "The API token is not valid (unknown or revoked).",
                 (("WWW-Authenticate", f'{REALM}, error="invalid_token"'),))


def insufficient(scope: str) -> Denied:
    return Denied(403, "insufficient_scope", f"This token does not have the {scope} scope.",
                  (("WWW-Authenticate", f'{REALM}, error="insufficient_scope", scope="{scope}"'),))


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def digest_of(token: str) -> str | None:
    """The lookup key of a token that could be ours; None for anything else (no query made)."""
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    return hash_token(token)


def parse_scopes(stored: str | None) -> frozenset[str]:
    return frozenset((stored or "").split())


def judge(digest: str, token_id: int | None, stored_hash: str | None, revoked_at: datetime | None,
          scopes: str | None, scope: str) -> Caller | Denied:
    """The verdict on a stored token row (all None when no row matched)."""
    if token_id is None or stored_hash is None or revoked_at is not None:
        return INVALID
    if not hmac.compare_digest(stored_hash, digest):
        return INVALID
    granted = parse_scopes(scopes)
    if scope not in granted:
        return insufficient(scope)
    return Caller(token_id, granted)


def authenticate(session: Session, header: str | None, scope: str) -> Caller | Denied:
    """For the Flask API routes: one indexed read by hash."""
    token = bearer(header)
    if token is None:
        return MISSING
    digest = digest_of(token)
    if digest is None:
        return INVALID
    row = session.execute(select(ApiToken.id, ApiToken.token_hash, ApiToken.revoked_at, ApiToken.scopes)
                          .where(ApiToken.token_hash == digest)).first()
    if row is None:
        return INVALID
    return judge(digest, *row, scope=scope)


class LiveTokens:
    """Tokens the fast path has just judged live, by hash: a revoked token stops working there
    within `seconds` (API_TOKEN_CACHE_SECONDS), at once on every other route."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Caller, float]] = {}

    def get(self, digest: str, seconds: float) -> Caller | None:
        if seconds <= 0:
            return None
        hit = self._seen.get(digest)
        if hit is None or time.monotonic() - hit[1] >= seconds:
            return None
        return hit[0]

    def remember(self, digest: str, verdict: Caller | Denied, seconds: float) -> None:
        if isinstance(verdict, Caller):
            if seconds > 0:
                self._seen[digest] = (verdict, time.monotonic())
        else:
            self._seen.pop(digest, None)


live_tokens = LiveTokens()
