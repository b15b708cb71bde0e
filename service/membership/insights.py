"""The membership as a whole, for `/staff/insights` (SPEC "Insight and operations").

Every figure is a SQL aggregate over `membership_history`, never a loop over members: each
member's rows become *spans* (a state, level, value and DAWNS enrolment, from one change to the
next, by a window function over the `(account_id, at, id)` index), and a period's figures are
counts and sums over the spans that hold at its boundary or the changes inside it.

- members by state: the spans holding at each period's end;
- MRR: the monthly value (a yearly amount / 12) of the entitled spans at each period's end;
- new / cancelled: changes into an entitled state from one that is not / from an entitled
  state to canceled or lapsed, during the period;
- monthly churn: cancelled during the month / entitled at its start;
- failed-payment recovery: of the episodes of `past_due` that began in the range and have
  ended, the share whose next state was `active`, and the median days that took;
- DAWNS reach: members enrolled / members entitled, at each period's end;
- level mix: the entitled members and their MRR by level at the range's end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from ..db import UTCDateTime
from ..domain.membership import MembershipStatus
from ..models import MembershipHistory as H

MONTH, WEEK = "month", "week"
ALL, INDIVIDUAL, ORGANISATION = "all", "individual", "organisation"
ENDED = (MembershipStatus.CANCELED.value, MembershipStatus.LAPSED.value)
STATES = [s.value for s in MembershipStatus]


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    by: str = MONTH
    level: str | None = None  # a level name
    who: str = ALL  # individual, organisation or all

    @classmethod
    def default(cls, now: datetime) -> "Filters":
        """The last 12 months, by month."""
        return cls(start=month_start(now) - _months(11), end=now)


@dataclass
class Insights:
    periods: list[datetime]  # each period's start; the last one ends at `filters.end`
    ends: list[datetime]
    by_state: dict[str, list[int]] = field(default_factory=dict)
    mrr: list[int] = field(default_factory=list)  # cents
    currency: str = "usd"
    new: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    churn: list[float | None] = field(default_factory=list)  # by month only
    entitled_at_start: list[int] = field(default_factory=list)
    reach: list[float | None] = field(default_factory=list)
    enrolled: list[int] = field(default_factory=list)
    entitled: list[int] = field(default_factory=list)
    recovery_episodes: int = 0
    recovered: int = 0
    recovery_median_days: float | None = None
    level_mix: list[tuple[str, int, int]] = field(default_factory=list)  # (level, members, MRR)

    @property
    def recovery_rate(self) -> float | None:
        return self.recovered / self.recovery_episodes if self.recovery_episodes else None


def month_start(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _months(n: int) -> timedelta:
    return timedelta(days=31 * n)  # only to step back; month_start() lands on the 1st


def boundaries(f: Filters) -> list[datetime]:
    """Each period's start, from the one holding `f.start` to the one holding `f.end`."""
    out: list[datetime] = []
    if f.by == WEEK:
        day = f.start.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        at = day - timedelta(days=day.weekday())  # Mondays
        while at < f.end:
            out.append(at)
            at += timedelta(days=7)
        return out
    at = month_start(f.start)
    while at < f.end:
        out.append(at)
        at = month_start(at + timedelta(days=32))
    return out


def _points(values: list[datetime]):
    """The boundaries as a derived table `(i, at)`: a UNION ALL of literal rows (every backend)."""
    rows = [select(literal(i).label("i"), literal(v, UTCDateTime()).label("at")) for i, v in enumerate(values)]
    return union_all(*rows).subquery("points") if len(rows) > 1 else rows[0].subquery("points")


def _spans(f: Filters):
    """Each history row with the time of the member's next row (None: it still holds)."""
    following = func.lead(H.at).over(partition_by=H.account_id, order_by=(H.at, H.id))
    previous_entitled = func.lag(H.entitled).over(partition_by=H.account_id, order_by=(H.at, H.id))
    next_status = func.lead(H.to_status).over(partition_by=H.account_id, order_by=(H.at, H.id))
    return select(H.account_id, H.at, H.to_status, H.from_status, H.entitled, _level(H).label("level"),
                  H.monthly_value, H.currency, H.organisation_id, H.newsletter, following.label("until"),
                  previous_entitled.label("was_entitled"), next_status.label("next_status")).subquery("spans")


def _level(t):
    """The level a row counts under: its own, or, with none, an organisation's seat or a comp
    (neither carries a level of its own)."""
    return func.coalesce(t.level_name, case((t.organisation_id.is_not(None), "Organisation seat"),
                                            else_="Complimentary"))


def _filtered(s, f: Filters) -> list[Any]:
    conditions = []
    if f.level:
        conditions.append(s.c.level == f.level)
    if f.who == INDIVIDUAL:
        conditions.append(s.c.organisation_id.is_(None))
    elif f.who == ORGANISATION:
        conditions.append(s.c.organisation_id.is_not(None))
    return conditions


def _holding(s, p):
    return and_(s.c.at <= p.c.at, or_(s.c.until.is_(None), s.c.until > p.c.at))


