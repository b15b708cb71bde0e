"""Newsletter service functions: consent changes from the member and from Mailchimp."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import or_, select

from ..db import get_session, utcnow
from ..domain.newsletter import Desired
from ..models import Account, AuditLog, Membership
from ..membership.service import enqueue_newsletter

log = logging.getLogger("service.newsletter")


def set_opt_in(account: Account, wanted: bool) -> None:
    """The account page toggle. Turning it on after unsubscribing is an explicit new consent."""
    session = get_session()
    membership = account.membership
    if membership is None or membership.newsletter_opt_in == wanted:
        return
    membership.newsletter_opt_in = wanted
    enqueue_newsletter(session, account, membership, confirm=wanted)
    session.add(AuditLog(actor_id=account.id, actor_email=account.email,
                         action="newsletter_opt_in" if wanted else "newsletter_opt_out",
                         target_account_id=account.id, details={}))
    session.commit()


def _membership_by_email(email: str) -> tuple[Account, Membership] | None:
    email = email.strip().lower()
    session = get_session()
    row = session.execute(
        select(Account, Membership).join(Membership, Membership.account_id == Account.id)
        .where(or_(Membership.newsletter_email == email, Account.email == email))
        .order_by((Membership.newsletter_email == email).desc())
    ).first()
    return (row[0], row[1]) if row else None


def mailchimp_event(kind: str, data: dict[str, Any]) -> str:
    """Apply one Mailchimp webhook (https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/).

    Returns what happened, for the response and the logs.
    """
    session = get_session()
    email = data.get("email") or data.get("old_email") or ""
    found = _membership_by_email(email) if email else None
    if found is None:
        return "unknown member"
    account, membership = found
    now = utcnow()
    details: dict[str, Any] = {"source": "mailchimp"}
    match kind:
        case "unsubscribe":
            # The reader's own choice: remember it so that no renewal re-subscribes them.
            membership.newsletter_opt_in = False
            membership.newsletter_desired = Desired.UNSUBSCRIBED.value
            membership.newsletter_status = "unsubscribed"
            details["reason"] = data.get("reason")
        case "cleaned":
            # Mailchimp stopped sending to this address (bounces): do not push it back.
            membership.newsletter_opt_in = False
            membership.newsletter_desired = Desired.UNSUBSCRIBED.value
            membership.newsletter_status = "cleaned"
            details["reason"] = data.get("reason")
        case "upemail":
            new = (data.get("new_email") or "").strip().lower()
            if not new:
                return "ignored"
            membership.newsletter_email = new
            details.update(old_email=data.get("old_email"), new_email=new)
        case "profile":
            merges = data.get("merges") or {}
            details["merges"] = {k: merges.get(k) for k in ("FNAME", "LNAME", "EMAIL") if k in merges}
        case "subscribe":
            membership.newsletter_status = "subscribed"
        case _:
            return "ignored"
    membership.newsletter_synced_at = now
    session.add(AuditLog(actor_id=None, actor_email="mailchimp", action=f"newsletter_{kind}",
                         target_account_id=account.id, details=details))
    session.commit()
    log.info("mailchimp %s for member %s", kind, account.id)
    return "applied"
