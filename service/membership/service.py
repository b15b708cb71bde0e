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

from flask import current_app, has_request_context
from sqlalchemy import ColumnElement, and_, or_, select, text, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import (
    ENTITLEMENT,
    PAYING,
    Comp,
    Derived,
    MembershipStatus,
    Parts,
    Price,
    Subscription,
    Until,
    derive,
    entitled,
)
from ..domain.membership import Interval
from ..domain.newsletter import Desired, OutboxStatus, next_desired
from ..models import NEVER_READ, Account, Membership, NewsletterOutbox, StripeCustomer, StripeSubscription
from . import catalogue

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


def subscription_parts(session: Session, account_id: int) -> list[Subscription]:
    rows = session.execute(
        select(StripeSubscription, StripeCustomer.deleted)
        .outerjoin(StripeCustomer, StripeCustomer.stripe_id == StripeSubscription.customer_stripe_id)
        .where(StripeSubscription.account_id == account_id, StripeSubscription.snapshot_at > NEVER_READ)).all()
    deleted = {r.customer_stripe_id for r, gone in rows if gone}
    parts = []
    for r, _ in rows:
        items = r.items or ([{"price": r.price_id}] if r.price_id else [])
        parts.append(Subscription(
            id=r.stripe_id, stripe_status=r.status, prices=tuple(price_of_item(i) for i in items),
            current_period_end=r.current_period_end, cancel_at_period_end=r.cancel_at_period_end,
            cancel_at=r.cancel_at, ended_at=r.ended_at, created_at=r.stripe_created_at,
            current_period_start=r.current_period_start, customer_deleted=r.customer_stripe_id in deleted))
    return parts


def recompute(session: Session, account: Account, membership: Membership | None = None) -> Membership:
    """Derive the member's state from its parts, store it, and enqueue DAWNS if it moved.
    (`membership`: the member's row if the caller holds it locked already.)"""
    membership = membership or membership_for(session, account)
    now = utcnow()
    derived = derive(Parts(
        subscriptions=subscription_parts(session, account.id),
        catalogue=catalogue.current(session),
        now=now,
        grace=grace(),
        comp=comp_of(membership),
    ))
    _store(session, account, membership, derived, now)
    enqueue_newsletter(session, account, membership)
    return membership


def _store(session: Session, account: Account, membership: Membership, derived: Derived, now: datetime) -> None:
    if derived.status != membership.status:
        log.info("member %s: %s -> %s", account.id, membership.status, derived.status)
        membership.status = derived.status
        membership.status_changed_at = now
    membership.paid_through = derived.paid_through
    membership.cancel_at_period_end = derived.cancel_at_period_end
    if derived.subscription_id is not None:
        membership.stripe_subscription_id = derived.subscription_id
    level = derived.level
    membership.level_name = level.name if level else None
    membership.level_amount = level.amount if level else None
    membership.level_currency = level.currency if level else None
    membership.level_interval = level.interval.value if level else None
    membership.monthly_value = level.monthly_value if level and derived.status in PAYING else 0
    if derived.paying_twice and not membership.paying_twice:
        membership.flagged_at = now
        membership.flag_reason = "Paying twice: two subscriptions to the membership are being paid at once"
    membership.paying_twice = derived.paying_twice


# --- DAWNS Digest: the outbox row is written with the change that causes it -------------------

def enqueue_newsletter(session: Session, account: Account, membership: Membership, *,
                       force: bool = False, confirm: bool = False) -> NewsletterOutbox | None:
    """Write the new desired state to the outbox if it moved (or `force`, e.g. an email change)."""
    current = Desired(membership.newsletter_desired or Desired.NONE)
    desired = next_desired(current, entitled=is_entitled(membership), opted_in=membership.newsletter_opt_in,
                           on_lapse=current_app.config["NEWSLETTER_ON_LAPSE"])
    if desired == current and not force:
        return None
    if desired == Desired.NONE:
        return None
    now = utcnow()
    if current != Desired.NONE:  # never enqueued before: nothing to supersede
        # A newer desired state supersedes older ones not yet delivered (and abandoned claims).
        session.execute(
            update(NewsletterOutbox)
            .where(NewsletterOutbox.account_id == account.id,
                   or_(NewsletterOutbox.status == OutboxStatus.PENDING,
                       and_(NewsletterOutbox.status == OutboxStatus.IN_FLIGHT, NewsletterOutbox.claimed_until < now)))
            .values(status=OutboxStatus.SUPERSEDED)
        )
    membership.newsletter_desired = desired.value
    row = NewsletterOutbox(account_id=account.id, action=desired.value, email=account.email,
                           payload={"name": account.name, "confirm": confirm}, status=OutboxStatus.PENDING,
                           next_attempt_at=now)
    session.add(row)
    wake_worker(session, "newsletter")
    return row


def wake_worker(session: Session, queue: str) -> None:
    """On PostgreSQL, wake a listening worker when this transaction commits (LISTEN/NOTIFY);
    elsewhere the worker polls. Work queued by the worker itself needs no wake-up: its own
    pass reaches that queue next."""
    if has_request_context() and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify('dawns_worker', :queue)"), {"queue": queue})
