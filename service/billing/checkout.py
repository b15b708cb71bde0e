"""Checkout: starting one (never a second while the member pays), confirming it on the success
page, the Customer Portal hand-off, and changing level.

`fulfil_checkout_session` is the one idempotent path that the success page and the
`checkout.session.completed` webhook share (https://docs.stripe.com/checkout/fulfillment).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import get_session, utcnow
from ..domain.membership import HELD, PAYING, Interval, MembershipStatus, Role
from ..i18n import lazy_gettext as _l, stripe_locale
from ..membership import catalogue
from ..membership.service import is_entitled, price_of_item, recompute
from ..membership.organisations import (
    MAX_SEATS,
    MIN_SELF_SERVE_SEATS,
    SeatError,
    clean_name,
    lock as lock_organisation,
    recompute_organisation,
    unique_slug,
)
from ..membership import history
from ..models import Account, CheckoutSession, Level, Organisation, StripeCustomer, StripeSubscription
from .gateway import BillingError, BillingGateway, CheckoutRequest, LineItem
from .lifecycle import _get_or_create, link_customer, link_customer_to_organisation, sync_subscription
from .runtime import get_gateway
from .snapshots import id_of

log = logging.getLogger("service.billing")

RECENT = timedelta(hours=24)
# Stripe subscription statuses that still bill (or retry): a second one would charge twice.
BILLING = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})


@dataclass(frozen=True)
class Choice:
    """A level of the catalogue, or "give more": a whole amount per interval."""

    level_id: int | None = None
    amount: int | None = None  # cents
    interval: Interval | None = None


class AlreadyMember(BillingError):
    """A second Checkout would charge twice."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def current_customer_id(account: Account) -> str | None:
    """The member's newest Stripe customer that still exists (reused by Checkout and the Portal)."""
    return get_session().scalar(
        select(StripeCustomer.stripe_id)
        .where(StripeCustomer.account_id == account.id, StripeCustomer.deleted.is_(False))
        .order_by(StripeCustomer.id.desc())
        .limit(1)
    )


def line_for(session: Session, choice: Choice, quantity: int = 1) -> LineItem:
    if choice.level_id is not None:
        level = session.get(Level, choice.level_id)
        if level is None or level.archived:
            raise BillingError(_l("That level is not offered."), retryable=False)
        return LineItem(price_id=level.stripe_price_id, quantity=quantity)
    product = catalogue.membership_product_id(session)
    if not product or not choice.amount or choice.interval is None:
        raise BillingError(_l("We could not start the payment. Please try again later."),
                           detail="no membership product for a custom amount")
    return LineItem(amount=choice.amount, currency="usd", interval=choice.interval.value, product_id=product,
                    quantity=quantity)


def record_checkout_session(session: Session, checkout: dict[str, Any], account: Account,
                            purpose: str = "membership") -> CheckoutSession:
    """Remember a Checkout Session this service created, and for whom: the only kind that may
    link a customer to an account."""
    row = CheckoutSession(stripe_id=checkout["id"], ours=True, account_id=account.id, purpose=purpose,
                          status=checkout.get("status") or "open", email=account.email)
    session.add(row)
    return row


def fulfil_checkout_session(session: Session, gateway: BillingGateway, checkout: dict[str, Any],
                            for_account: Account | None = None) -> Account | None:
    """Link the customer and apply the subscription of a Checkout Session this service created.

    The success page and the `checkout.session.completed` webhook both call this; running it
    twice, or both at once, ends in the same rows. A session we did not create (a Payment
    Link, a pricing table, a buy button: their client_reference_id is whatever the payer's URL
    said) is stored for staff and links nothing. With `for_account` (the success page), only a
    session created for that account is fulfilled.
    """
    customer_id = id_of(checkout.get("customer"))
    subscription_id = id_of(checkout.get("subscription"))
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
    if record.ours and record.purpose == "organisation":
        _fulfil_for_organisation(session, gateway, record, customer_id, subscription_id, for_account)
        return None
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
    with history.source(session, history.STRIPE_EVENT, outer_wins=True):  # the success page, reconcile
        recompute(session, account)
    return account


