"""Read-side queries over members, shared by the staff console, the CSV export and the API."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import ENTITLEMENT, MembershipStatus, Role, Until, entitled
from ..models import Account, Membership, StripeCustomer
from .service import grace

MAX_PER_PAGE = 100


@dataclass(frozen=True)
class MemberFilter:
    q: str = ""
    email: str = ""
    status: MembershipStatus | None = None
    entitled: bool | None = None
    paying_twice: bool = False
    sort: str = "newest"  # newest | oldest (join date)


def entitled_clause(now: datetime, grace_period: timedelta) -> ColumnElement[bool]:
    """`domain.membership.entitled` as SQL, built from the same table (ENTITLEMENT)."""
    clauses = []
    for status, until in ENTITLEMENT.items():
        is_status = Membership.status == status
        if until is Until.ALWAYS:
            clauses.append(is_status)
        elif until is Until.PAID_THROUGH:
            clauses.append(and_(is_status, or_(Membership.paid_through.is_(None), Membership.paid_through > now)))
        elif until is Until.PAID_THROUGH_AND_GRACE:
            clauses.append(and_(is_status, or_(Membership.paid_through.is_(None),
                                               Membership.paid_through > now - grace_period)))
    return or_(*clauses) if clauses else false()


def _customer_id_subquery():
    return (
        select(StripeCustomer.stripe_id)
        .where(StripeCustomer.account_id == Account.id, StripeCustomer.deleted.is_(False))
        .order_by(StripeCustomer.id.desc())
        .limit(1)
        .correlate(Account)
        .scalar_subquery()
    )


def _base(f: MemberFilter) -> Select:
    stmt = select(Account, Membership).join(Membership, Membership.account_id == Account.id).where(
        Account.role == Role.MEMBER
    )
    if f.email:
        stmt = stmt.where(Account.email == f.email.strip().lower())
    if f.q:
        q = f.q.strip().lower()
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # Email: exact or prefix (an index range scan); name: contains, case-insensitive.
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


def search(session: Session, f: MemberFilter, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    page = max(1, page)
    base = _base(f)
    total = session.scalar(select(func.count()).select_from(base.with_only_columns(Account.id).subquery()))
    order = Account.created_at.asc() if f.sort == "oldest" else Account.created_at.desc()
    stmt = base.add_columns(_customer_id_subquery()).order_by(order, Account.id.desc()) \
        .limit(per_page).offset((page - 1) * per_page)
    return [member_dict(a, m, c) for a, m, c in session.execute(stmt)], total or 0


def iter_all(session: Session, f: MemberFilter, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Every matching member, streamed from a server-side cursor in flat memory."""
    order = Account.created_at.asc() if f.sort == "oldest" else Account.created_at.desc()
    stmt = _base(f).add_columns(_customer_id_subquery()).order_by(order, Account.id.desc()) \
        .execution_options(yield_per=chunk)
    for account, membership, customer_id in session.execute(stmt):
        yield member_dict(account, membership, customer_id)
        session.expunge(account)
        session.expunge(membership)


def get_member(session: Session, member_id: int) -> dict[str, Any] | None:
    row = session.execute(
        select(Account, Membership, _customer_id_subquery())
        .join(Membership, Membership.account_id == Account.id)
        .where(Account.id == member_id)
    ).first()
    return member_dict(*row) if row else None


def member_dict(account: Account, membership: Membership, customer_id: str | None) -> dict[str, Any]:
    level = membership.level
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "status": membership.status.value,
        "entitled": entitled(membership.status, membership.paid_through, utcnow(), grace()),
        "level": {"name": level.name, "amount": level.amount, "currency": level.currency,
                  "interval": level.interval.value} if level else None,
        "paying_twice": membership.paying_twice,
        "paid_through": membership.paid_through,
        "cancel_at_period_end": membership.cancel_at_period_end,
        "stripe_customer_id": customer_id,
        "newsletter": {"status": membership.newsletter_status, "synced_at": membership.newsletter_synced_at},
        "created_at": account.created_at,
    }
