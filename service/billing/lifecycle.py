"""Applying Stripe's truth to memberships, in any order, from any number of workers.

Design (SPEC "Stripe rules"): every stored subscription row remembers the Stripe time of the
snapshot it holds (`snapshot_at`): an event's `created`, or the `Date` of a read from the API.
Under a row lock (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite serialises writers):

- a snapshot newer than the stored one is applied;
- an older one is ignored (it is history, not truth);
- a tie (same second: Stripe often emits `created` and `updated` together) is settled by
  reading the subscription from Stripe through the gateway, under the same lock.

So any permutation of a subscription's events, with duplicates, ends in the newest truth. The
success page, the checkout webhook, invoice events and `stripe reconcile` read the
subscription from Stripe (lock first, then read), which is always at least as new as anything
stored. Lock order is always subscription, then customer, then membership.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import (
    MembershipStatus,
    SubscriptionSnapshot,
    is_entitled,
    membership_status_for_stripe,
    parse_member_reference,
    resolve_status,
    snapshot_from_subscription,
)
from ..models import Account, Membership, StripeCustomer, StripeEvent, StripeSubscription
from ..newsletter.outbox import enqueue_if_changed
from .gateway import StripeGateway

log = logging.getLogger("service.billing")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class Applied:
    """What applying one piece of Stripe truth did."""

    subscription: StripeSubscription
    account: Account | None
    how: str  # "applied" | "stale" | "refetched" | "unchanged"
    before: MembershipStatus | None = None
    after: MembershipStatus | None = None
    # The subscription's (status, period end, cancel flag) before and after, for reports.
    sub_before: tuple | None = None
    sub_after: tuple | None = None


def _get_or_create(session: Session, model: type, lookup: dict[str, Any], defaults: dict[str, Any]):
    """Race-safe get-or-create on a unique column; the row comes back locked."""
    stmt = select(model).filter_by(**lookup).with_for_update()
    row = session.scalars(stmt).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = model(**lookup, **defaults)
            session.add(row)
            session.flush()
        return row
    except IntegrityError:
        # Another worker inserted it between our read and our insert; theirs is now committed.
        return session.scalars(stmt.execution_options(populate_existing=True)).one()


def membership_for(session: Session, account: Account) -> Membership:
    membership = session.scalars(
        select(Membership).where(Membership.account_id == account.id).with_for_update()
    ).first()
    if membership is None:
        membership = Membership(account_id=account.id, status=MembershipStatus.PENDING)
        session.add(membership)
        session.flush()
    return membership


def flag(session: Session, account: Account, reason: str) -> Membership:
    """Put the member on staff's list (refunds, disputes, email conflicts)."""
    membership = membership_for(session, account)
    membership.flagged_at = utcnow()
    membership.flag_reason = reason
    return membership


def find_account_for(
    session: Session,
    *,
    member_ref: Any = None,
    customer_id: str | None = None,
    email: str | None = None,
) -> Account | None:
    """Our reference first (client_reference_id / metadata.member_id), then the customer, email last."""
    member_id = parse_member_reference(member_ref)
    if member_id is not None:
        account = session.get(Account, member_id)
        if account is not None:
            return account
    if customer_id:
        customer = session.scalars(
            select(StripeCustomer).where(StripeCustomer.stripe_id == customer_id)
        ).first()
        if customer is not None and customer.account_id is not None:
            return session.get(Account, customer.account_id)
    if email:
        return session.scalars(select(Account).where(Account.email == email.strip().lower())).first()
    return None


def link_customer(
    session: Session, customer_id: str, account: Account | None, email: str | None = None
) -> StripeCustomer:
    """Record the customer and, once we know whose it is, adopt what arrived before the link."""
    customer = _get_or_create(
        session, StripeCustomer, {"stripe_id": customer_id}, {"email": email.lower() if email else None}
    )
    if email and not customer.email:
        customer.email = email.lower()
    if account is not None and customer.account_id is None:
        customer.account_id = account.id
        # Events and subscriptions for this customer that came before the link are not lost.
        # Rows another worker holds are skipped (it links them itself), keeping the lock order
        # subscription -> customer and so no deadlock.
        orphans = select(StripeSubscription.id).where(
            StripeSubscription.customer_stripe_id == customer_id, StripeSubscription.account_id.is_(None)
        ).with_for_update(skip_locked=True)
        orphan_ids = session.scalars(orphans).all()
        if orphan_ids:
            session.execute(
                update(StripeSubscription).where(StripeSubscription.id.in_(orphan_ids)).values(account_id=account.id)
            )
        flagged = session.scalars(
            select(StripeEvent).where(
                StripeEvent.customer_stripe_id == customer_id, StripeEvent.account_id.is_(None),
                StripeEvent.type.in_(["charge.refunded", "charge.dispute.created"]),
            ).order_by(StripeEvent.stripe_created_at.desc())
        ).first()
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.customer_stripe_id == customer_id, StripeEvent.account_id.is_(None))
            .values(account_id=account.id)
        )
        if flagged is not None:
            # A refund or dispute that came before we knew whose it was: flag it for staff now.
            flag(session, account, flagged.note or flagged.type)
    return customer