def _fulfil_for_organisation(session: Session, gateway: BillingGateway, record: CheckoutSession,
                             customer_id: str | None, subscription_id: str | None,
                             for_account: Account | None) -> Organisation | None:
    """A Checkout of ours for an organisation's seats: its customer and subscription belong to
    the organisation (never to the buyer's own membership); the buyer is its admin."""
    if for_account is not None and for_account.id != record.account_id:
        return None
    org = session.get(Organisation, record.organisation_id) if record.organisation_id else None
    if org is None:
        return None
    if subscription_id:
        sync_subscription(session, gateway, subscription_id, customer_id)
    if customer_id:
        link_customer_to_organisation(session, customer_id, org)
    locked = lock_organisation(session, org.id)
    if locked is not None:
        recompute_organisation(session, locked)
    return locked


def organisation_checkout(session: Session, stripe_id: str) -> bool:
    """Whether this Checkout Session is one of ours for an organisation."""
    return session.scalar(select(CheckoutSession.id).where(
        CheckoutSession.stripe_id == stripe_id, CheckoutSession.ours.is_(True),
        CheckoutSession.purpose == "organisation")) is not None


def start_organisation_checkout(account: Account, name: str, seats: int) -> str:
    """Checkout for an organisation's seats (`quantity` = seats, adjustable on Checkout's page,
    at the organisation level's yearly per-seat price). The buyer becomes the organisation's
    admin. Its URL; raises BillingError."""
    if account.role != Role.MEMBER:
        raise AlreadyMember(_l("Staff accounts do not buy seats: create the organisation in the staff console."))
    if not MIN_SELF_SERVE_SEATS <= seats <= MAX_SEATS:
        raise BillingError(_l("Choose between %(low)d and %(high)d seats.", low=MIN_SELF_SERVE_SEATS, high=MAX_SEATS),
                           retryable=False)
    try:
        name = clean_name(name)
    except SeatError as exc:
        raise BillingError(str(exc), retryable=False) from None
    session = get_session()
    gateway = get_gateway()
    catalogue.ensure_once(session, gateway)
    level = catalogue.organisation_level(session)
    if level is None:
        raise BillingError(_l("Organisation memberships are not on sale yet. Please contact us."), retryable=False)
    # The same buyer trying again (back button, a cancelled Checkout) reuses their unpaid one.
    org = session.scalars(select(Organisation).where(
        Organisation.admin_account_id == account.id, Organisation.name == name,
        Organisation.stripe_customer_id.is_(None), Organisation.billing == "checkout")).first()
    if org is None:
        org = Organisation(name=name, slug=unique_slug(session, name), admin_account_id=account.id, seats=0,
                           level_id=level.id, billing="checkout", domains=[])
        session.add(org)
        session.flush()
    _one_open_checkout(session, gateway, org, account)
    base = current_app.config["PUBLIC_BASE_URL"]
    req = CheckoutRequest(
        member_id=account.id,
        email=account.email,
        customer_id=None,  # a customer of the organisation's own, never the buyer's
        line=LineItem(price_id=level.stripe_price_id, quantity=seats),
        success_url=f"{base}/organisations/join/success?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/organisations/join",
        metadata={"organisation": org.slug},
        locale=stripe_locale(),
        adjustable_quantity=(MIN_SELF_SERVE_SEATS, MAX_SEATS),
    )
    checkout = gateway.create_checkout_session(req)
    url = checkout.get("url")
    if not url or not checkout.get("id"):
        raise BillingError(_l("We could not start the payment. Please try again later."))
    record = record_checkout_session(session, checkout, account, purpose="organisation")
    record.organisation_id = org.id
    session.commit()
    return url


def read_ours(gateway: BillingGateway, record: CheckoutSession) -> dict[str, Any] | None:
    """A Checkout Session of ours as Stripe has it now; None when Stripe no longer knows it (it
    completed nothing). A failure worth retrying raises."""
    try:
        return gateway.retrieve_checkout_session(record.stripe_id)
    except BillingError as exc:
        if exc.retryable:
            raise
        return None


