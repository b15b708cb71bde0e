"""Organisations and their seats (SPEC "Organisations"): the one place that recomputes an
organisation and that gives, suspends and takes back seats.

An organisation's billing state is derived from its own Stripe subscription by the same pure
rule as a member's (`domain.membership.derive`), with its staff comp, or, for one that pays
by invoice and has not paid its first invoice yet, its trial, in the comp's place. A seat
entitles its reader while the organisation does (`seat_window`); the reader's membership is
recomputed by the membership service like any other change, so DAWNS Digest follows through
the same outbox. Callers own the transaction. Lock order: subscription, customer,
organisation, membership.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..domain.membership import MembershipStatus, Parts, Role, derive
from ..i18n import gettext as _, in_language, ngettext
from ..mail import send_mail
from ..models import NEVER_READ, Account, Membership, Organisation, Seat, StripeSubscription
from . import catalogue, history
from .reader_mail import hello, letter
from .service import grace, membership_for, organisation_comp, price_of_item, recompute, subscription_parts

log = logging.getLogger("service.organisations")

MIN_SELF_SERVE_SEATS = 3
MAX_SEATS = 10_000
ACTIVE, SUSPENDED, REMOVED = "active", "suspended", "removed"
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
DOMAIN = re.compile(r"^(?=.{3,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class SeatError(Exception):
    """A seat cannot be taken or given; the message is safe to show."""


# --- names ---------------------------------------------------------------------------------------

def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].strip("-")
    return text or "organisation"


# Paths under /organisations/ that are pages, not organisations.
RESERVED_SLUGS = frozenset({"join", "claim", "invitations"})
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_name(name: str) -> str:
    """An organisation's name: one line, no control characters (it goes into mail subjects)."""
    name = (name or "").strip()
    if CONTROL.search(name) or not 2 <= len(name) <= 200:
        raise SeatError(_("An organisation's name is 2 to 200 characters on one line."))
    return name


