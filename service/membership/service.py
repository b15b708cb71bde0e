"""The membership service: the one place that recomputes a member's membership.

It loads the parts (the member's subscriptions and their prices, the catalogue, the comp),
calls the pure rule (`domain.membership.derive`), stores the result, and writes the DAWNS
Digest outbox row in the same transaction, so that an enrollment change is never lost and
never sent for a change that did not commit. Callers own the transaction; the lock order is
subscription, then customer, then membership.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_request_context
from sqlalchemy import ColumnElement, and_, bindparam, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..db import utcnow, write_now
from ..logs import current_request_id
from ..domain.membership import (
    ENTITLEMENT,
    PAYING,
    Comp,
    Role,
    Derived,
    MembershipStatus,
    Parts,
    Price,
    SeatSource,
    Subscription,
    Until,
    derive,
    entitled,
    seat_window,
)
from ..domain.membership import Interval
from ..domain.newsletter import Desired, OutboxStatus, next_desired
from ..models import (
    NEVER_READ,
    Account,
    Membership,
    NewsletterOutbox,
    Organisation,
    Seat,
    StripeCustomer,
    StripeSubscription,
)
from . import catalogue, history, reader_mail

log = logging.getLogger("service.membership")


def grace() -> timedelta:
    return timedelta(days=current_app.config["PAST_DUE_GRACE_DAYS"])


def is_entitled(membership: Membership | None, now: datetime | None = None) -> bool:
    """Entitled at the moment of asking (a grace period or a comp that ends needs no job)."""
    if membership is None:
        return False
    return entitled(membership.status, membership.paid_through, now or utcnow(), grace(), comp_of(membership))


def comp_of(membership: Membership) -> Comp:
    return Comp(granted=membership.comped_at is not None, until=membership.comped_until)


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
    # A live comp keeps a member entitled whatever the stored state (domain.membership.standing).
    clauses.append(and_(Membership.comped_at.is_not(None),
                        or_(Membership.comped_until.is_(None), Membership.comped_until > now)))
    return or_(*clauses)


def recompute_ended(session: Session, limit: int = 200) -> int:
    """A grace period or a comp ends on its own at the moment of the read; what must follow it
    (DAWNS removal per NEWSLETTER_ON_LAPSE) needs a recompute. The worker runs this: members
    still enrolled whose entitlement has ended are recomputed, in small batches."""
    now = utcnow()
    ids = session.scalars(select(Membership.account_id).where(
        Membership.newsletter_desired == Desired.SUBSCRIBED.value, ~entitled_clause(now, grace())).limit(limit)).all()
    for account_id in ids:
        account = session.get(Account, account_id)
        if account is not None:
            recompute(session, account)
    session.commit()
    return len(ids)


def membership_for(session: Session, account: Account) -> Membership:
    """The member's row, locked for this transaction (created when missing)."""
    membership = session.scalars(
        select(Membership).where(Membership.account_id == account.id).with_for_update()
    ).first()
    if membership is None:
        membership = Membership(account_id=account.id, status=MembershipStatus.PENDING,
                                created_at=account.created_at)  # "member since" is the join date
        session.add(membership)
        session.flush()
    return membership


def flag(session: Session, account: Account, reason: str) -> Membership:
    """Put the member on staff's list (refunds, disputes, email conflicts, paying twice)."""
    membership = membership_for(session, account)
    membership.flagged_at = utcnow()
    membership.flag_reason = reason
    return membership


def price_of_item(item: dict) -> Price:
    """A snapshotted subscription item (see billing.snapshots) as the domain's Price."""
    interval = item.get("interval")
    return Price(id=item.get("price"), product_id=item.get("product"), amount=item.get("amount"),
                 currency=item.get("currency") or "usd",
                 interval=Interval(interval) if interval in ("month", "year") else None,
                 quantity=item.get("quantity") or 1)


_SUBSCRIPTION_COLUMNS = (StripeSubscription.stripe_id, StripeSubscription.customer_stripe_id, StripeSubscription.status,
                         StripeSubscription.items, StripeSubscription.price_id, StripeSubscription.current_period_end,
                         StripeSubscription.current_period_start, StripeSubscription.cancel_at_period_end,
                         StripeSubscription.cancel_at, StripeSubscription.ended_at, StripeSubscription.stripe_created_at)


_PARTS_BASE = (
    select(*_SUBSCRIPTION_COLUMNS, StripeCustomer.deleted)
    .outerjoin(StripeCustomer, StripeCustomer.stripe_id == StripeSubscription.customer_stripe_id))
_SUBSCRIPTION_PARTS = _PARTS_BASE.where(StripeSubscription.account_id == bindparam("account_id"),
                                        StripeSubscription.snapshot_at > NEVER_READ)
_ORGANISATION_PARTS = _PARTS_BASE.where(StripeSubscription.organisation_id == bindparam("organisation_id"),
                                        StripeSubscription.snapshot_at > NEVER_READ)