def _one_open_checkout(session: Session, gateway: BillingGateway, org: Organisation, account: Account) -> None:
    """Never two payable Checkouts for one organisation: an earlier open one is expired; one that
    completed meanwhile is fulfilled, and no second is started."""
    earlier = session.scalars(select(CheckoutSession).where(
        CheckoutSession.organisation_id == org.id, CheckoutSession.ours.is_(True),
        CheckoutSession.status == "open")).all()
    for record in earlier:
        checkout = read_ours(gateway, record)
        if checkout is None:
            record.status = "expired"
            continue
        if checkout.get("status") == "open":
            gateway.expire_checkout_session(record.stripe_id)
            record.status = "expired"
        elif checkout.get("status") == "complete":
            fulfil_checkout_session(session, gateway, checkout, for_account=account)
            session.commit()
            raise AlreadyMember(_l("Your payment for %(organisation)s went through: there is no need to pay again.",
                                    organisation=org.name))
        else:
            record.status = checkout.get("status") or "expired"
    session.flush()


def confirm_organisation_checkout(account: Account | None, session_id: str) -> Organisation | None:
    """The organisation's success page: only its buyer's session is read and fulfilled."""
    session = get_session()
    if account is None:
        return None
    record = session.scalars(select(CheckoutSession).where(
        CheckoutSession.stripe_id == session_id, CheckoutSession.ours.is_(True),
        CheckoutSession.purpose == "organisation", CheckoutSession.account_id == account.id)).first()
    if record is None:
        return None
    gateway = get_gateway()
    checkout = gateway.retrieve_checkout_session(session_id)
    if checkout.get("id") != session_id:
        return None
    fulfil_checkout_session(session, gateway, checkout, for_account=account)
    session.commit()
    return session.get(Organisation, record.organisation_id) if record.organisation_id else None


def _refuse_a_second_checkout(session: Session, gateway: BillingGateway, account: Account) -> None:
    """No paying twice (SPEC "Levels"): not while a subscription is being paid for or is on
    hold, and not while a Checkout of ours completed but its webhook has not arrived yet."""
    membership = account.membership
    if membership is not None and membership.status in HELD:
        # The subscription still exists (paid, retried, paused or unpaid): a second one would
        # charge twice. Those are settled in "Manage billing".
        raise AlreadyMember(_l('You already have a membership subscription: use "Manage billing" to update it.'))
    # The subscriptions themselves, not only the stored state (a comp can stand in front of a
    # subscription Stripe is still retrying): any that still bills, or one whose first payment
    # is being confirmed (Stripe gives an incomplete one 23 hours).
    counted = catalogue.current(session)
    for sub in session.scalars(select(StripeSubscription).where(StripeSubscription.account_id == account.id)):
        if not any(counted.counts(price_of_item(i)) for i in (sub.items or [{"price": sub.price_id}])):
            continue
        if sub.status in BILLING or (sub.status == "incomplete" and sub.stripe_created_at
                                     and sub.stripe_created_at > utcnow() - RECENT):
            raise AlreadyMember(_l('A payment for your membership is already under way or active: use '
                                   '"Manage billing" to see it.'))
    recent = session.scalars(select(CheckoutSession).where(
        CheckoutSession.account_id == account.id, CheckoutSession.ours.is_(True), CheckoutSession.status == "open",
        CheckoutSession.created_at > utcnow() - RECENT)).all()
    for record in recent:
        checkout = read_ours(gateway, record)
        if checkout is None:
            continue  # Stripe no longer knows it: it completed nothing
        if checkout.get("status") == "open":
            # Still payable: close it, so that the reader cannot pay both the old one and the new.
            gateway.expire_checkout_session(record.stripe_id)
            record.status = "expired"
            session.commit()
            continue
        if checkout.get("status") != "complete":
            record.status = checkout.get("status") or record.status
            session.commit()
            continue
        fulfil_checkout_session(session, gateway, checkout, for_account=account)
        session.commit()
        raise AlreadyMember(_l("Your payment went through and is being confirmed: there is no need to pay again."))


