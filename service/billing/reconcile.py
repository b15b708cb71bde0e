"""`flask stripe reconcile`: repair drift left by missed webhooks.

Walks every subscription in Stripe (paginated, `status=all`); where one differs from what we
hold, reads it again under the row lock and applies it, exactly like the webhook's reads. Safe
at any time, again and again: a second run finds nothing to change.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from ..db import get_session, utcnow
from ..membership import catalogue
from ..models import CheckoutSession, StripeCustomer
from .checkout import fulfil_checkout_session, read_ours
from .lifecycle import Applied, link_by_email, listed_differs, sync_subscription
from .runtime import get_gateway
from .snapshots import id_of


@dataclass
class Report:
    checked: int = 0
    changes: list[str] = field(default_factory=list)


def _fmt(state: tuple | None) -> str:
    if state is None:
        return "unknown"
    status, period_end, cancel = state
    text = status
    if period_end is not None:
        text += f" through {period_end.isoformat()}"
    if cancel:
        text += " (cancels at period end)"
    return text


def _describe(obj_id: str, applied: Applied) -> str | None:
    parts = []
    if applied.how == "applied":
        parts.append(f"subscription {_fmt(applied.sub_before)} -> {_fmt(applied.sub_after)}")
    if applied.account is not None and applied.before != applied.after:
        parts.append(f"membership {applied.before.value if applied.before else 'none'} -> {applied.after.value}")
    if not parts:
        return None
    who = f"member {applied.account.id} <{applied.account.email}>" if applied.account else "no member linked"
    return f"{obj_id} ({who}): " + "; ".join(parts)


def _link_by_email(session, gateway, customer_id: str, obj: dict | None = None):
    """The last resort for a subscription no checkout of ours links (SPEC "Trust rules"). Never
    for a subscription to seats (an organisation level's price): it pays for an organisation,
    not for whoever's address its customer carries."""
    if obj is not None:
        seats = catalogue.organisation_price_ids(session)
        items = (obj.get("items") or {}).get("data") or []
        if any(id_of(item.get("price") or item.get("plan")) in seats for item in items):
            return None
    email = session.scalar(select(StripeCustomer.email).where(StripeCustomer.stripe_id == customer_id))
    if not email:
        email = gateway.retrieve_customer(customer_id).get("email")
    return link_by_email(session, customer_id, email)


def _settle_our_checkouts(session, gateway, echo: Callable[[str], None], report: "Report") -> None:
    """Checkouts of ours still open here (Stripe keeps one payable for 24 hours): one that
    completed while its webhook and its success page were both missed links its customer the
    right way (to its member, or to its organisation) before anything falls back to email."""
    since = utcnow() - timedelta(hours=48)
    for record in session.scalars(select(CheckoutSession).where(
            CheckoutSession.ours.is_(True), CheckoutSession.status == "open",
            CheckoutSession.created_at > since).order_by(CheckoutSession.id)).all():
        checkout = read_ours(gateway, record)
        if checkout is None:
            record.status = "expired"
            session.commit()
            continue
        if checkout.get("status") != "complete":
            if checkout.get("status") and checkout["status"] != record.status:
                record.status = checkout["status"]
                session.commit()
            continue
        fulfil_checkout_session(session, gateway, checkout)
        session.commit()
        line = f"checkout {record.stripe_id}: completed, fulfilled ({record.purpose})"
        report.changes.append(line)
        echo(line)


def reconcile(echo: Callable[[str], None] = print, page_size: int = 100) -> Report:
    session = get_session()
    gateway = get_gateway()
    catalogue.ensure(session, gateway)  # a new STRIPE_PRICE_ID joins the catalogue before anyone is judged
    session.commit()
    report = Report()
    _settle_our_checkouts(session, gateway, echo, report)
    starting_after: str | None = None
    while True:
        page = gateway.list_subscriptions(starting_after=starting_after, limit=page_size)
        data = page.obj.get("data") or []
        for obj in data:
            report.checked += 1
            if not listed_differs(session, obj):
                session.rollback()
                continue
            # Drift: read it again under the row lock and apply that (never the list page).
            customer = obj.get("customer")
            customer_id = customer.get("id") if isinstance(customer, dict) else customer
            applied = sync_subscription(session, gateway, obj["id"], customer_id)
            if applied.account is None and customer_id:
                linked = _link_by_email(session, gateway, customer_id, obj)
                if linked is not None:
                    line = f"{obj['id']}: customer {customer_id} linked by email to member {linked.id} (flagged)"
                    report.changes.append(line)
                    echo(line)
                    applied = sync_subscription(session, gateway, obj["id"], customer_id)
            session.commit()
            line = _describe(obj["id"], applied)
            if line:
                report.changes.append(line)
                echo(line)
        if not page.obj.get("has_more") or not data:
            break
        starting_after = data[-1]["id"]
    return report