def subscription_parts(session: Session, account_id: int | None = None, *,
                       organisation_id: int | None = None) -> list[Subscription]:
    """The account's (or the organisation's) subscriptions as the domain sees them (plain rows:
    nothing is loaded as an ORM object, which this, the hottest read of the worker, does not need)."""
    session.flush()  # pending changes first (usually none: the hot writes go straight out)
    if organisation_id is not None:
        rows = session.connection().execute(_ORGANISATION_PARTS, {"organisation_id": organisation_id}).all()
    else:
        rows = session.connection().execute(_SUBSCRIPTION_PARTS, {"account_id": account_id}).all()
    parts = []
    for r in rows:
        items = r.items or ([{"price": r.price_id}] if r.price_id else [])
        parts.append(Subscription(
            id=r.stripe_id, stripe_status=r.status, prices=tuple(price_of_item(i) for i in items),
            current_period_end=r.current_period_end, cancel_at_period_end=r.cancel_at_period_end,
            cancel_at=r.cancel_at, ended_at=r.ended_at, created_at=r.stripe_created_at,
            current_period_start=r.current_period_start, customer_deleted=bool(r.deleted)))
    return parts


def organisation_comp(org: Any, now: datetime) -> Comp:
    """What stands in an organisation's comp place: its staff comp while live, else, by invoice
    until the first invoice is paid, the staff-set trial. `org`: an Organisation or a row with
    its columns."""
    comp = Comp(granted=org.comped_at is not None, until=org.comped_until)
    if not comp.active(now) and org.billing == "invoice" and org.first_paid_at is None and org.trial_ends_at:
        return Comp(granted=True, until=org.trial_ends_at)
    return comp


def seat_sources(session: Session, account_id: int, now: datetime) -> list[SeatSource]:
    """The member's active seats whose organisation entitles at `now` (membership recompute)."""
    rows = session.execute(select(Organisation.id, Organisation.name, Organisation.slug, Organisation.status,
                                  Organisation.paid_through, Organisation.comped_at, Organisation.comped_until,
                                  Organisation.billing, Organisation.first_paid_at, Organisation.trial_ends_at)
                           .join(Seat, Seat.organisation_id == Organisation.id)
                           .where(Seat.account_id == account_id, Seat.status == "active")).all()
    found = []
    for r in rows:
        comp = organisation_comp(r, now)
        live, until = seat_window(r.status, r.paid_through, now, grace(), comp)
        if live:
            found.append(SeatSource(organisation_id=r.id, name=r.name, slug=r.slug, until=until))
    return found



def recompute(session: Session, account: Account, membership: Membership | None = None) -> Membership:
    """Derive the member's state from its parts, store it, and enqueue DAWNS if it moved.
    (`membership`: the member's row if the caller holds it locked already.)

    What changed is written in one UPDATE (and one outbox INSERT when DAWNS moves), straight
    away: this runs for every Stripe event the worker applies."""
    membership = membership or membership_for(session, account)
    now = utcnow()
    before, was_entitled = membership.status, _entitled_before(membership, now)
    derived = derive(Parts(
        subscriptions=subscription_parts(session, account.id),
        catalogue=catalogue.current(session),
        now=now,
        grace=grace(),
        comp=comp_of(membership),
        # Only a member holding a seat pays for this read (the worker's hot path does not).
        seats=seat_sources(session, account.id, now) if membership.has_seat else (),
    ))
    values = _changes(account, membership, derived, now)
    for key, value in values.items():  # the new state first: DAWNS follows it
        set_committed_value(membership, key, value)
    desired = _move_newsletter(session, account, membership)
    if desired is not None:
        values["newsletter_desired"] = desired.value
    write_now(session, membership, values)
    history.record(session, membership, before, values, entitled=_entitled_before(membership, now), now=now)
    if "status" in values or not was_entitled:
        _tell_reader(session, account, membership, before, was_entitled, now)
    return membership


# --- reader mail: written with the state change that causes it, once per transition ------------

# Set in `session.info` by a caller that must mail no one (a member import): no welcome, no
# "membership ended" for the changes it causes.
QUIET_READER_MAIL = "quiet_reader_mail"

# A paid membership whose end is told to the reader (moving to ENDED from one of these).
_PAID_BEFORE = frozenset({MembershipStatus.ACTIVE, MembershipStatus.PAST_DUE, MembershipStatus.PAUSED})
_ENDED = frozenset({MembershipStatus.CANCELED, MembershipStatus.LAPSED})


def _entitled_before(membership: Membership, now: datetime) -> bool:
    """Whether the stored state entitled the member before this recompute. A comp granted since
    the state was last stored (staff set it just before recomputing) is not counted: the
    recompute is what makes it count, and the welcome goes then."""
    comp = comp_of(membership)
    changed_at = membership.status_changed_at
    if comp.granted and membership.comped_at is not None and changed_at is not None \
            and membership.comped_at > changed_at:
        comp = Comp()
    return entitled(membership.status, membership.paid_through, now, grace(), comp)


