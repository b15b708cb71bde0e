"""Sign in with an emailed link, beside the password.

A reader asks for a link with their address; the answer is the same whether or not the address
has an account. The link (purpose "signin", single use, 15 minutes; a newer link withdraws the
older ones) opens a page with a "Sign in" button: opening it (GET, as mail scanners do) only
looks; the POST uses it and signs in with a real server-side session.

Reader accounts only. A staff account gets the same neutral answer and no mail: the staff
console stays behind its password, so a mailbox alone never opens it.

Following the link proves the address. An account that had never proved it may be a
squatter's (anyone can join with anyone's address): as when such an account is taken over by
an invitation, its password is replaced by one nobody knows and its other sessions end, so
whoever joined with the address cannot come back with the password they chose.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from ..db import get_session, utcnow
from ..domain.membership import Role
from ..i18n import gettext as _, in_language
from ..mail import send_mail
from ..membership.reader_mail import hello, letter
from ..models import Account, AccountToken, AuditLog
from ..urls import absolute_url
from . import links
from .services import end_sessions, hash_password, normalize_email, sign_in

log = logging.getLogger("service.accounts")

PURPOSE = "signin"
TTL = timedelta(minutes=15)


def request_link(email: str, next_url: str = "") -> None:
    """Mail a sign-in link to the reader account with this address, if there is one.

    Behaves the same for the caller either way, and does about the same database work: one
    lookup, one UPDATE (withdrawing older links; it matches nothing for an unknown address) and
    a commit. Only a known reader adds two INSERTs (the link and its outbox row) to that
    transaction; the message is delivered by the worker, not in the request."""
    session = get_session()
    address = normalize_email(email)
    account = session.scalars(select(Account).where(Account.email == address)).first()
    reader = account if account is not None and account.role == Role.MEMBER else None
    # The same statement on both paths; for an unknown (or staff) address it matches no row.
    session.execute(update(AccountToken).where(AccountToken.account_id == (reader.id if reader else -1),
                                               AccountToken.purpose == PURPOSE, AccountToken.used_at.is_(None))
                    .values(used_at=utcnow()))
    if reader is None:
        log.info("sign-in link requested for an address with no reader account: nothing sent")
        session.commit()
        return
    # Bound to the address it is mailed to: after an email change it opens nothing.
    data = {"email": reader.email, **({"next": next_url} if next_url else {})}
    token = links.issue(session, PURPOSE, reader, TTL, data)
    link = absolute_url("members.signin_link", token=token)
    minutes = int(TTL.total_seconds() // 60)
    with in_language(reader.language) as lang:
        body = letter(hello(reader),
                      _("Use this link to sign in to your DAWNS membership. It works once and expires in %(minutes)d "
                        "minutes:", minutes=minutes) + "\n\n" + link,
                      _('Open it and press "Sign in".'),
                      _("If you did not ask for this, ignore this email: nobody can sign in without it."))
        send_mail(reader.email, _("Your sign-in link"), body, kind="signin_link", account_id=reader.id, lang=lang,
                  session=session)
    session.commit()  # the link and its message commit together


@dataclass
class Pending:
    account: Account
    next_url: str
    proved_address: bool = False  # this link was the account's first proof of its address


def pending(token: str) -> Pending | None:
    """Who this live link would sign in, without using it (a GET burns nothing)."""
    row = links.peek(get_session(), PURPOSE, token)
    if row is None or row.account_id is None:
        return None
    account = get_session().get(Account, row.account_id)
    if account is None or account.role != Role.MEMBER or (row.data or {}).get("email") != account.email:
        return None
    return Pending(account, str((row.data or {}).get("next") or ""))


def use_link(token: str) -> Pending | None:
    """Use the link and sign in. None when it is unknown, used, expired, withdrawn or no
    longer a reader's (nothing changes then). The token's use, the proved address and the new
    session commit together."""
    session = get_session()
    row = links.use(session, PURPOSE, token)
    account = session.get(Account, row.account_id) if row is not None and row.account_id is not None else None
    if row is None or account is None or account.role != Role.MEMBER or (row.data or {}).get("email") != account.email:
        session.rollback()
        return None
    proved = account.email_verified_at is None
    if proved:
        # The first proof of the address: a password chosen by whoever joined with it stops working.
        account.password_hash = hash_password(secrets.token_urlsafe(32))
        account.email_verified_at = utcnow()
        ended = end_sessions(account)
        session.add(AuditLog(actor_id=account.id, actor_email=account.email, action="signin_link_proved_address",
                             target_account_id=account.id, details={"sessions_ended": ended}))
    sign_in(account)  # commits
    return Pending(account, str((row.data or {}).get("next") or ""), proved)
