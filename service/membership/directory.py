"""Read-side queries over members (and organisations), shared by the staff console, the CSV
export and the API."""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, tuple_
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import ENTITLEMENT, MembershipStatus, Role, Until, Via, standing
from ..models import Account, Membership, Organisation, Seat
from .organisations import ACTIVE, REMOVED, SUSPENDED
from .service import comp_of, entitled_clause, grace

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
    found = {a.id: member_dict(a, m, o) for a, m, o in session.execute(
        _members_with_organisation().where(Account.id.in_(ids), Account.role == Role.MEMBER))}
    return [found[i] for i in ids if i in found]


def _members_with_organisation() -> Select:
    """Accounts with their membership and the organisation whose seat entitles them, read
    together (no query per row)."""
    return (select(Account, Membership, Organisation).join(Membership, Membership.account_id == Account.id)
            .outerjoin(Organisation, Organisation.id == Membership.organisation_id))


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
    row = session.execute(_members_with_organisation().where(Account.id == member_id)).first()
    return member_dict(*row) if row else None


def organisation_ref(via: Via | None, name: str | None, slug: str | None) -> dict[str, str] | None:
    """`{"name", "slug"}` of the organisation, given only when a seat is what entitles: the
    contract's `organisation` of member JSON, the entitlement answer and the paywall's JWT."""
    if via is not Via.ORGANISATION or name is None:
        return None
    return {"name": name, "slug": slug or ""}


def member_standing(membership: Membership | None, now: datetime | None = None) -> tuple[bool, Via | None]:
    """Entitled now, and through what (`domain.membership.standing`, with the member's comp)."""
    if membership is None:
        return False, None
    return standing(membership.status, membership.paid_through, now or utcnow(), grace(), comp_of(membership))


def member_dict(account: Account, membership: Membership, organisation: Organisation | None = None) -> dict[str, Any]:
    """The member as the API and the staff console show it. `organisation`: the one read with
    the row (see `_members_with_organisation`); without it, the membership's own link."""
    level = membership.level
    entitled, via = member_standing(membership)
    organisation = organisation if organisation is not None else membership.organisation
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "status": membership.status.value,
        "entitled": entitled,
        "via": via.value if via else None,
        "organisation": organisation_ref(via, organisation.name, organisation.slug) if organisation else None,
        "level": {"name": level.name, "amount": level.amount, "currency": level.currency,
                  "interval": level.interval.value} if level else None,
        "paying_twice": membership.paying_twice,
        "paid_through": membership.paid_through,
        "cancel_at_period_end": membership.cancel_at_period_end,
        "stripe_customer_id": membership.stripe_customer_id,
        "newsletter": {"status": membership.newsletter_status, "synced_at": membership.newsletter_synced_at},
        "created_at": account.created_at,
    }


def via_clause(now: datetime, grace_period: timedelta) -> ColumnElement[str | None]:
    """`domain.membership.standing`'s `via` as SQL (the CSV export): what entitles the member
    now, or NULL. Built from the same table as `entitled_clause`: a state that entitles gives
    its own source, else a live comp gives `comp`."""
    whens = []
    for status, until in ENTITLEMENT.items():
        if until is Until.NEVER:
            continue
        _live, via = standing(status, None, now, grace_period)  # the source this state names
        is_status = Membership.status == status
        if until is Until.PAID_THROUGH:
            is_status = and_(is_status, or_(Membership.paid_through.is_(None), Membership.paid_through > now))
        elif until is Until.PAID_THROUGH_AND_GRACE:
            is_status = and_(is_status, or_(Membership.paid_through.is_(None),
                                            Membership.paid_through > now - grace_period))
        whens.append((is_status, (via or Via.MEMBERSHIP).value))
    whens.append((and_(Membership.comped_at.is_not(None),
                       or_(Membership.comped_until.is_(None), Membership.comped_until > now)), Via.COMP.value))
    return case(*whens, else_=None)


# --- organisations (the API's read side) --------------------------------------------------------

ORGANISATIONS_PER_PAGE = 50


@dataclass
class OrganisationPage:
    rows: list[dict[str, Any]]
    page: int
    per_page: int
    total: int


def list_organisations(session: Session, *, page: int = 1, per_page: int = ORGANISATIONS_PER_PAGE) -> OrganisationPage:
    """Organisations by id, a page at a time, with their seat counts (one grouped query for
    the page, not one per organisation). Organisations are few: the count is exact."""
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    page = max(1, page)
    orgs = session.scalars(select(Organisation).order_by(Organisation.id)
                           .offset((page - 1) * per_page).limit(per_page)).all()
    counts = _seat_counts(session, [o.id for o in orgs])
    total = int(session.scalar(select(func.count(Organisation.id))) or 0)
    return OrganisationPage([organisation_dict(o, counts.get(o.id, {})) for o in orgs], page, per_page, total)


def get_organisation(session: Session, organisation_id: int) -> dict[str, Any] | None:
    """One organisation with its live seats (active or suspended; removed ones are history)."""
    org = session.get(Organisation, organisation_id)
    if org is None:
        return None
    holders = session.execute(
        select(Seat.account_id, Account.email, Seat.status, Seat.taken_at).join(Account, Account.id == Seat.account_id)
        .where(Seat.organisation_id == org.id, Seat.status != REMOVED).order_by(Seat.taken_at, Seat.id)).all()
    data = organisation_dict(org, _seat_counts(session, [org.id]).get(org.id, {}))
    data["seat_holders"] = [{"member_id": account_id, "email": email, "status": status, "taken_at": taken_at}
                            for account_id, email, status, taken_at in holders]
    return data


def _seat_counts(session: Session, ids: list[int]) -> dict[int, dict[str, int]]:
    if not ids:
        return {}
    found: dict[int, dict[str, int]] = {}
    for org_id, status, n in session.execute(select(Seat.organisation_id, Seat.status, func.count())
                                             .where(Seat.organisation_id.in_(ids))
                                             .group_by(Seat.organisation_id, Seat.status)):
        found.setdefault(org_id, {})[status] = int(n)
    return found


def organisation_dict(org: Organisation, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "slug": org.slug,
        "status": MembershipStatus(org.status).value,
        "seats": {"used": counts.get(ACTIVE, 0), "total": org.seats, "suspended": counts.get(SUSPENDED, 0)},
        "domains": list(org.domains or []),
        "billing": org.billing,
        "paid_through": org.paid_through,
        "created_at": org.created_at,
    }
