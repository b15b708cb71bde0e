"""Staff actions: each one is recorded in the audit log with who and when."""
from __future__ import annotations

import secrets

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from ..billing import organisations as org_billing
from ..billing.gateway import BillingError
from ..billing.runtime import get_gateway
from ..membership import catalogue
from ..membership.organisations import (
    REMOVED,
    SeatCount,
    lock,
    membership_status_label,
    recompute_organisation,
    remove_seat,
    seat_count,
)
from ..membership.service import recompute
from ..membership import history
from ..db import get_session, utcnow
from ..domain.membership import MembershipStatus, Role
from ..accounts.services import create_staff, end_sessions, find_by_email, invite_staff, request_password_reset
from ..models import (
    Account,
    AuditLog,
    CheckoutSession,
    Level,
    Membership,
    NewsletterOutbox,
    Organisation,
    Seat,
    StripeCustomer,
    StripeEvent,
    StripeSubscription,
)
from ..newsletter.outbox import retry_failed


class ActionError(Exception):
    """A staff action that cannot be done; the message is shown to the staff member."""


def _audit(actor: Account, action: str, target: Account | None, target_org: Organisation | None = None,
           **details: Any) -> None:
    get_session().add(AuditLog(actor_id=actor.id, actor_email=actor.email, action=action,
                               target_account_id=target.id if target else None,
                               target_organisation_id=target_org.id if target_org else None, details=details))


def _member(member_id: int) -> Account:
    account = get_session().get(Account, member_id)
    if account is None or account.membership is None or account.role != Role.MEMBER:
        # Staff act on readers; staff accounts are managed by admins at /staff/admin.
        raise ActionError("No such member.")
    return account


def comp(actor: Account, member_id: int, reason: str, until: datetime | None) -> Membership:
    account = _member(member_id)
    if until is not None and until <= utcnow():
        raise ActionError("The end date must be in the future.")
    membership = account.membership
    membership.comped_at = utcnow()
    membership.comped_until = until
    membership.comp_reason = reason
    with history.source(get_session(), history.STAFF):
        membership = recompute(get_session(), account)
    _audit(actor, "comp", account, reason=reason, until=until.isoformat() if until else None)
    get_session().commit()
    return membership


def revoke_comp(actor: Account, member_id: int) -> Membership:
    account = _member(member_id)
    membership = account.membership
    if membership.comped_at is None:
        raise ActionError("This member has no complimentary membership.")
    membership.comped_at = None
    membership.comped_until = None
    reason = membership.comp_reason
    membership.comp_reason = None
    with history.source(get_session(), history.STAFF):
        membership = recompute(get_session(), account)
    _audit(actor, "comp_revoke", account, previous_reason=reason)
    get_session().commit()
    return membership


def expire_comps() -> list[int]:
    """Comps whose end date has passed: recompute those members (cron or the worker)."""
    session = get_session()
    now = utcnow()
    ids = session.scalars(select(Membership.account_id).where(
        Membership.comped_at.is_not(None), Membership.comped_until.is_not(None), Membership.comped_until <= now
    )).all()
    for account_id in ids:
        account = session.get(Account, account_id)
        membership = account.membership
        membership.comped_at = None
        membership.comped_until = None
        recompute(session, account)
        session.add(AuditLog(actor_id=None, actor_email="system", action="comp_expired",
                             target_account_id=account_id, details={}))
    session.commit()
    return list(ids)


def expire_organisation_comps() -> list[int]:
    """Organisations whose comp end date, or whose unpaid trial, has passed: recomputed so that
    their state and their lists say so (their seats stopped entitling at that moment anyway)."""
    session = get_session()
    now = utcnow()
    comp_over = set(session.scalars(select(Organisation.id).where(
        Organisation.comped_at.is_not(None), Organisation.comped_until.is_not(None),
        Organisation.comped_until <= now)))
    trial_over = set(session.scalars(select(Organisation.id).where(
        Organisation.billing == "invoice", Organisation.first_paid_at.is_(None), Organisation.comped_at.is_(None),
        Organisation.trial_ends_at.is_not(None), Organisation.trial_ends_at <= now,
        Organisation.status == MembershipStatus.COMPED)))
    for org_id in sorted(comp_over | trial_over):
        org = lock(session, org_id)
        if org_id in comp_over:
            org.comped_at = org.comped_until = None
            session.add(AuditLog(actor_id=None, actor_email="system", action="organisation_comp_expired",
                                 target_organisation_id=org_id, details={"reason": org.comp_reason}))
            org.comp_reason = None
        else:
            session.add(AuditLog(actor_id=None, actor_email="system", action="organisation_trial_ended",
                                 target_organisation_id=org_id, details={}))
        recompute_organisation(session, org)
        session.commit()
    return sorted(comp_over | trial_over)


