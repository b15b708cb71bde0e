"""Changing the sign-in email: only by following a link sent to the new address.

Stripe's customer email (the Portal, the Dashboard) is the billing email: anyone who can type
there can type any address. So a new billing email only asks the account, at that address,
"use this address to sign in?"; the login email and the DAWNS address move when the link is
followed (single use, 24 hours).
"""
from __future__ import annotations

from datetime import timedelta


from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import get_session, utcnow
from ..i18n import gettext as _, in_language
from ..mail import send_mail
from ..membership.reader_mail import hello, letter
from ..urls import absolute_url
from ..models import Account, AuditLog
from ..membership.service import enqueue_newsletter
from . import links
from .services import end_sessions

PURPOSE = "email_change"
TTL = timedelta(hours=24)


class EmailInUse(Exception):
    """Another account signs in with that address."""


def request(session: Session, account: Account, new_email: str, *, source: str) -> None:
    """Queue the confirmation link in `session` (the caller commits; the mail goes with it)."""
    links.withdraw(session, PURPOSE, account)
    token = links.issue(session, PURPOSE, account, TTL, {"email": new_email, "source": source})
    link = absolute_url("members.confirm_email", token=token)
    session.add(AuditLog(actor_id=None, actor_email=source, action="email_change_requested",
                         target_account_id=account.id, details={"to": new_email}))
    with in_language(account.language) as lang:
        body = letter(hello(account),
                      _("Your billing email for your DAWNS membership is now %(email)s.", email=new_email),
                      _("Do you also want to sign in, and receive DAWNS Digest, at this address? Open this link and "
                        "confirm (it works once, for 24 hours):") + "\n\n" + link,
                      _("If you do nothing, nothing changes."))
        send_mail(new_email, _("Use this address to sign in?"), body, kind="email_change_confirm",
                  account_id=account.id, lang=lang, session=session)


def withdraw(session: Session, account: Account) -> None:
    """Stripe's email moved again (back to the login, or to an address in use): older links die."""
    links.withdraw(session, PURPOSE, account)


def pending(token: str, account: Account) -> str | None:
    """The address this link would move `account` to, if the link is live and is theirs."""
    row = links.peek(get_session(), PURPOSE, token)
    if row is None or row.account_id != account.id:
        return None
    return row.data["email"]


def confirm(token: str, account: Account) -> Account | None:
    """Follow the link: the sign-in email and the DAWNS address move together.

    It takes both the link (the new address is theirs) and the signed-in account (the account
    holder wants it): whoever owns an address typed into Stripe by mistake cannot take the
    account with it. None when the link is used, expired, unknown or someone else's;
    EmailInUse when another account signs in with the address."""
    session = get_session()
    if pending(token, account) is None:
        return None
    row = links.use(session, PURPOSE, token)
    if row is None or row.account_id != account.id:
        session.rollback()
        return None
    new_email = row.data["email"]
    if session.scalar(select(Account.id).where(Account.email == new_email, Account.id != account.id)) is not None:
        session.rollback()
        raise EmailInUse(new_email)
    old = account.email
    account.email = new_email
    session.add(AuditLog(actor_id=account.id, actor_email=new_email, action="email_changed",
                         target_account_id=account.id, details={"from": old, "to": new_email}))
    membership = account.membership
    if membership is not None and membership.newsletter_desired != "none":
        enqueue_newsletter(session, account, membership, force=True)  # move the list member too
    account.email_verified_at = utcnow()  # they opened a link sent to it
    end_sessions(account, keep_current=True)  # a new sign-in address: every other device signs in again
    with in_language(account.language) as lang:
        body = letter(hello(account), _("You now sign in to your DAWNS membership as %(email)s. If this was not you, "
                                        "reply to this message straight away.", email=new_email))
        send_mail(old, _("Your sign-in email was changed"), body, kind="email_changed", account_id=account.id,
                  lang=lang, session=session)
    try:
        session.commit()
    except IntegrityError:  # the address was taken a moment ago (the message is discarded with it)
        session.rollback()
        raise EmailInUse(new_email) from None
    return account
