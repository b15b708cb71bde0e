"""Staff actions: each one is recorded in the audit log with who and when."""
from __future__ import annotations

import secrets

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select

from ..billing.gateway import BillingError
from ..billing.runtime import get_gateway
from ..membership import catalogue
from ..membership.service import recompute
from ..db import get_session, utcnow
from ..domain.membership import Role
from ..accounts.services import create_staff, end_sessions, find_by_email, invite_staff, request_password_reset
from ..models import (
    Account,
    AuditLog,
    CheckoutSession,
    Membership,
    NewsletterOutbox,
    StripeCustomer,
    StripeEvent,
    StripeSubscription,
)
from ..newsletter.outbox import retry_failed


class ActionError(Exception):
    """A staff action that cannot be done; the message is shown to the staff member."""


def _audit(actor: Account, action: str, target: Account | None, **details: Any) -> None:
    get_session().add(AuditLog(actor_id=actor.id, actor_email=actor.email, action=action,
                               target_account_id=target.id if target else None, details=details))


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


def retry_newsletter(actor: Account, member_id: int, row_id: int) -> None:
    account = _member(member_id)
    session = get_session()
    row = session.get(NewsletterOutbox, row_id)
    if row is None or row.account_id != account.id or not retry_failed(session, row_id):
        raise ActionError("Only a failed newsletter delivery of this member can be retried.")
    _audit(actor, "newsletter_retry", account, outbox_id=row_id)
    session.commit()


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
        raise ActionError("Only a failed Stripe event can be queued again.")
    target = (session.get(Account, row.account_id) if row.account_id
              else find_account_for(session, customer_id=row.customer_stripe_id))
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


def add_level(actor: Account, name: str, amount: int, interval: str, price_id: str | None, public: bool) -> None:
    session = get_session()
    try:
        level = catalogue.add(session, get_gateway(), name=name, amount=amount, interval=interval,
                              price_id=price_id, public=public)
    except (catalogue.CatalogueError, BillingError) as exc:
        session.rollback()
        raise ActionError(getattr(exc, "message", None) or str(exc)) from None
    _audit(actor, "level_add", None, level_id=level.id, name=level.name, amount=level.amount,
           interval=level.interval, price=level.stripe_price_id)
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