def retry_newsletter(actor: Account, member_id: int, row_id: int) -> None:
    account = _member(member_id)
    session = get_session()
    row = session.get(NewsletterOutbox, row_id)
    if row is None or row.account_id != account.id or not retry_failed(session, row_id):
        raise ActionError("Only a failed newsletter delivery of this member can be retried.")
    _audit(actor, "newsletter_retry", account, outbox_id=row_id)
    session.commit()


@dataclass(frozen=True)
class DeliveryFilter:
    type: str | None = None       # an event type, or its start ("invoice.")
    outcome: str | None = None    # applied, stale, unlinked, failed (the queue's), ...
    member: int | None = None     # an account id
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None     # the page after this row id (newest first)


def webhook_deliveries(f: DeliveryFilter, per_page: int = 50) -> tuple[list[tuple[StripeEvent, int | None]], int | None]:
    """Stored Stripe events, newest first, filtered; each with its member (through its customer
    when the event names none); and the id to continue after, when there is more."""
    session = get_session()
    stmt = select(StripeEvent).order_by(StripeEvent.id.desc()).limit(per_page + 1)
    if f.type:
        stmt = stmt.where(StripeEvent.type.startswith(f.type, autoescape=True) if f.type.endswith(".")
                          else StripeEvent.type == f.type)
    if f.outcome == "failed":
        stmt = stmt.where(StripeEvent.status == "failed")
    elif f.outcome:
        stmt = stmt.where(StripeEvent.outcome == f.outcome)
    if f.member is not None:
        customers = select(StripeCustomer.stripe_id).where(StripeCustomer.account_id == f.member)
        stmt = stmt.where((StripeEvent.account_id == f.member) | StripeEvent.customer_stripe_id.in_(customers))
    if f.since is not None:
        stmt = stmt.where(StripeEvent.received_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(StripeEvent.received_at < f.until)
    if f.before is not None:
        stmt = stmt.where(StripeEvent.id < f.before)
    rows = list(session.scalars(stmt))
    more = rows[per_page].id if len(rows) > per_page else None
    rows = rows[:per_page]
    customers = {e.customer_stripe_id for e in rows if e.account_id is None and e.customer_stripe_id}
    owners = {stripe_id: account_id for stripe_id, account_id in session.execute(
        select(StripeCustomer.stripe_id, StripeCustomer.account_id).where(StripeCustomer.stripe_id.in_(customers)))}
    return [(e, e.account_id or owners.get(e.customer_stripe_id)) for e in rows], (rows[-1].id if more else None)


def stripe_trouble(limit: int = 200) -> list[tuple[StripeEvent, int | None]]:
    """Failed and retrying events, each with its member (through its customer when the event
    never got as far as naming one)."""
    from ..billing.queue import troubled

    session = get_session()
    rows = troubled(session, limit)
    customers = {e.customer_stripe_id for e in rows if e.account_id is None and e.customer_stripe_id}
    owners = {stripe_id: account_id for stripe_id, account_id in session.execute(
        select(StripeCustomer.stripe_id, StripeCustomer.account_id).where(StripeCustomer.stripe_id.in_(customers)))}
    return [(e, e.account_id or owners.get(e.customer_stripe_id)) for e in rows]


def requeue_stripe_event(actor: Account, stripe_id: str) -> StripeEvent:
    """A failed Stripe event goes back in the queue (audited); the worker applies it in order."""
    from ..billing.lifecycle import find_account_for
    from ..billing.queue import requeue

    session = get_session()
    row = requeue(session, stripe_id)
    if row is None:
        session.rollback()
        raise ActionError("Only a failed or unlinked Stripe event can be replayed.")
    target = (session.get(Account, row.account_id) if row.account_id
              else find_account_for(session, customer_id=row.customer_stripe_id))
    if row.outcome == "unlinked" and row.status == "pending" and target is None and not session.scalar(
            select(StripeCustomer.organisation_id).where(StripeCustomer.stripe_id == row.customer_stripe_id)):
        session.rollback()
        raise ActionError("Its customer is still linked to no member, so replaying it would change nothing: "
                          "the customer is linked by a checkout of ours (or `flask stripe reconcile`); then replay.")
    _audit(actor, "stripe_event_requeued", target, event=row.stripe_id, type=row.type)
    session.commit()
    return row


def send_reset(actor: Account, member_id: int) -> None:
    account = _member(member_id)
    request_password_reset(account.email)
    _audit(actor, "send_password_reset", account)
    get_session().commit()


def catalogue_levels() -> list:
    session = get_session()
    try:
        catalogue.ensure(session, get_gateway())
        session.commit()
    except BillingError:
        session.rollback()
    return catalogue.levels(session)


def add_level(actor: Account, name: str, amount: int, interval: str, price_id: str | None, public: bool,
              organisation: bool = False) -> None:
    session = get_session()
    try:
        level = catalogue.add(session, get_gateway(), name=name, amount=amount, interval=interval,
                              price_id=price_id, public=public, organisation=organisation)
    except (catalogue.CatalogueError, BillingError) as exc:
        session.rollback()
        raise ActionError(getattr(exc, "message", None) or str(exc)) from None
    _audit(actor, "level_add", None, level_id=level.id, name=level.name, amount=level.amount,
           interval=level.interval, price=level.stripe_price_id, organisation=organisation)
    session.commit()


def archive_level(actor: Account, level_id: int, archived: bool) -> None:
    session = get_session()
    try:
        level = catalogue.archive(session, level_id, archived)
    except catalogue.CatalogueError as exc:
        raise ActionError(str(exc)) from None
    _audit(actor, "level_archive" if archived else "level_unarchive", None, level_id=level.id, name=level.name)
    session.commit()


def end_member_sessions(actor: Account, member_id: int) -> int:
    account = _member(member_id)
    ended = end_sessions(account)
    _audit(actor, "sessions_end", account, sessions=ended)
    get_session().commit()
    return ended


def add_staff(actor: Account, email: str, name: str, role: Role) -> Account:
    if find_by_email(email) is not None:
        raise ActionError("That email already has an account.")
    account = create_staff(email, name, secrets.token_urlsafe(32), role)
    invite_staff(account, actor)  # they choose their own password
    _audit(actor, "staff_add", account, role=role.value)
    get_session().commit()
    return account


def set_role(actor: Account, account_id: int, role: Role) -> None:
    session = get_session()
    account = session.get(Account, account_id)
    if account is None or not account.is_staff:
        raise ActionError("No such staff account.")
    if account.id == actor.id:
        raise ActionError("You cannot change your own role.")
    old = account.role
    account.role = role
    end_sessions(account)
    _audit(actor, "staff_role", account, old=old.value, new=role.value)
    session.commit()


def staff_accounts() -> list[Account]:
    return list(get_session().scalars(
        select(Account).where(Account.role.in_([Role.STAFF, Role.ADMIN])).order_by(Account.email)))


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # stripe | newsletter | staff | system
    title: str
    detail: str = ""


def timeline(account: Account, limit: int = 200) -> list[TimelineEntry]:
    session = get_session()
    entries: list[TimelineEntry] = []
    for e in session.scalars(select(StripeEvent).where(StripeEvent.account_id == account.id)
                             .order_by(StripeEvent.stripe_created_at.desc()).limit(limit)):
        entries.append(TimelineEntry(e.stripe_created_at, "stripe", e.type,
                                     f"{e.stripe_id} · {e.outcome}" + (f" · {e.note}" if e.note else "")))
    for r in session.scalars(select(NewsletterOutbox).where(NewsletterOutbox.account_id == account.id)
                             .order_by(NewsletterOutbox.id.desc()).limit(limit)):
        detail = f"{r.status}, {r.attempts} attempt(s)" + (f" · {r.last_error}" if r.last_error else "")
        entries.append(TimelineEntry(r.delivered_at or r.created_at, "newsletter", f"DAWNS: {r.action}", detail))
    for a in session.scalars(select(AuditLog).where(AuditLog.target_account_id == account.id)
                             .order_by(AuditLog.created_at.desc()).limit(limit)):
        kind = "member" if a.actor_id == account.id else ("staff" if a.actor_id else "system")
        details = "; ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in (a.details or {}).items())
        entries.append(TimelineEntry(a.created_at, kind, a.action.replace("_", " "),
                                     f"by {a.actor_email or 'system'}" + (f" · {details}" if details else "")))
    entries.sort(key=lambda t: t.at, reverse=True)
    return entries[:limit]


def _plain(value: Any) -> str:
    """An audit detail as staff read it: dates as dates, nothing as "none"."""
    if value is None or value == "":
        return "none"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value).strftime("%-d %B %Y %H:%M UTC")
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def subscriptions_of(account: Account) -> list[StripeSubscription]:
    return list(get_session().scalars(select(StripeSubscription).where(StripeSubscription.account_id == account.id)
                                      .order_by(StripeSubscription.id.desc())))