def start_checkout(account: Account, choice: Choice) -> str:
    """Create a Stripe Checkout Session for the member, record it as ours, return its URL.

    Raises BillingError (AlreadyMember when a second one would charge twice)."""
    if account.role != Role.MEMBER:
        raise AlreadyMember(_l("Staff accounts do not hold memberships."))
    session = get_session()
    gateway = get_gateway()
    catalogue.ensure_once(session, gateway)
    _refuse_a_second_checkout(session, gateway, account)
    base = current_app.config["PUBLIC_BASE_URL"]
    req = CheckoutRequest(
        member_id=account.id,
        email=account.email,
        customer_id=current_customer_id(account),
        line=line_for(session, choice),
        # {CHECKOUT_SESSION_ID} is filled in by Stripe: https://docs.stripe.com/payments/checkout/custom-success-page
        success_url=f"{base}/join/success?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/join/cancelled",
        locale=stripe_locale(),  # Checkout's page in the reader's language
    )
    checkout = gateway.create_checkout_session(req)
    url = checkout.get("url")
    if not url or not checkout.get("id"):
        raise BillingError(_l("We could not start the payment. Please try again later."))
    record_checkout_session(session, checkout, account)
    session.commit()
    return url


@dataclass
class SuccessView:
    state: str  # "confirmed" | "processing" | "unknown" | "neutral"
    status: MembershipStatus | None


NEUTRAL = SuccessView("neutral", None)


def confirm_checkout(account: Account | None, session_id: str) -> SuccessView:
    """The success page: only a session this service created for the signed-in account is read
    from Stripe and fulfilled (through the webhook's path); anyone else sees a neutral page."""
    session = get_session()
    if account is None:
        return NEUTRAL
    ours = session.scalar(select(CheckoutSession.id).where(
        CheckoutSession.stripe_id == session_id, CheckoutSession.ours.is_(True),
        CheckoutSession.account_id == account.id))
    if ours is None:
        return NEUTRAL
    gateway = get_gateway()
    checkout = gateway.retrieve_checkout_session(session_id)
    if checkout.get("mode") not in (None, "subscription") or checkout.get("id") != session_id:
        return SuccessView("unknown", None)
    fulfilled = fulfil_checkout_session(session, gateway, checkout, for_account=account)
    session.commit()
    if fulfilled is None:
        return NEUTRAL
    membership = fulfilled.membership
    status = membership.status if membership else MembershipStatus.PENDING
    if is_entitled(membership):
        return SuccessView("confirmed", status)
    # "processing" only for a completed Checkout whose payment Stripe is still confirming (a
    # bank debit, say); an open or expired one was never paid.
    return SuccessView("processing" if checkout.get("status") == "complete" else "unknown", status)


def portal_url(account: Account, return_url: str) -> str | None:
    customer_id = current_customer_id(account)
    if customer_id is None:
        return None
    return get_gateway().create_portal_session(customer_id, return_url, locale=stripe_locale())["url"]


def change_level(account: Account, choice: Choice) -> None:
    """Swap the paying subscription's membership price (prorated). The membership follows when
    Stripe's `customer.subscription.updated` confirms it, like every other change."""
    session = get_session()
    membership = account.membership
    if membership is None or not membership.stripe_subscription_id:
        raise BillingError(_l("There is no membership subscription to change: join first."), retryable=False)
    if membership.status != MembershipStatus.ACTIVE:
        # Behind on payment: settle that first ("Manage billing"), a new level cannot skip it.
        raise BillingError(_l('Your last payment has not gone through: update your card in "Manage billing" '
                              "first, then change your level."), retryable=False)
    row = session.scalars(select(StripeSubscription).where(
        StripeSubscription.stripe_id == membership.stripe_subscription_id)).first()
    counted = catalogue.current(session)
    item = next((i for i in (row.items if row else []) if counted.counts(price_of_item(i))), None)
    if row is None or item is None or not item.get("id"):
        raise BillingError(_l("We could not find your subscription's membership item. Please contact us."),
                           retryable=False)
    line = line_for(session, choice, quantity=item.get("quantity") or 1)
    if line.price_id is not None and line.price_id == item.get("price"):
        raise BillingError(_l("That is already your level."), retryable=False)
    get_gateway().update_subscription_price(row.stripe_id, item["id"], line)
