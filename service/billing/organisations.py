"""Organisations on Stripe's side (SPEC "Organisations"): creating one that pays by invoice,
changing any organisation's seats, and its comp.

The staff console calls these; like `catalogue.add`, they take the session and the gateway and
never commit: the staff service audits, commits, or rolls back. Stripe objects are made before
anything is committed, so a refusal leaves no organisation without its Stripe side; what Stripe
then holds is applied by `sync_subscription` at once, as a webhook would later, so the seats
entitle (or not) from the moment the page answers.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..accounts.services import end_sessions, hash_password, make_reset_token, normalize_email
from ..db import utcnow
from ..domain.membership import MembershipStatus, Role
from ..i18n import gettext as _, in_language
from ..mail import send_mail
from ..membership.reader_mail import hello, letter
from ..membership import catalogue
from ..membership.organisations import (
    MAX_SEATS,
    SeatError,
    clean_name,
    lock,
    parse_domains,
    recompute_organisation,
    seat_count,
    unique_slug,
)
from ..membership.service import price_of_item
from ..models import Account, Level, Membership, Organisation, StripeSubscription
from ..urls import absolute_url
from .gateway import BillingError, BillingGateway, LineItem
from .lifecycle import link_customer_to_organisation, sync_subscription

log = logging.getLogger("service.billing.organisations")

DAYS_UNTIL_DUE = 30  # SPEC: Stripe emails the invoice, payable within 30 days
MAX_TRIAL_DAYS = 30
ENDED = {"canceled", "incomplete_expired"}


class OrganisationError(Exception):
    """An organisation change that cannot be made; the message is safe to show staff."""


@dataclass(frozen=True)
class NewInvoiced:
    """What staff type to create an organisation that pays by invoice."""

    name: str
    contact_email: str
    contact_name: str = ""
    seats: int = 1
    domains: str = ""
    trial_days: int = MAX_TRIAL_DAYS
    level_id: int | None = None  # None: the catalogue's organisation level


@dataclass(frozen=True)
class Created:
    organisation: Organisation
    contact: Account
    contact_created: bool
    customer_id: str
    subscription_id: str
    # Set when Stripe made everything but the first read failed: the webhook applies it later.
    warning: str | None = None


@dataclass(frozen=True)
class SeatChange:
    before: int
    after: int
    suspended: int  # seats suspended because the quantity fell below the seats in use
    warning: str | None = None


def _stripe_says(exc: BillingError) -> str:
    return exc.message if exc.detail == exc.message else f"{exc.message} (Stripe: {exc.detail})"


def _level(session: Session, level_id: int | None) -> Level:
    """An organisation level that is on sale: only those are per-seat prices."""
    if level_id is None:
        level = catalogue.organisation_level(session)
    else:
        level = session.get(Level, level_id)
        if level is not None and (not level.organisation or level.archived):
            level = None
    if level is None:
        raise OrganisationError("Choose an organisation level (add one under Levels, ticking "
                                "\"for organisations\").")
    return level


def _contact(session: Session, email: str, name: str) -> tuple[Account, bool]:
    """The billing contact's reader account, made when there is none (with a password nobody
    knows: they choose theirs through the link `tell_contact` mails). A staff account is never
    an organisation's admin: staff and readers stay apart."""
    email = normalize_email(email)
    account = session.scalars(select(Account).where(Account.email == email)).first()
    if account is not None:
        if account.role != Role.MEMBER:
            raise OrganisationError(f"{email} is a staff account: the contact must be a reader.")
        if account.email_verified_at is None:
            # Never proved: it may be a squatter's account (anyone can sign up with any address).
            # Its password is replaced and its sessions end; the owner of the address chooses a
            # password through the link `tell_contact` mails, as for a new account.
            account.password_hash = hash_password(secrets.token_urlsafe(32))
            end_sessions(account)
            return account, True
        return account, False
    name = (name or "").strip()
    if not name:
        raise OrganisationError(f"{email} has no account yet: give the contact's name to create one.")
    now = utcnow()
    account = Account(email=email, name=name, password_hash=hash_password(secrets.token_urlsafe(32)),
                      role=Role.MEMBER, created_at=now)
    # No DAWNS consent was given by anyone here: the reader opts in themselves.
    account.membership = Membership(status=MembershipStatus.PENDING, newsletter_opt_in=False, created_at=now)
    session.add(account)
    session.flush()
    return account, True


