"""Service functions that apply Stripe's truth to memberships.

The success page and the webhook both end here, so fulfilment is one idempotent code path.
Row locks (`SELECT ... FOR UPDATE` on PostgreSQL) and the unique Stripe ids make concurrent
callers safe; `snapshot_at` makes an older snapshot unable to overwrite a newer one.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import (
    MembershipStatus,
    SubscriptionSnapshot,
    is_entitled,
    parse_member_reference,
    resolve_status,
    snapshot_from_subscription,
)
from ..models import Account, Membership, StripeCustomer, StripeSubscription

log = logging.getLogger("service.billing")


def _get_or_create(session: Session, model: type, lookup: dict[str, Any], defaults: dict[str, Any]):
    """Race-safe get-or-create on a unique column, then lock the row."""
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
        # Another worker inserted it first; take theirs.
        return session.scalars(stmt).one()


def membership_for(session: Session, account: Account) -> Membership:
    membership = session.scalars(
        select(Membership).where(Membership.account_id == account.id).with_for_update()
    ).first()
    if membership is None:
        membership = Membership(account_id=account.id, status=MembershipStatus.PENDING)
        session.add(membership)
        session.flush()
    return membership


def link_customer(
    session: Session, customer_id: str, account: Account | None, email: str | None = None
) -> StripeCustomer:
    customer = _get_or_create(session, StripeCustomer, {"stripe_id": customer_id}, {"email": email})
    if account is not None and customer.account_id is None:
        customer.account_id = account.id
    if email and not customer.email:
        customer.email = email.lower()
    return customer


def find_account_for(
    session: Session,
    *,
    member_ref: Any = None,
    customer_id: str | None = None,
    email: str | None = None,
) -> Account | None:
    """Our reference first (client_reference_id / metadata), then the customer link, email last."""
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


def apply_subscription(
    session: Session,
    obj: dict[str, Any],
    snapshot_at: datetime,
    *,
    account: Account | None = None,
) -> StripeSubscription:
    """Record a subscription snapshot unless a newer one is already stored, then recompute."""
    snap = snapshot_from_subscription(obj)
    row = _get_or_create(
        session,
        StripeSubscription,
        {"stripe_id": snap.id},
        {"customer_stripe_id": snap.customer_id, "status": snap.status, "snapshot_at": snapshot_at},
    )
    if account is None:
        account = find_account_for(session, member_ref=snap.member_id, customer_id=snap.customer_id)
    if row.snapshot_at > snapshot_at:
        log.info("subscription %s: snapshot of %s is older than stored %s; kept the stored one",
                 snap.id, snapshot_at.isoformat(), row.snapshot_at.isoformat())
    else:
        _copy_snapshot(row, snap, snapshot_at)
    if account is not None:
        row.account_id = row.account_id or account.id
        link_customer(session, snap.customer_id, account)
        recompute_membership(session, session.get(Account, row.account_id) or account)
    return row


def _copy_snapshot(row: StripeSubscription, snap: SubscriptionSnapshot, snapshot_at: datetime) -> None:
    row.customer_stripe_id = snap.customer_id
    row.status = snap.status
    row.price_id = snap.price_id
    row.current_period_end = snap.current_period_end
    row.cancel_at_period_end = snap.cancel_at_period_end
    row.cancel_at = snap.cancel_at
    row.canceled_at = snap.canceled_at
    row.ended_at = snap.ended_at
    row.snapshot_at = snapshot_at


def _current_subscription(session: Session, account_id: int) -> StripeSubscription | None:
    """The subscription that decides the membership: an entitling one first, else the newest."""
    subs = session.scalars(
        select(StripeSubscription).where(StripeSubscription.account_id == account_id)
    ).all()
    if not subs:
        return None
    from ..domain.membership import membership_status_for_stripe

    def rank(s: StripeSubscription) -> tuple[int, datetime]:
        return (1 if is_entitled(membership_status_for_stripe(s.status)) else 0, s.snapshot_at)

    return max(subs, key=rank)


def recompute_membership(session: Session, account: Account) -> Membership:
    membership = membership_for(session, account)
    sub = _current_subscription(session, account.id)
    now = utcnow()
    comp_active = membership.comped_at is not None and (
        membership.comped_until is None or membership.comped_until > now
    )
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
        membership.status_changed_at = now
    if sub is not None:
        membership.stripe_subscription_id = sub.stripe_id
        membership.paid_through = sub.current_period_end
        membership.cancel_at_period_end = sub.cancel_at_period_end
    elif comp_active:
        membership.paid_through = membership.comped_until
    return membership


def fulfil_checkout_session(session: Session, checkout: dict[str, Any], fetched_at: datetime) -> Account | None:
    """Link the customer and apply the subscription of a completed Checkout Session.

    Called by the success page and by the `checkout.session.completed` webhook: running it twice,
    or both at once, ends in the same rows.
    """
    account = find_account_for(
        session,
        member_ref=checkout.get("client_reference_id") or (checkout.get("metadata") or {}).get("member_id"),
        email=checkout.get("customer_email") or (checkout.get("customer_details") or {}).get("email"),
    )
    customer_id = checkout.get("customer")
    if isinstance(customer_id, dict):
        customer_id = customer_id.get("id")
    if customer_id:
        link_customer(session, customer_id, account, checkout.get("customer_email"))
    subscription = checkout.get("subscription")
    if isinstance(subscription, dict):
        apply_subscription(session, subscription, fetched_at, account=account)
    if account is not None:
        recompute_membership(session, account)
    return account