def _tell_reader(session: Session, account: Account, membership: Membership, before: MembershipStatus,
                 was_entitled: bool, now: datetime) -> None:
    """Welcome on becoming entitled from not entitled; "membership ended" when a paid membership
    moves to canceled or lapsed. The stored state is the guard: a recompute that changes nothing
    (a renewal, a duplicate event, a retry) sends nothing, and the message commits (or rolls
    back) with the state change."""
    if account.role != Role.MEMBER or session.info.get(QUIET_READER_MAIL):
        return
    now_entitled = is_entitled(membership, now)
    if now_entitled and not was_entitled:
        reader_mail.welcome(session, account, membership, back=before in _PAID_BEFORE | _ENDED)
    elif not now_entitled and before in _PAID_BEFORE and membership.status in _ENDED and membership.status != before:
        reader_mail.membership_ended(session, account, membership)


def _changes(account: Account, membership: Membership, derived: Derived, now: datetime) -> dict[str, Any]:
    """The columns of the membership row that the derived state changes."""
    level = derived.level
    wanted: dict[str, Any] = {
        "paid_through": derived.paid_through,
        "cancel_at_period_end": derived.cancel_at_period_end,
        "level_name": level.name if level else None,
        "level_amount": level.amount if level else None,
        "level_currency": level.currency if level else None,
        "level_interval": level.interval.value if level else None,
        "monthly_value": level.monthly_value if level and derived.status in PAYING else 0,
        "paying_twice": derived.paying_twice,
        "organisation_id": derived.organisation.organisation_id if derived.organisation else None,
    }
    if derived.status != membership.status:
        log.info("member %s: %s -> %s", account.id, membership.status, derived.status)
        wanted["status"] = derived.status
        wanted["status_changed_at"] = now
    if derived.subscription_id is not None:
        wanted["stripe_subscription_id"] = derived.subscription_id
    if derived.paying_twice and not membership.paying_twice:
        wanted["flagged_at"] = now
        wanted["flag_reason"] = "Paying twice: two subscriptions to the membership are being paid at once"
    return {key: value for key, value in wanted.items() if getattr(membership, key) != value}


# --- DAWNS Digest: the outbox row is written with the change that causes it -------------------

def enqueue_newsletter(session: Session, account: Account, membership: Membership, *,
                       force: bool = False, confirm: bool = False) -> Desired | None:
    """Write the new desired state to the outbox if it moved (or `force`, e.g. an email change)."""
    desired = _move_newsletter(session, account, membership, force=force, confirm=confirm)
    if desired is not None:
        membership.newsletter_desired = desired.value
    return desired


def _move_newsletter(session: Session, account: Account, membership: Membership, *,
                     force: bool = False, confirm: bool = False) -> Desired | None:
    """The outbox row for a new desired state (older undelivered ones are superseded); the new
    state, for the caller to store on the membership, or None when nothing moves."""
    current = Desired(membership.newsletter_desired or Desired.NONE)
    desired = next_desired(current, entitled=is_entitled(membership), opted_in=membership.newsletter_opt_in,
                           on_lapse=current_app.config["NEWSLETTER_ON_LAPSE"])
    if desired == current and not force:
        return None
    if desired == Desired.NONE:
        return None
    now = utcnow()
    connection = session.connection()
    if current != Desired.NONE:  # never enqueued before: nothing to supersede
        # A newer desired state supersedes older ones not yet delivered (and abandoned claims).
        connection.execute(_SUPERSEDE, {"b_account": account.id, "b_now": now})
    connection.execute(_OUTBOX_INSERT, {
        "account_id": account.id, "action": desired.value, "email": account.email,
        "payload": {"name": account.name, "confirm": confirm}, "status": OutboxStatus.PENDING.value,
        "attempts": 0, "next_attempt_at": now, "created_at": now, "request_id": current_request_id()})
    wake_worker(session, "newsletter")
    return desired


_OUTBOX = NewsletterOutbox.__table__
_SUPERSEDE = (
    _OUTBOX.update()
    .where(_OUTBOX.c.account_id == bindparam("b_account"),
           or_(_OUTBOX.c.status == OutboxStatus.PENDING.value,
               and_(_OUTBOX.c.status == OutboxStatus.IN_FLIGHT.value, _OUTBOX.c.claimed_until < bindparam("b_now"))))
    .values(status=OutboxStatus.SUPERSEDED.value))
_OUTBOX_INSERT = _OUTBOX.insert()


# The PostgreSQL channel the worker LISTENs on, and every committing change NOTIFYs.
WAKE_CHANNEL = "dawns_worker"


def wake_worker(session: Session, queue: str) -> None:
    """On PostgreSQL, wake a listening worker when this transaction commits (LISTEN/NOTIFY);
    elsewhere the worker polls. Work queued by the worker itself needs no wake-up: its own
    pass reaches that queue next."""
    if has_request_context() and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :queue)"), {"channel": WAKE_CHANNEL, "queue": queue})