def create_invoiced(session: Session, gateway: BillingGateway, new: NewInvoiced) -> Created:
    """An organisation that pays by invoice: its contact (the organisation admin), a Stripe
    customer of its own, and a `send_invoice` subscription for its seats at the level's
    per-seat price. Until its first invoice is paid, the staff-set trial entitles its seats."""
    try:
        name = clean_name(new.name)
    except SeatError:
        raise OrganisationError("Give the organisation a name of 2 to 200 characters, on one line.") from None
    if not 1 <= new.seats <= MAX_SEATS:
        raise OrganisationError(f"Choose between 1 and {MAX_SEATS:,} seats.")
    if not 0 <= new.trial_days <= MAX_TRIAL_DAYS:
        raise OrganisationError(f"The trial is from 0 to {MAX_TRIAL_DAYS} days.")
    try:
        domains = parse_domains(new.domains)
    except SeatError as exc:
        raise OrganisationError(str(exc)) from None
    level = _level(session, new.level_id)
    contact, created = _contact(session, new.contact_email, new.contact_name)
    now = utcnow()
    org = Organisation(name=name, slug=unique_slug(session, name), admin_account_id=contact.id, seats=new.seats,
                       domains=domains, level_id=level.id, billing="invoice", status=MembershipStatus.PENDING,
                       trial_ends_at=now + timedelta(days=new.trial_days) if new.trial_days else None)
    session.add(org)
    session.flush()
    metadata = {"organisation": org.slug}
    try:
        customer_id = gateway.create_customer(contact.email, metadata, name=name)["id"]
    except BillingError as exc:
        raise OrganisationError(f"Stripe did not create the customer: {_stripe_says(exc)}. Nothing was saved.") from None
    link_customer_to_organisation(session, customer_id, org)
    session.flush()
    try:
        sub = gateway.create_invoiced_subscription(customer_id, LineItem(price_id=level.stripe_price_id,
                                                                         quantity=new.seats),
                                                   DAYS_UNTIL_DUE, metadata)
    except BillingError as exc:
        log.error("organisation %s: customer %s made, subscription refused: %s", org.slug, customer_id, exc.detail)
        raise OrganisationError(
            f"Stripe made the customer {customer_id} but did not create the subscription: {_stripe_says(exc)}. "
            f"Nothing was saved here; delete that customer in the Stripe Dashboard, then try again.") from None
    warning = None
    try:
        sync_subscription(session, gateway, sub["id"], customer_id)
    except BillingError as exc:
        # Stripe holds the subscription: keep the organisation that owns it. Its webhook applies it.
        log.warning("organisation %s: subscription %s made, first read failed: %s", org.slug, sub["id"], exc.detail)
        warning = (f"Stripe made the subscription {sub['id']} but could not be read back ({exc.message}); "
                   "its state follows when Stripe's webhook arrives.")
        locked = lock(session, org.id)
        locked.stripe_subscription_id = sub["id"]
        recompute_organisation(session, locked)
    return Created(org, contact, created, customer_id, sub["id"], warning)


def tell_contact(org: Organisation, contact: Account, created: bool) -> None:
    """Before the commit (the message is queued in the current transaction): the contact learns
    they manage the organisation's seats (and, with a new account, gets the link to choose a
    password: the same single-use reset link)."""
    # The reader pages' address, as the seat mails write it (built without their blueprint).
    manage = f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/organisations/{org.slug}"
    with in_language(contact.language) as lang:
        if created:
            minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
            link = absolute_url("members.reset_password", token=make_reset_token(contact))
            body = letter(hello(contact),
                          _("An account was made for you as the contact of %(organisation)s, which subscribes to DAWNS "
                            "for its people: you manage its seats.", organisation=org.name),
                          _("Choose your password here (the link works once, for %(minutes)d minutes):",
                            minutes=minutes) + "\n\n" + link,
                          _("If it has expired, ask for a new one at %(url)s with this address. Then manage the seats "
                            "at %(manage)s", url=absolute_url("members.reset_request"), manage=manage))
        else:
            body = letter(hello(contact),
                          _("You are now the contact of %(organisation)s, which subscribes to DAWNS for its people: "
                            "you manage its seats at %(manage)s", organisation=org.name, manage=manage),
                          _("Stripe emails its invoices to this address."))
        send_mail(contact.email, _("%(organisation)s on DAWNS: you manage its seats", organisation=org.name), body,
                  kind="organisation_contact", account_id=contact.id, lang=lang)


def _seat_item(session: Session, org: Organisation, row: StripeSubscription) -> dict | None:
    """The subscription item that carries the seats: the level's price, else a counted one."""
    items = row.items or []
    price = org.level.stripe_price_id if org.level is not None else None
    found = next((i for i in items if price and i.get("price") == price), None)
    if found is None:
        counted = catalogue.current(session)
        found = next((i for i in items if counted.counts(price_of_item(i))), None)
    return found


