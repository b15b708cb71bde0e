"""Read-side queries over members, shared by the staff console, the CSV export and the API."""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import MembershipStatus, Role
from ..models import Account, Membership
from .service import entitled_clause, grace

MAX_PER_PAGE = 100
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class MemberFilter:
    q: str = ""
    email: str = ""
    status: MembershipStatus | None = None
    entitled: bool | None = None
    paying_twice: bool = False
    sort: str = "newest"  # newest | oldest (join date)


def _filtered(f: MemberFilter, columns: Sequence[Any]) -> Select:
    """The filter as SQL over memberships (and accounts only when the filter needs them), so
    that on PostgreSQL a status or entitlement filter walks an index of memberships alone."""
    stmt = select(*columns)
    if f.q or f.email:
        stmt = stmt.join(Account, Account.id == Membership.account_id)
    if f.email:
        stmt = stmt.where(Account.email == f.email.strip().lower())
    if f.q:
        q = f.q.strip().lower()
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # Email: exact or prefix (the email index, text_pattern_ops on PostgreSQL); name:
        # contains, case-insensitive (a pg_trgm GIN index on lower(name) on PostgreSQL).
        stmt = stmt.where(or_(Account.email.like(f"{escaped}%", escape="\\"),
                              func.lower(Account.name).like(f"%{escaped}%", escape="\\")))
    if f.status is not None:
        stmt = stmt.where(Membership.status == f.status)
    if f.entitled is not None:
        cond = entitled_clause(utcnow(), grace())
        stmt = stmt.where(cond if f.entitled else ~cond)
    if f.paying_twice:
        stmt = stmt.where(Membership.paying_twice.is_(True))
    return stmt


def _ordered(f: MemberFilter, stmt: Select) -> Select:
    """Join date (memberships.created_at, set with the account), then id: a total order."""
    if f.sort == "oldest":
        return stmt.order_by(Membership.created_at.asc(), Membership.account_id.asc())
    return stmt.order_by(Membership.created_at.desc(), Membership.account_id.desc())


class BadCursor(ValueError):
    pass


# A keyset position: the join date (Unix seconds and microseconds, UTC) and the member id. Any
# string of this shape is a valid position, so the API can document it exactly.
CURSOR_PATTERN = r"^[0-9]{1,11}\.[0-9]{6}_[0-9]{1,10}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(created_at: datetime, account_id: int) -> str:
    delta = created_at.astimezone(timezone.utc) - EPOCH
    return f"{delta.days * 86400 + delta.seconds}.{delta.microseconds:06d}_{account_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    if not _CURSOR.fullmatch(cursor or ""):
        raise BadCursor("not a cursor of this list")
    stamp, _, account_id = cursor.partition("_")
    seconds, _, micros = stamp.partition(".")
    return EPOCH + timedelta(seconds=int(seconds), microseconds=int(micros)), int(account_id)


@dataclass
class Page:
    rows: list[dict[str, Any]]
    page: int
    per_page: int
    next_cursor: str | None
    estimate: int
    exact: bool


def search(session: Session, f: MemberFilter, *, page: int = 1, cursor: str | None = None,
           per_page: int = 50) -> Page:
    """One page of members: by `cursor` (keyset: the fast way on, at any depth) or by `page`.

    The ids are found first, from the filter alone (an index-only walk on PostgreSQL, even at
    page 2,000), and only that page's rows are read. The count is the planner's estimate on
    large results (an exact count of a million rows costs more than the page itself)."""
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    page = max(1, page)
    ids_stmt = _ordered(f, _filtered(f, [Membership.account_id, Membership.created_at]))
    if cursor:
        moment, account_id = decode_cursor(cursor)
        key = tuple_(Membership.created_at, Membership.account_id)
        ids_stmt = ids_stmt.where(key > tuple_(moment, account_id) if f.sort == "oldest"
                                  else key < tuple_(moment, account_id))
    else:
        ids_stmt = ids_stmt.offset((page - 1) * per_page)
    found = session.execute(ids_stmt.limit(per_page + 1)).all()
    more = len(found) > per_page
    found = found[:per_page]
    rows = _rows(session, [account_id for account_id, _ in found])
    next_cursor = encode_cursor(found[-1][1], found[-1][0]) if more and found else None
    if not cursor and not more and (found or page == 1):
        # The last page by number: what came before it and what is on it are the whole list
        # (a search that fits one page, the usual case, costs no count).
        estimate, exact = (page - 1) * per_page + len(found), True
    else:
        estimate, exact = count(session, f)
    return Page(rows, page, per_page, next_cursor, estimate, exact)


def _rows(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    found = {a.id: member_dict(a, m) for a, m in session.execute(
        select(Account, Membership).join(Membership, Membership.account_id == Account.id)
        .where(Account.id.in_(ids), Account.role == Role.MEMBER))}
    return [found[i] for i in ids if i in found]


EXACT_BELOW = 10_000


def count(session: Session, f: MemberFilter) -> tuple[int, bool]:
    """(how many, exact?): exact when small, else PostgreSQL's planner estimate."""
    stmt = _filtered(f, [Membership.account_id])
    if session.get_bind().dialect.name == "postgresql":
        compiled = stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
        params = {k: (v.value if hasattr(v, "value") else v) for k, v in compiled.params.items()}
        plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", params).scalar()
        estimate = int((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]["Plan Rows"])
        if estimate >= EXACT_BELOW:
            return estimate, False
    exact = session.scalar(select(func.count()).select_from(stmt.subquery()))
    return int(exact or 0), True


def get_member(session: Session, member_id: int) -> dict[str, Any] | None:
    row = session.execute(
        select(Account, Membership).join(Membership, Membership.account_id == Account.id)
        .where(Account.id == member_id)
    ).first()
    return member_dict(*row) if row else None


def member_dict(account: Account, membership: Membership) -> dict[str, Any]:
    level = membership.level
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "status": membership.status.value,
        "entitled": membership.entitled_at(utcnow(), grace()),
        "level": {"name": level.name, "amount": level.amount, "currency": level.currency,
                  "interval": level.interval.value} if level else None,
        "paying_twice": membership.paying_twice,
        "paid_through": membership.paid_through,
        "cancel_at_period_end": membership.cancel_at_period_end,
        "stripe_customer_id": membership.stripe_customer_id,
        "newsletter": {"status": membership.newsletter_status, "synced_at": membership.newsletter_synced_at},
        "created_at": account.created_at,
    }