def compute(session: Session, f: Filters) -> Insights:
    starts = boundaries(f)
    ends = [*starts[1:], f.end]
    out = Insights(periods=starts, ends=ends)
    n = len(starts)
    s = _spans(f)
    where = _filtered(s, f)

    # At each period's end: members by state; the entitled ones' MRR and DAWNS enrolment.
    p = _points(ends)
    rows = session.execute(
        select(p.c.i, s.c.to_status, func.count(), func.sum(case((s.c.entitled, s.c.monthly_value), else_=0)),
               func.sum(case((and_(s.c.entitled, s.c.newsletter), 1), else_=0)),
               func.sum(case((s.c.entitled, 1), else_=0)), func.max(s.c.currency))
        .select_from(p).join(s, _holding(s, p)).where(*where).group_by(p.c.i, s.c.to_status)).all()
    out.by_state = {state: [0] * n for state in STATES}
    out.mrr, out.enrolled, out.entitled = [0] * n, [0] * n, [0] * n
    currencies = {currency for *_, currency in rows if currency}
    out.currency = min(currencies) if currencies else "usd"  # the catalogue's: one currency
    for i, state, count, mrr, enrolled, entitled, _ in rows:
        out.by_state.setdefault(state, [0] * n)[i] += count
        out.mrr[i] += int(mrr or 0)
        out.enrolled[i] += int(enrolled or 0)
        out.entitled[i] += int(entitled or 0)
    out.reach = [e / t if t else None for e, t in zip(out.enrolled, out.entitled)]

    # Entitled at each period's start (the churn's denominator).
    q = _points(starts)
    at_start = dict(session.execute(
        select(q.c.i, func.count()).select_from(q).join(s, _holding(s, q)).where(s.c.entitled, *where)
        .group_by(q.c.i)).all())
    out.entitled_at_start = [int(at_start.get(i, 0)) for i in range(n)]

    # Changes in each period: new (into an entitled state) and cancelled (out of one, ended).
    period = case(*[(s.c.at >= start, i) for i, start in reversed(list(enumerate(starts)))], else_=-1)
    became = and_(s.c.entitled, or_(s.c.was_entitled.is_(None), s.c.was_entitled.is_(False)))
    left = and_(s.c.was_entitled.is_(True), s.c.entitled.is_(False), s.c.to_status.in_(ENDED))
    moved = session.execute(
        select(period.label("i"), func.sum(case((became, 1), else_=0)), func.sum(case((left, 1), else_=0)))
        .where(s.c.at >= starts[0], s.c.at < f.end, *where).group_by(period)).all()
    out.new, out.cancelled = [0] * n, [0] * n
    for i, new, cancelled in moved:
        if 0 <= i < n:
            out.new[i], out.cancelled[i] = int(new or 0), int(cancelled or 0)
    out.churn = [c / e if e else None for c, e in zip(out.cancelled, out.entitled_at_start)]

    _recovery(session, f, s, where, out)

    # The level mix at the range's end.
    last = _points([f.end])
    out.level_mix = [(name, int(count), int(mrr or 0)) for name, count, mrr in session.execute(
        select(s.c.level, func.count(), func.sum(s.c.monthly_value)).select_from(last)
        .join(s, _holding(s, last)).where(s.c.entitled, *where).group_by(s.c.level)
        .order_by(func.count().desc(), s.c.level)).all()]
    return out


def _days(session: Session, later, earlier):
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier) / 86400.0
    return func.julianday(later) - func.julianday(earlier)


def _recovery(session: Session, f: Filters, s, where: list[Any], out: Insights) -> None:
    """Episodes of past_due that began in the range and have ended: recovered when the next
    state is active. The median is read from the ordered durations (two small queries)."""
    episodes = select(s.c.at, s.c.to_status, s.c.from_status, s.c.next_status, s.c.until).where(*where).subquery("e")
    began = and_(episodes.c.to_status == MembershipStatus.PAST_DUE.value,
                 or_(episodes.c.from_status.is_(None), episodes.c.from_status != MembershipStatus.PAST_DUE.value),
                 episodes.c.at >= f.start, episodes.c.at < f.end, episodes.c.until.is_not(None))
    recovered = episodes.c.next_status == MembershipStatus.ACTIVE.value
    total, back = session.execute(
        select(func.count(), func.sum(case((recovered, 1), else_=0))).where(began)).one()
    out.recovery_episodes, out.recovered = int(total or 0), int(back or 0)
    if not back:
        return
    days = _days(session, episodes.c.until, episodes.c.at).label("days")
    ordered = select(days).where(began, recovered).order_by(days)
    middle = (out.recovered - 1) // 2
    values = session.scalars(ordered.offset(middle).limit(2 if out.recovered % 2 == 0 else 1)).all()
    out.recovery_median_days = round(sum(float(v) for v in values) / len(values), 1)


def levels(session: Session) -> list[str]:
    """The level names the history knows, for the filter."""
    level = _level(H)
    return [n for (n,) in session.execute(select(level).where(H.entitled).group_by(level).order_by(level))]
