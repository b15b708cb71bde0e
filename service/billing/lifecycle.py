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
    Role,
    SubscriptionSnapshot,
    is_entitled,
    membership_status_for_stripe,
    resolve_status,
    snapshot_from_subscription,
)
from ..models import Account, CheckoutSession, Membership, StripeCustomer, StripeEvent, StripeSubscription
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


def find_account_for(session: Session, *, customer_id: str | None) -> Account | None:
    """The account a Stripe customer is linked to. Links are made only by `link_customer`, from a
    Checkout Session this service created (or, as a flagged last resort, by email): never from
    what a Stripe object says about itself (client_reference_id, metadata), which a Payment Link
    or anyone with Dashboard access can set (SPEC "Trust rules")."""
    if not customer_id:
        return None
    owner = session.scalar(select(StripeCustomer.account_id).where(StripeCustomer.stripe_id == customer_id))
    return session.get(Account, owner) if owner is not None else None


def link_customer(
    session: Session, customer_id: str, account: Account | None, email: str | None = None
) -> StripeCustomer:
    """Record the customer and, once we know whose it is, adopt what arrived before the link.

    Only reader accounts are ever linked: a staff or admin account never gets a Stripe customer
    (its billing email would otherwise become a way into the console)."""
    customer = _get_or_create(
        session, StripeCustomer, {"stripe_id": customer_id}, {"email": email.lower() if email else None}
    )
    if email and not customer.email:
        customer.email = email.lower()
    if account is not None and account.role != Role.MEMBER:
        log.warning("refused to link Stripe customer %s to account %s (role %s)", customer_id, account.id,
                    account.role.value)
        return customer
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
        account = find_account_for(session, customer_id=snap.customer_id)
    if account is not None and account.role != Role.MEMBER:
        account = None
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
    if row is None or row.snapshot_at == EPOCH or row.account_id is None:
        return True  # unknown, never read, or linked to no one yet (reconcile tries email)
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


def record_checkout_session(session: Session, checkout: dict[str, Any], account: Account,
                            purpose: str = "membership") -> CheckoutSession:
    """Remember a Checkout Session this service created, and for whom: the only kind that may
    link a customer to an account."""
    row = CheckoutSession(stripe_id=checkout["id"], ours=True, account_id=account.id, purpose=purpose,
                          status=checkout.get("status") or "open", email=account.email)
    session.add(row)
    return row


def fulfil_checkout_session(session: Session, gateway: StripeGateway, checkout: dict[str, Any],
                            for_account: Account | None = None) -> Account | None:
    """Link the customer and apply the subscription of a Checkout Session this service created.

    The success page and the `checkout.session.completed` webhook both call this; running it
    twice, or both at once, ends in the same rows (Stripe's fulfilment guide:
    https://docs.stripe.com/checkout/fulfillment). A session we did not create (a Payment Link,
    a pricing table, a buy button: their client_reference_id is whatever the payer's URL said)
    is stored for staff and links nothing. With `for_account` (the success page), only a
    session created for that account is fulfilled.
    """
    customer_id = _id_of(checkout.get("customer"))
    subscription_id = _id_of(checkout.get("subscription"))
    record = _get_or_create(session, CheckoutSession, {"stripe_id": checkout["id"]}, {
        "ours": False,
        "claimed_reference": str(checkout.get("client_reference_id") or "")[:255] or None,
        "email": ((checkout.get("customer_details") or {}).get("email") or checkout.get("customer_email") or "")[:320]
        or None,
    })
    record.customer_stripe_id = customer_id or record.customer_stripe_id
    record.subscription_stripe_id = subscription_id or record.subscription_stripe_id
    if checkout.get("status"):
        record.status = checkout["status"]
    if record.status == "complete" and record.completed_at is None:
        record.completed_at = utcnow()
    account = session.get(Account, record.account_id) if record.ours and record.account_id else None
    if account is None or account.role != Role.MEMBER:
        if customer_id:
            link_customer(session, customer_id, None)  # known, linked to no one
        return None
    if for_account is not None and for_account.id != account.id:
        return None
    if subscription_id:
        sync_subscription(session, gateway, subscription_id, customer_id, account)
    if customer_id:
        link_customer(session, customer_id, account)
    recompute_membership(session, account)
    return account


def link_by_email(session: Session, customer_id: str, email: str | None) -> Account | None:
    """The last resort, for a customer no session of ours links (a subscription made in the
    Dashboard, a Payment Link): a reader account with that email and no customer yet is linked,
    and flagged so that staff check it. Never a staff or admin account."""
    email = (email or "").strip().lower()
    if not email:
        return None
    account = session.scalars(select(Account).where(Account.email == email, Account.role == Role.MEMBER)).first()
    if account is None:
        return None
    has_customer = session.scalar(select(StripeCustomer.id).where(StripeCustomer.account_id == account.id).limit(1))
    if has_customer is not None:
        return None
    customer = link_customer(session, customer_id, account, email)
    if customer.account_id != account.id:
        return None
    flag(session, account, f"Linked to Stripe customer {customer_id} by email match, not by a checkout of ours: "
                           "check that it is theirs")
    recompute_membership(session, account)
    return account


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value or None