def failed_deliveries(account: Account) -> list[NewsletterOutbox]:
    return list(get_session().scalars(select(NewsletterOutbox).where(
        NewsletterOutbox.account_id == account.id, NewsletterOutbox.status == "failed")))


def foreign_checkouts(limit: int = 200) -> list[CheckoutSession]:
    """Checkout Sessions this service did not create: stored, shown here, linking nothing."""
    return list(get_session().scalars(select(CheckoutSession).where(CheckoutSession.ours.is_(False))
                                      .order_by(CheckoutSession.created_at.desc()).limit(limit)))


def billing_email(account: Account) -> str | None:
    """Stripe's email for the member's customer: the billing email, not the login."""
    return get_session().scalar(select(StripeCustomer.email).where(
        StripeCustomer.account_id == account.id, StripeCustomer.deleted.is_(False))
        .order_by(StripeCustomer.id.desc()).limit(1))


def dashboard_url(kind: str, stripe_id: str) -> str | None:
    """A link to the Stripe Dashboard; none for the embedded default (its ids live in localstripe)."""
    if current_app.config["DEMO_CHECKOUT"]:
        return None
    base = current_app.config["STRIPE_DASHBOARD_URL"].rstrip("/")
    test = "/test" if current_app.config["STRIPE_SECRET_KEY"].startswith(("sk_test", "rk_test")) else ""
    return f"{base}{test}/{kind}/{stripe_id}"