def unique_slug(session: Session, name: str) -> str:
    base = slugify(name)
    slug, n = base, 1
    while slug in RESERVED_SLUGS or session.scalar(select(Organisation.id).where(Organisation.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


def parse_domains(text: str) -> list[str]:
    """"unicef.org, who.int" -> ["unicef.org", "who.int"]; raises SeatError on a bad one."""
    found: list[str] = []
    for part in re.split(r"[\s,;]+", (text or "").strip().lower()):
        part = part.strip().removeprefix("@")
        if not part:
            continue
        if not DOMAIN.match(part):
            raise SeatError(_("%(domain)s is not an email domain (e.g. unicef.org).", domain=repr(part)))
        if part not in found:
            found.append(part)
    if len(found) > 20:
        raise SeatError(_("At most 20 domains."))
    return found


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower() if "@" in email else ""


def on_domains(org: Organisation, email: str) -> bool:
    return bool(org.domains) and email_domain(email) in (org.domains or [])


# --- the organisation's state --------------------------------------------------------------------

def _subscription_parts(session: Session, org: Organisation):
    rows = session.scalars(select(StripeSubscription).where(
        StripeSubscription.organisation_id == org.id, StripeSubscription.snapshot_at > NEVER_READ)).all()
    return rows, subscription_parts(session, organisation_id=org.id)


def in_trial(org: Organisation, now: datetime | None = None) -> bool:
    """By invoice, until the first invoice is paid, the seats entitle for the staff-set trial."""
    now = now or utcnow()
    return not org.comp.active(now) and organisation_comp(org, now).active(now)


def recompute_organisation(session: Session, org: Organisation) -> None:
    """Derive the organisation's state from its subscription, fit the seats to the quantity,
    and recompute every reader holding one of its seats."""
    now = utcnow()
    rows, parts = _subscription_parts(session, org)
    if org.billing == "invoice" and org.first_paid_at is None:
        # Its subscription is "active" in Stripe from the start; unpaid, only the trial entitles.
        parts = []
    comp = organisation_comp(org, now)
    derived = derive(Parts(subscriptions=parts, catalogue=catalogue.current(session), now=now, grace=grace(),
                           comp=comp))
    before = (org.status, org.paid_through)
    org.status = derived.status
    org.paid_through = derived.paid_through
    org.cancel_at_period_end = derived.cancel_at_period_end
    newest = max(rows, key=lambda r: (r.stripe_created_at or NEVER_READ, r.id), default=None)
    current = next((r for r in rows if r.stripe_id == derived.subscription_id), None) or newest
    if current is not None:
        org.stripe_subscription_id = current.stripe_id
        quantity = _seat_quantity(session, current)
        if quantity is not None:
            org.seats = quantity
    if before != (org.status, org.paid_through):
        log.info("organisation %s: %s -> %s", org.id, before[0], org.status)
    fit_seats(session, org)
    recompute_seat_holders(session, org)


def _seat_quantity(session: Session, row: StripeSubscription) -> int | None:
    """The quantity of the subscription's item at a counted price (the per-seat level)."""
    counted = catalogue.current(session)
    for item in row.items or []:
        if counted.counts(price_of_item(item)):
            return int(item.get("quantity") or 1)
    return None


def fit_seats(session: Session, org: Organisation) -> list[Seat]:
    """Never more active seats than the quantity: the most recently taken beyond it are
    suspended (oldest keep theirs); when the quantity grows again, suspended seats come back,
    oldest first. Returns the seats suspended now."""
    active = session.scalars(select(Seat).where(Seat.organisation_id == org.id, Seat.status == ACTIVE)
                             .order_by(Seat.taken_at, Seat.id)).all()
    now = utcnow()
    suspended_now: list[Seat] = []
    if len(active) > org.seats:
        for seat in active[org.seats:]:
            seat.status, seat.suspended_at = SUSPENDED, now
            suspended_now.append(seat)
        org.seats_suspended_at = now
        log.warning("organisation %s: %d seats suspended (quantity %d)", org.id, len(suspended_now), org.seats)
    elif len(active) < org.seats:
        room = org.seats - len(active)
        waiting = session.scalars(select(Seat).where(Seat.organisation_id == org.id, Seat.status == SUSPENDED)
                                  .order_by(Seat.taken_at, Seat.id).limit(room)).all()
        for seat in waiting:
            seat.status, seat.suspended_at = ACTIVE, None
        if waiting and not session.scalar(select(Seat.id).where(Seat.organisation_id == org.id,
                                                                Seat.status == SUSPENDED).limit(1)):
            org.seats_suspended_at = None
    if suspended_now:
        _tell_admin_of_suspension(session, org, suspended_now)
    return suspended_now


def _tell_admin_of_suspension(session: Session, org: Organisation, seats: list[Seat]) -> None:
    from flask import current_app

    admin = session.get(Account, org.admin_account_id) if org.admin_account_id else None
    if admin is None:
        return
    emails = [e for (e,) in session.execute(select(Account.email).where(Account.id.in_([s.account_id for s in seats])))]
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    try:
        _send_suspension(session, admin, org, seats, emails, base)
    except Exception:  # noqa: BLE001 - a mail problem must never hold up the organisation's Stripe events
        log.exception("organisation %s: could not tell its admin about suspended seats", org.id)


def _send_suspension(session: Session, admin: Account, org: Organisation, seats: list[Seat], emails: list[str],
                     base: str) -> None:
    # Queued in `session` (the worker's, applying a Stripe event): it goes if the change commits.
    manage = f"{base}/organisations/{org.slug}"
    with in_language(admin.language) as lang:
        body = letter(hello(admin),
                      ngettext("Your organisation's subscription now has %(num)d seat, fewer than the seats in use, so "
                               "the most recently taken seats were suspended:",
                               "Your organisation's subscription now has %(num)d seats, fewer than the seats in use, "
                               "so the most recently taken seats were suspended:", org.seats)
                      + "\n\n" + "\n".join(f"  {e}" for e in emails),
                      _("They come back, oldest first, if you add seats. Manage your seats at %(url)s", url=manage))
        subject = ngettext("%(organisation)s: %(num)d seat suspended", "%(organisation)s: %(num)d seats suspended",
                           len(seats), organisation=org.name)
        send_mail(admin.email, subject, body, kind="seats_suspended", account_id=admin.id, lang=lang, session=session)


def recompute_seat_holders(session: Session, org: Organisation) -> None:
    session.flush()
    holders = session.scalars(select(Account).join(Seat, Seat.account_id == Account.id).where(
        Seat.organisation_id == org.id, Seat.status != REMOVED).order_by(Account.id)).all()
    for account in holders:
        recompute(session, account)


# --- seats -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeatCount:
    used: int
    total: int
    suspended: int


def seat_count(session: Session, org: Organisation) -> SeatCount:
    counts = dict(session.execute(select(Seat.status, func.count()).where(Seat.organisation_id == org.id)
                                  .group_by(Seat.status)).all())
    return SeatCount(used=counts.get(ACTIVE, 0), total=org.seats, suspended=counts.get(SUSPENDED, 0))


def lock(session: Session, org_id: int) -> Organisation | None:
    return session.scalars(select(Organisation).where(Organisation.id == org_id).with_for_update()
                           .execution_options(populate_existing=True)).first()


def live_seat(session: Session, org: Organisation, account: Account) -> Seat | None:
    return session.scalars(select(Seat).where(Seat.organisation_id == org.id, Seat.account_id == account.id,
                                              Seat.status != REMOVED)).first()


def take_seat(session: Session, org: Organisation, account: Account, how: str,
              newsletter_opt_in: bool | None = None) -> Seat:
    """Give the reader a seat (idempotent: a reader holding one keeps it). Never more active
    seats than the quantity: the organisation row is locked while counting."""
    if account.role != Role.MEMBER:
        raise SeatError(_("Staff accounts do not take seats."))
    locked = lock(session, org.id)
    if locked is None:
        raise SeatError(_("No such organisation."))
    seat = live_seat(session, locked, account)
    if seat is None:
        if seat_count(session, locked).used >= locked.seats:
            raise SeatError(ngettext("The one seat of %(name)s is taken. Ask your organisation's admin for more.",
                                     "All %(num)d seats of %(name)s are taken. Ask your organisation's admin for more.",
                                     locked.seats, name=locked.name))
        seat = Seat(organisation_id=locked.id, account_id=account.id, status=ACTIVE, how=how, taken_at=utcnow())
        session.add(seat)
    membership = membership_for(session, account)
    membership.has_seat = True
    if newsletter_opt_in is not None:
        membership.newsletter_opt_in = newsletter_opt_in
    session.flush()
    with history.source(session, history.SEAT, outer_wins=True):
        recompute(session, account, membership)
    return seat


def remove_seat(session: Session, seat: Seat) -> None:
    """Take a seat back: the reader keeps any other source of entitlement; DAWNS follows
    NEWSLETTER_ON_LAPSE when none is left. A suspended seat waiting for room comes back."""
    org = lock(session, seat.organisation_id)
    if seat.status == REMOVED:
        return
    seat.status, seat.removed_at = REMOVED, utcnow()
    session.flush()
    account = session.get(Account, seat.account_id)
    membership = membership_for(session, account)
    membership.has_seat = session.scalar(select(Seat.id).where(Seat.account_id == account.id,
                                                               Seat.status != REMOVED).limit(1)) is not None
    with history.source(session, history.SEAT, outer_wins=True):
        recompute(session, account, membership)
    if org is not None:
        fit_seats(session, org)
        recompute_seat_holders(session, org)


def seat_of(session: Session, account_id: int) -> tuple[Seat, Organisation] | None:
    """The reader's newest seat that is not removed, with its organisation (member pages)."""
    row = session.execute(select(Seat, Organisation).join(Organisation, Organisation.id == Seat.organisation_id)
                          .where(Seat.account_id == account_id, Seat.status != REMOVED)
                          .order_by(Seat.taken_at.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def organisations_of_admin(session: Session, account: Account) -> list[Organisation]:
    return list(session.scalars(select(Organisation).where(Organisation.admin_account_id == account.id)
                                .order_by(Organisation.name)))


def membership_status_label(org: Organisation) -> str:
    if in_trial(org):
        return "trial"
    return org.status.value if isinstance(org.status, MembershipStatus) else str(org.status)