def _lock_subscription(session: Session, subscription_id: str, customer_id: str) -> StripeSubscription:
    return _get_or_create(
        session,
        StripeSubscription,
        {"stripe_id": subscription_id},
        {"customer_stripe_id": customer_id, "status": "incomplete", "snapshot_at": EPOCH},
    )


def _copy_snapshot(row: StripeSubscription, snap: SubscriptionSnapshot, snapshot_at: datetime) -> None:
    row.customer_stripe_id = snap.customer_id
    row.status = snap.status
    row.price_id = snap.price_id
    row.current_period_end = snap.current_period_end
    row.cancel_at_period_end = snap.cancel_at_period_end
    row.cancel_at = snap.cancel_at
    row.canceled_at = snap.canceled_at
    row.ended_at = snap.ended_at
    row.stripe_created_at = snap.created_at
    row.snapshot_at = snapshot_at


def _finish(session: Session, row: StripeSubscription, snap: SubscriptionSnapshot, how: str,
            account: Account | None) -> Applied:
    if account is None:
        account = find_account_for(session, member_ref=snap.member_id, customer_id=snap.customer_id)
    if row.account_id is None and account is not None:
        row.account_id = account.id
    owner = session.get(Account, row.account_id) if row.account_id is not None else None
    link_customer(session, snap.customer_id, owner)
    if owner is None:
        return Applied(row, None, how)
    before = owner.membership.status if owner.membership else None
    membership = recompute_membership(session, owner)
    return Applied(row, owner, how, before, membership.status)


def apply_subscription_event(
    session: Session, gateway: StripeGateway, obj: dict[str, Any], created: datetime,
    account: Account | None = None,
) -> Applied:
    """A subscription snapshot carried by an event created at `created`."""
    snap = snapshot_from_subscription(obj)
    row = _lock_subscription(session, snap.id, snap.customer_id)
    if created > row.snapshot_at:
        _copy_snapshot(row, snap, created)
        how = "applied"
    elif created == row.snapshot_at:
        fetched = gateway.retrieve_subscription(snap.id)
        snap = snapshot_from_subscription(fetched.obj)
        _copy_snapshot(row, snap, max(row.snapshot_at, fetched.as_of - timedelta(seconds=1)))
        how = "refetched"
    else:
        log.info("subscription %s: event of %s is older than the stored snapshot of %s; ignored",
                 snap.id, created.isoformat(), row.snapshot_at.isoformat())
        how = "stale"
    return _finish(session, row, snap, how, account)


def sync_subscription(
    session: Session, gateway: StripeGateway, subscription_id: str, customer_id: str | None = None,
    account: Account | None = None,
) -> Applied:
    """Read the subscription from Stripe under the row lock and apply it (it is the newest truth)."""
    row = _lock_subscription(session, subscription_id, customer_id or "")
    fetched = gateway.retrieve_subscription(subscription_id)
    return _apply_read(session, row, fetched.obj, fetched.as_of, account)


def listed_differs(session: Session, obj: dict[str, Any]) -> bool:
    """Reconcile's drift check: does a listed subscription differ from what we hold?

    A list page is read without our lock, so it is only used to spot drift; the repair reads
    the subscription again under the lock (`sync_subscription`)."""
    snap = snapshot_from_subscription(obj)
    row = session.scalars(select(StripeSubscription).where(StripeSubscription.stripe_id == snap.id)).first()
    if row is None or row.snapshot_at == EPOCH:
        return True
    return (row.status, row.current_period_end, row.cancel_at_period_end, row.cancel_at) != (
        snap.status, snap.current_period_end, snap.cancel_at_period_end, snap.cancel_at)