# --- organisations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class OrganisationRow:
    org: Organisation
    seats: SeatCount
    state: str  # the billing state, "trial" while an invoiced one's trial entitles


def organisations() -> list[OrganisationRow]:
    """Every organisation with its seats used out of the total (one query for the counts)."""
    session = get_session()
    orgs = list(session.scalars(select(Organisation).order_by(Organisation.name, Organisation.id)))
    counts: dict[tuple[int, str], int] = {(org_id, status): n for org_id, status, n in session.execute(
        select(Seat.organisation_id, Seat.status, func.count()).where(Seat.status != REMOVED)
        .group_by(Seat.organisation_id, Seat.status))}
    return [OrganisationRow(o, SeatCount(used=counts.get((o.id, "active"), 0), total=o.seats,
                                         suspended=counts.get((o.id, "suspended"), 0)),
                            membership_status_label(o)) for o in orgs]


def organisation_levels() -> list[Level]:
    return catalogue.organisation_levels(get_session())


def _organisation(org_id: int) -> Organisation:
    org = get_session().get(Organisation, org_id)
    if org is None:
        raise ActionError("No such organisation.")
    return org


def _billing_action(action):
    """Run a billing change; a refusal rolls back everything it wrote and says why."""
    session = get_session()
    try:
        with history.source(session, history.STAFF):
            return action(session)
    except org_billing.OrganisationError as exc:
        session.rollback()
        raise ActionError(str(exc)) from None
    except BillingError as exc:
        session.rollback()
        raise ActionError(exc.message) from None


def create_organisation(actor: Account, new: org_billing.NewInvoiced) -> org_billing.Created:
    """An organisation paying by invoice: made at Stripe first, then committed with the mail
    that tells its contact (a new contact gets the link to choose a password)."""
    created = _billing_action(lambda session: org_billing.create_invoiced(session, get_gateway(), new))
    org = created.organisation
    _audit(actor, "organisation_create", created.contact, org, name=org.name, slug=org.slug, seats=org.seats,
           domains=list(org.domains or []), trial_days=new.trial_days,
           level=org.level.name if org.level else None, price=org.level.stripe_price_id if org.level else None,
           customer=created.customer_id, subscription=created.subscription_id, contact=created.contact.email,
           contact_created=created.contact_created)
    org_billing.tell_contact(org, created.contact, created.contact_created)
    get_session().commit()  # the organisation, its audit and the contact's mail together
    return created


