"""What each Stripe event means (SPEC "Stripe rules"): `handle` is a plain function of
(session, gateway, event) with one case per type. The webhook only stores events
(`inbox.py`); the worker applies them through here (`queue.py`)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..accounts import email_change
from ..domain.membership import Interval, MembershipStatus, Role
from ..membership.organisations import recompute_organisation
from ..membership import reader_mail
from ..membership.service import flag, recompute
from ..membership import history
from ..models import Account, StripeCustomer, StripeSubscription
from .checkout import fulfil_checkout_session, organisation_checkout
from .gateway import BillingGateway
from .lifecycle import (
    _get_or_create,
    apply_subscription_event,
    find_account_for,
    link_customer,
    remember_customer,
    sync_subscription,
)

log = logging.getLogger("service.billing.webhooks")

SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
}
INVOICE_EVENTS = {"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"}
PAID_INVOICE_EVENTS = {"invoice.paid", "invoice.payment_succeeded"}
# One address, nothing a mail header could read as two (Stripe's email field is free text to us).
ONE_ADDRESS = re.compile(r"^[^@\s,;<>\"()]+@[^@\s,;<>\"()]+\.[^@\s,;<>\"()]+$")


class EventOutcome(StrEnum):
    RECEIVED = "received"    # stored, not yet applied
    APPLIED = "applied"
    IGNORED = "ignored"      # a type the service does not act on
    STALE = "stale"          # older than the truth we hold
    UNLINKED = "unlinked"    # for a customer no account is linked to (yet): kept, adopted on linking
    FOREIGN = "foreign"      # a Checkout Session the service did not create: stored, links nothing
    FAILED = "failed"        # Stripe refused a read for good
    DUPLICATE = "duplicate"  # the same event id again: nothing changed


@dataclass
class Outcome:
    outcome: EventOutcome
    account: Account | None = None
    note: str | None = None
    customer_id: str | None = None  # when the handler found it elsewhere (a dispute's charge)


def _ts(value: int) -> datetime:
    return datetime.fromtimestamp(int(value), tz=timezone.utc)


def customer_of(event_type: str, obj: dict[str, Any]) -> str | None:
    if event_type in ("customer.created", "customer.updated", "customer.deleted"):
        return obj.get("id")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        return customer.get("id")
    return customer


def handle(session: Session, gateway: BillingGateway, event: dict[str, Any]) -> Outcome:
    with history.source(session, history.STRIPE_EVENT, event.get("id")):
        return _handle(session, gateway, event)


def _handle(session: Session, gateway: BillingGateway, event: dict[str, Any]) -> Outcome:
    obj: dict[str, Any] = event["data"]["object"]
    created = _ts(event["created"])
    match event["type"]:
        case "checkout.session.completed" | "checkout.session.async_payment_succeeded":
            # Fulfilment: the same function as the success page.
            if obj.get("mode") != "subscription":
                return Outcome(EventOutcome.IGNORED, note="not a subscription checkout")
            account = fulfil_checkout_session(session, gateway, obj)
            if account is None and organisation_checkout(session, obj["id"]):
                return Outcome(EventOutcome.APPLIED, note="organisation checkout")
            if account is None:
                return Outcome(EventOutcome.FOREIGN, note="checkout session not created by this service for a reader: "
                                               "stored for staff, links nothing")
            return Outcome(EventOutcome.APPLIED, account)
        case t if t in SUBSCRIPTION_EVENTS:
            # The object is the subscription at `created`; ordering rules live in lifecycle.
            applied = apply_subscription_event(session, gateway, obj, created)
            if applied.how == "foreign":
                return Outcome(EventOutcome.FOREIGN, note=f"names customer {customer_of(t, obj)}, but the "
                               f"subscription is {applied.subscription.customer_stripe_id}'s: not applied")
            if applied.organisation is not None:
                return Outcome(EventOutcome.STALE if applied.how == "stale" else EventOutcome.APPLIED,
                               note=f"organisation {applied.organisation.slug}")
            if applied.account is None:
                return Outcome(EventOutcome.UNLINKED, note="customer not yet linked to a member; kept for later")
            return Outcome(EventOutcome.STALE if applied.how == "stale" else EventOutcome.APPLIED, applied.account)
        case t if t in INVOICE_EVENTS:
            # Renewals and failed payments. The invoice is not the subscription's state, so read
            # the subscription from Stripe. Since 2025-03-31 the id lives under `parent`;
            # older versions (and localstripe) put it on the invoice.
            subscription_id = _invoice_subscription(obj)
            if not subscription_id:
                return Outcome(EventOutcome.IGNORED, note="invoice without subscription")
            applied = sync_subscription(session, gateway, subscription_id, customer_of(t, obj))
            if applied.organisation is not None:
                if t in PAID_INVOICE_EVENTS and applied.organisation.first_paid_at is None:
                    # By invoice: the first paid invoice ends the trial; the subscription decides.
                    applied.organisation.first_paid_at = created
                    recompute_organisation(session, applied.organisation)
                return Outcome(EventOutcome.APPLIED, note=f"organisation {applied.organisation.slug}")
            note = None
            if t == "invoice.payment_failed" and applied.account is not None:
                note = _tell_payment_failed(session, applied.account, applied.subscription, obj)
            return Outcome(EventOutcome.APPLIED if applied.account else EventOutcome.UNLINKED, applied.account,
                           note)
        case "invoice.upcoming":
            return _invoice_upcoming(session, obj)
        case "customer.updated":
            return _customer_updated(session, gateway, obj, created)
        case "customer.deleted":
            customer = link_customer(session, obj["id"], None)
            customer.deleted = True
            account = session.get(Account, customer.account_id) if customer.account_id else None
            if account is not None:
                remember_customer(session, account)
                recompute(session, account)
            return Outcome(EventOutcome.APPLIED if account else EventOutcome.UNLINKED, account)
        case "charge.refunded":
            account = find_account_for(session, customer_id=customer_of("charge", obj))
            amount = obj.get("amount_refunded") or 0
            note = f"Refund of {_money(amount, obj.get('currency'))} on {obj.get('id')}"
            return _flag(session, account, note)
        case "charge.dispute.created":
            # A dispute names the charge, not the customer: read the charge to find them.
            charge_id = obj.get("charge")
            customer_id = None
            if isinstance(charge_id, str):
                customer_id = customer_of("charge", gateway.retrieve_charge(charge_id))
            account = find_account_for(session, customer_id=customer_id)
            note = (f"Dispute opened ({obj.get('reason') or 'no reason given'}) for "
                    f"{_money(obj.get('amount') or 0, obj.get('currency'))} on {charge_id}")
            outcome = _flag(session, account, note)
            outcome.customer_id = customer_id
            return outcome
        case _:
            return Outcome(EventOutcome.IGNORED)


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub = details.get("subscription") or invoice.get("subscription")
    if isinstance(sub, dict):
        return sub.get("id")
    return sub


# Subscription states in which a failed payment can still be put right with a new card (an
# incomplete first payment is retried in Checkout itself; a canceled one gets "membership ended").
_FIXABLE = {"active", "past_due", "unpaid"}


def _tell_payment_failed(session: Session, account: Account, subscription: StripeSubscription,
                         invoice: dict[str, Any]) -> str | None:
    """The payment-failed mail, queued in the event's transaction: it commits with the event's
    outcome (an event stored once is applied once; a retried attempt rolled the mail back)."""
    membership = account.membership
    if membership is None or membership.stripe_subscription_id != subscription.stripe_id:
        return None  # not the subscription that pays for their membership
    if subscription.status not in _FIXABLE:
        return None
    if membership.status not in (MembershipStatus.PAST_DUE, MembershipStatus.LAPSED):
        return None  # paying again (an old event replayed, a retry that went through): nothing to fix
    attempt = invoice.get("next_payment_attempt")
    reader_mail.payment_failed(session, account, amount=invoice.get("amount_due"), currency=invoice.get("currency"),
                               next_attempt=_ts(attempt) if attempt else None)
    return "payment failed: the member was told, with a link to update their card"


def _invoice_upcoming(session: Session, invoice: dict[str, Any]) -> Outcome:
    """A yearly membership renews soon (Stripe sends this some days before, per the Dashboard's
    setting): remind the member, once per event. Monthly renewals get nothing; nothing is read
    from Stripe (the stored subscription says what it is)."""
    subscription_id = _invoice_subscription(invoice)
    customer_id = customer_of("invoice.upcoming", invoice)
    if not subscription_id:
        return Outcome(EventOutcome.IGNORED, note="upcoming invoice without subscription")
    row = session.scalars(select(StripeSubscription).where(StripeSubscription.stripe_id == subscription_id)).first()
    if row is not None and row.organisation_id is not None:
        return Outcome(EventOutcome.IGNORED, note="organisation subscription: no reader reminder")
    account = session.get(Account, row.account_id) if row is not None and row.account_id is not None \
        else find_account_for(session, customer_id=customer_id)
    if account is None:
        return Outcome(EventOutcome.IGNORED, note="upcoming invoice for no member")
    membership = account.membership
    if (account.role != Role.MEMBER or membership is None or membership.stripe_subscription_id != subscription_id
            or membership.status != MembershipStatus.ACTIVE or membership.cancel_at_period_end):
        return Outcome(EventOutcome.IGNORED, account, note="not a renewing membership")
    if membership.level_interval != Interval.YEAR.value:
        return Outcome(EventOutcome.IGNORED, account, note="monthly renewal: no reminder")
    when = invoice.get("next_payment_attempt") or invoice.get("period_end")
    amount = invoice.get("amount_due")
    if amount is None:
        amount = invoice.get("total", membership.level_amount)
    reader_mail.renewal_reminder(session, account, on=_ts(when) if when else membership.paid_through,
                                 amount=amount, currency=invoice.get("currency") or membership.level_currency)
    return Outcome(EventOutcome.APPLIED, account, note="yearly renewal reminder sent")


def _money(cents: int, currency: str | None) -> str:
    symbol = "$" if (currency or "usd").lower() == "usd" else ""
    suffix = "" if symbol else f" {(currency or '').upper()}"
    return f"{symbol}{cents / 100:.2f}{suffix}"


def _flag(session: Session, account: Account | None, note: str) -> Outcome:
    """Refunds and disputes go on the timeline and are flagged for staff; access follows the
    subscription's status, which their own subscription events change."""
    if account is None:
        return Outcome(EventOutcome.UNLINKED, note=note)
    flag(session, account, note)
    return Outcome(EventOutcome.APPLIED, account, note)