def _apply_read(session: Session, row: StripeSubscription, obj: dict[str, Any], as_of: datetime,
                account: Account | None) -> Applied:
    """A read made while holding the row lock: it is newer than every event we have applied.

    Stamped one second before Stripe's `Date` (the header is written after the read and has
    second precision), so an event from that second is treated as a tie and re-read."""
    snap = snapshot_from_subscription(obj)
    before = (row.status, row.current_period_end, row.cancel_at_period_end) if row.snapshot_at > EPOCH else None
    _copy_snapshot(row, snap, max(row.snapshot_at, as_of - timedelta(seconds=1)))
    after = (row.status, row.current_period_end, row.cancel_at_period_end)
    applied = _finish(session, row, snap, "applied" if before != after else "unchanged", account)
    applied.sub_before, applied.sub_after = before, after
    return applied


def _current_subscription(session: Session, account_id: int) -> StripeSubscription | None:
    """The membership subscription that decides: an entitling one first, else the newest started.

    Only subscriptions to the membership price count (the customer may buy other things)."""
    stmt = select(StripeSubscription).where(
        StripeSubscription.account_id == account_id, StripeSubscription.snapshot_at > EPOCH
    )
    price = current_app.config.get("STRIPE_PRICE_ID")
    if price:
        stmt = stmt.where(StripeSubscription.price_id == price)
    subs = session.scalars(stmt).all()
    if not subs:
        return None

    def rank(s: StripeSubscription) -> tuple[int, datetime, int]:
        entitled = 1 if is_entitled(membership_status_for_stripe(s.status)) else 0
        return (entitled, s.stripe_created_at or EPOCH, s.id)

    return max(subs, key=rank)


def comp_is_active(membership: Membership, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return membership.comped_at is not None and (membership.comped_until is None or membership.comped_until > now)


def recompute_membership(session: Session, account: Account) -> Membership:
    """Derive the member's state from their subscriptions, customer and comp (domain rules)."""
    membership = membership_for(session, account)
    sub = _current_subscription(session, account.id)
    comp_active = comp_is_active(membership)
    customer_deleted = False
    if sub is not None:
        customer = session.scalars(
            select(StripeCustomer).where(StripeCustomer.stripe_id == sub.customer_stripe_id)
        ).first()
        customer_deleted = bool(customer and customer.deleted)
    new_status = resolve_status(
        sub.status if sub else None, comp_active=comp_active, customer_deleted=customer_deleted
    )
    if new_status != membership.status:
        log.info("member %s: %s -> %s", account.id, membership.status, new_status)
        membership.status = new_status
        membership.status_changed_at = utcnow()
    if sub is not None and new_status != MembershipStatus.COMPED:
        membership.stripe_subscription_id = sub.stripe_id
        ends = sub.cancel_at_period_end or sub.cancel_at is not None
        membership.paid_through = min(d for d in (sub.current_period_end, sub.cancel_at) if d) \
            if (sub.current_period_end or sub.cancel_at) else None
        membership.cancel_at_period_end = ends and not customer_deleted
    elif comp_active:
        membership.paid_through = membership.comped_until
        membership.cancel_at_period_end = False
    # DAWNS enrollment follows membership, in this same transaction (the outbox).
    enqueue_if_changed(session, account, membership)
    return membership


def fulfil_checkout_session(session: Session, gateway: StripeGateway, checkout: dict[str, Any]) -> Account | None:
    """Link the customer and apply the subscription of a Checkout Session.

    The success page and the `checkout.session.completed` webhook both call this; running it
    twice, or both at once, ends in the same rows (Stripe's fulfilment guide:
    https://docs.stripe.com/checkout/fulfillment).
    """
    account = find_account_for(
        session,
        member_ref=checkout.get("client_reference_id") or (checkout.get("metadata") or {}).get("member_id"),
        email=checkout.get("customer_email") or (checkout.get("customer_details") or {}).get("email"),
    )
    customer_id = _id_of(checkout.get("customer"))
    subscription_id = _id_of(checkout.get("subscription"))
    if subscription_id:
        sync_subscription(session, gateway, subscription_id, customer_id, account)
    if customer_id:
        link_customer(session, customer_id, account, checkout.get("customer_email"))
    if account is not None:
        recompute_membership(session, account)
    return account


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value or None