def change_organisation_seats(actor: Account, org_id: int, seats: int) -> org_billing.SeatChange:
    _organisation(org_id)
    change = _billing_action(lambda session: org_billing.change_seats(session, get_gateway(), org_id, seats))
    org = get_session().get(Organisation, org_id)
    _audit(actor, "organisation_seats", None, org, before=change.before, after=change.after,
           asked=seats, suspended=change.suspended, subscription=org.stripe_subscription_id)
    get_session().commit()
    return change


def set_organisation_domains(actor: Account, org_id: int, text: str) -> Organisation:
    org, before, after = _billing_action(lambda session: org_billing.set_domains(session, org_id, text))
    _audit(actor, "organisation_domains", None, org, before=before, after=after)
    get_session().commit()
    return org


def comp_organisation(actor: Account, org_id: int, reason: str, until: datetime | None) -> Organisation:
    org = _billing_action(lambda session: org_billing.comp(session, org_id, reason, until))
    _audit(actor, "organisation_comp", None, org, reason=org.comp_reason, until=until.isoformat() if until else None)
    get_session().commit()
    return org


def end_organisation_comp(actor: Account, org_id: int) -> Organisation:
    org, reason = _billing_action(lambda session: org_billing.end_comp(session, org_id))
    _audit(actor, "organisation_comp_end", None, org, previous_reason=reason)
    get_session().commit()
    return org


def remove_organisation_seat(actor: Account, org_id: int, seat_id: int) -> Account:
    """Staff take a seat back, as its organisation's admin could: the reader keeps any other
    source of entitlement, and DAWNS follows NEWSLETTER_ON_LAPSE when none is left."""
    session = get_session()
    org = _organisation(org_id)
    seat = session.get(Seat, seat_id)
    if seat is None or seat.organisation_id != org.id or seat.status == REMOVED:
        raise ActionError("No such seat in this organisation.")
    reader = session.get(Account, seat.account_id)
    was = seat.status
    with history.source(session, history.STAFF):
        remove_seat(session, seat)
    _audit(actor, "organisation_seat_remove", reader, org, seat_id=seat.id, reader=reader.email, was=was)
    session.commit()
    return reader


@dataclass(frozen=True)
class SeatRow:
    seat: Seat
    email: str
    name: str


_SEAT_ORDER = {"active": 0, "suspended": 1, REMOVED: 2}


def organisation_seats(org: Organisation) -> list[SeatRow]:
    """Its seats, live ones first, each oldest first (the order seats are kept in)."""
    rows = get_session().execute(select(Seat, Account.email, Account.name).join(Account, Account.id == Seat.account_id)
                                 .where(Seat.organisation_id == org.id).order_by(Seat.taken_at, Seat.id)).all()
    found = [SeatRow(seat, email, name) for seat, email, name in rows]
    found.sort(key=lambda r: _SEAT_ORDER.get(r.seat.status, 3))
    return found


def organisation_seat_count(org: Organisation) -> SeatCount:
    return seat_count(get_session(), org)


def organisation_subscriptions(org: Organisation) -> list[StripeSubscription]:
    return list(get_session().scalars(select(StripeSubscription).where(StripeSubscription.organisation_id == org.id)
                                      .order_by(StripeSubscription.id.desc())))


def organisation_timeline(org: Organisation, limit: int = 200) -> list[TimelineEntry]:
    """What staff, its admin, its readers and Stripe did to the organisation, newest first."""
    session = get_session()
    entries: list[TimelineEntry] = []
    if org.stripe_customer_id:
        for e in session.scalars(select(StripeEvent).where(StripeEvent.customer_stripe_id == org.stripe_customer_id)
                                 .order_by(StripeEvent.stripe_created_at.desc()).limit(limit)):
            entries.append(TimelineEntry(e.stripe_created_at, "stripe", e.type,
                                         f"{e.stripe_id} · {e.outcome}" + (f" · {e.note}" if e.note else "")))
    for a in session.scalars(select(AuditLog).where(AuditLog.target_organisation_id == org.id)
                             .order_by(AuditLog.created_at.desc()).limit(limit)):
        if a.actor_id is None:
            kind = "system"
        elif a.actor_id == org.admin_account_id:
            kind = "admin"
        else:
            kind = "staff" if a.actor_id != a.target_account_id else "reader"
        details = "; ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in (a.details or {}).items())
        entries.append(TimelineEntry(a.created_at, kind, a.action.replace("_", " "),
                                     f"by {a.actor_email or 'system'}" + (f" · {details}" if details else "")))
    entries.sort(key=lambda t: t.at, reverse=True)
    return entries[:limit]