def change_seats(session: Session, gateway: BillingGateway, org_id: int, seats: int) -> SeatChange:
    """With a subscription, the seats are its quantity: Stripe's is changed (prorated) and read
    back, so they apply now. A comped organisation without one takes the number as is. Either
    way, seats beyond the new number are suspended, newest first."""
    if not 1 <= seats <= MAX_SEATS:
        raise OrganisationError(f"Choose between 1 and {MAX_SEATS:,} seats.")
    org = session.get(Organisation, org_id)
    if org is None:
        raise OrganisationError("No such organisation.")
    before = org.seats
    suspended_before = seat_count(session, org).suspended
    warning = None
    row = session.scalars(select(StripeSubscription).where(
        StripeSubscription.stripe_id == org.stripe_subscription_id)).first() if org.stripe_subscription_id else None
    if row is not None:
        if row.status in ENDED:
            raise OrganisationError(f"Its subscription {row.stripe_id} has ended ({row.status}): its seats follow "
                                    "it. Comp the organisation, or create a new one.")
        item = _seat_item(session, org, row)
        if item is None or not item.get("id"):
            raise OrganisationError(f"Subscription {row.stripe_id} has no per-seat item to change.")
        try:
            gateway.update_subscription_quantity(row.stripe_id, item["id"], seats)
        except BillingError as exc:
            raise OrganisationError(f"Stripe did not change the quantity: {_stripe_says(exc)}.") from None
        try:
            sync_subscription(session, gateway, row.stripe_id, row.customer_stripe_id)
        except BillingError as exc:
            warning = (f"Stripe changed the quantity but could not be read back ({exc.message}); the seats follow "
                       "when Stripe's webhook arrives.")
        org = lock(session, org_id)
    else:
        org = lock(session, org_id)
        org.seats = seats
        recompute_organisation(session, org)
    session.flush()
    suspended = max(0, seat_count(session, org).suspended - suspended_before)
    return SeatChange(before, org.seats, suspended, warning)


def comp(session: Session, org_id: int, reason: str, until: datetime | None) -> Organisation:
    """Staff comp: the seats entitle whatever the subscription says, until `until` (or ever)."""
    reason = (reason or "").strip()
    if not reason:
        raise OrganisationError("Give a reason.")
    if until is not None and until <= utcnow():
        raise OrganisationError("The end date must be in the future.")
    org = lock(session, org_id)
    if org is None:
        raise OrganisationError("No such organisation.")
    org.comped_at, org.comped_until, org.comp_reason = utcnow(), until, reason
    recompute_organisation(session, org)
    return org


def end_comp(session: Session, org_id: int) -> tuple[Organisation, str | None]:
    """The comp ends now: the subscription (or the trial) decides again. Returns the old reason."""
    org = lock(session, org_id)
    if org is None:
        raise OrganisationError("No such organisation.")
    if org.comped_at is None:
        raise OrganisationError("This organisation has no comp.")
    reason = org.comp_reason
    org.comped_at = org.comped_until = org.comp_reason = None
    recompute_organisation(session, org)
    return org, reason


def admin_change_seats(admin: Account, slug: str, seats: int) -> SeatChange:
    """The organisation's own admin changes its number of seats (the Stripe quantity,
    prorated, as on Checkout's page). Service function: audits and commits. Raises
    OrganisationError, or seats.NotAllowed for someone else's organisation."""
    from ..accounts.seats import managed_by
    from ..db import get_session
    from ..models import AuditLog
    from .runtime import get_gateway

    session = get_session()
    org = managed_by(admin, slug)
    if not org.stripe_subscription_id:
        raise OrganisationError("Your organisation has no subscription to change yet.")
    try:
        change = change_seats(session, get_gateway(), org.id, seats)
    except (OrganisationError, BillingError) as exc:
        session.rollback()
        raise OrganisationError(getattr(exc, "message", None) or str(exc)) from None
    session.add(AuditLog(actor_id=admin.id, actor_email=admin.email, action="organisation_seats",
                         target_organisation_id=org.id,
                         details={"before": change.before, "after": change.after, "asked": seats,
                                  "suspended": change.suspended, "by": "organisation admin"}))
    session.commit()
    return change


def set_domains(session: Session, org_id: int, text: str) -> tuple[Organisation, list[str], list[str]]:
    """Staff set the email domains whose readers may claim a seat. Returns (org, before, after)."""
    org = lock(session, org_id)
    if org is None:
        raise OrganisationError("No such organisation.")
    try:
        domains = parse_domains(text)
    except SeatError as exc:
        raise OrganisationError(str(exc)) from None
    before = list(org.domains or [])
    org.domains = domains
    return org, before, domains