def _customer_updated(session: Session, gateway: BillingGateway, obj: dict[str, Any], created: datetime) -> Outcome:
    """Stripe's email is the billing email, never the login (SPEC "Trust rules"): anyone with the
    Portal or the Dashboard can type any address there. A new one is recorded, and the account
    is asked, at the new address, whether to sign in with it from now on."""
    customer = _get_or_create(session, StripeCustomer, {"stripe_id": obj["id"]}, {})
    if customer.snapshot_at is not None and created < customer.snapshot_at:
        return Outcome(EventOutcome.STALE, session.get(Account, customer.account_id) if customer.account_id else None)
    if customer.snapshot_at is not None and created == customer.snapshot_at:
        # Two changes in one second: which is newer is unknown, so ask Stripe (under the lock).
        obj = gateway.retrieve_customer(obj["id"])
    customer.snapshot_at = created
    email = (obj.get("email") or "").strip().lower()[:320] or None
    changed = email != customer.email
    customer.email = email
    account = session.get(Account, customer.account_id) if customer.account_id else None
    if account is None or account.role != Role.MEMBER:
        # Only readers are ever linked; a link to staff left from before the trust rules is inert.
        return Outcome(EventOutcome.APPLIED if account else EventOutcome.UNLINKED, account)
    if not changed:
        return Outcome(EventOutcome.APPLIED, account)
    if not email or email == account.email:
        email_change.withdraw(session, account)
        return Outcome(EventOutcome.APPLIED, account)
    if not ONE_ADDRESS.match(email):
        email_change.withdraw(session, account)
        note = f"Stripe billing email changed to {email!r}, which is not one email address; sign-in email kept"
        return Outcome(EventOutcome.APPLIED, account, note)
    taken = session.scalar(select(func.count(Account.id)).where(Account.email == email, Account.id != account.id))
    if taken:
        email_change.withdraw(session, account)
        note = f"Stripe billing email changed to {email}, which another account uses; sign-in email kept"
        flag(session, account, note)
        return Outcome(EventOutcome.APPLIED, account, note)
    email_change.request(session, account, email, source="stripe")
    return Outcome(EventOutcome.APPLIED, account, f"billing email is now {email}; asked the member to confirm it for signing in")
