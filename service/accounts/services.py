"""Account service functions (readers and staff): they own the session and the commit."""
from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from flask import current_app, url_for
from flask import session as flask_session
from flask_login import login_user, logout_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..db import get_session, utcnow
from ..domain.membership import MembershipStatus, Role
from ..i18n import current_language, gettext as _, in_language, known
from ..mail import send_mail
from ..membership.reader_mail import hello, letter
from ..membership.service import enqueue_newsletter
from ..urls import absolute_url
from ..models import Account, AuditLog, LoginSession, Membership, session_fingerprint

log = logging.getLogger("service.accounts")

MIN_PASSWORD = 10

# A real hash to compare against when the email is unknown, so that a login for an unknown
# email costs the same time as one for a known email (no enumeration by timing).
_DUMMY_HASH: str | None = None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config.get("PASSWORD_HASH_METHOD") or "scrypt")


def get_account(account_id: int) -> Account | None:
    return get_session().get(Account, account_id)


def find_by_email(email: str) -> Account | None:
    return get_session().scalars(select(Account).where(Account.email == normalize_email(email))).first()


def save_language(account_id: int, lang: str) -> None:
    """The reader's choice of language, kept for their pages, mail, Checkout and DAWNS."""
    session = get_session()
    account = session.get(Account, account_id)
    if account is None or not known(lang) or account.language == known(lang):
        return
    account.language = known(lang)
    membership = account.membership
    if membership is not None and membership.newsletter_desired not in (None, "none"):
        enqueue_newsletter(session, account, membership, force=True)  # DAWNS learns the language too
    session.commit()


class EmailTaken(Exception):
    pass


def create_member(name: str, email: str, password: str, newsletter_opt_in: bool) -> Account:
    session = get_session()
    now = utcnow()
    account = Account(email=normalize_email(email), name=name.strip(), password_hash=hash_password(password),
                      role=Role.MEMBER, created_at=now, language=current_language())
    # One join date for both: the staff list orders by the membership's.
    account.membership = Membership(status=MembershipStatus.PENDING, newsletter_opt_in=newsletter_opt_in,
                                    created_at=now)
    session.add(account)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise EmailTaken(email) from None
    return account


def notify_existing_account(account: Account) -> None:
    """Someone tried to join with an email that has an account: tell the owner, not the visitor."""
    with in_language(account.language) as lang:
        body = letter(hello(account),
                      _("Someone (maybe you) tried to become a member with this email address, which already has an "
                        "account."),
                      _("Log in: %(url)s", url=absolute_url("members.login")) + "\n"
                      + _("Forgot your password? %(url)s", url=absolute_url("members.reset_request")))
        send_mail(account.email, _("Someone tried to join with your email"), body, kind="existing_account",
                  account_id=account.id, lang=lang)
    get_session().commit()


def authenticate(email: str, password: str) -> Account | None:
    global _DUMMY_HASH
    account = find_by_email(email)
    if account is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password("not-a-real-password")
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(account.password_hash, password):
        return None
    return account


# Server-side sessions: the signed cookie carries a random id whose hash is a LoginSession row;
# a request is signed in only while that row is live, so logging out really ends a session.

SESSION_KEY = "_sid"


def _session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(account: Account) -> None:
    session = get_session()
    previous = flask_session.get(SESSION_KEY)
    if isinstance(previous, str):  # whoever was signed in on this browser before is signed out
        session.execute(update(LoginSession).where(LoginSession.token_hash == _session_hash(previous),
                                                   LoginSession.ended_at.is_(None)).values(ended_at=utcnow()))
    token = secrets.token_urlsafe(32)
    session.add(LoginSession(token_hash=_session_hash(token), account_id=account.id))
    account.last_login_at = utcnow()
    session.commit()
    login_user(account)
    flask_session[SESSION_KEY] = token


def session_is_live(account_id: int) -> bool:
    token = flask_session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        return False
    return get_session().scalar(select(LoginSession.id).where(
        LoginSession.token_hash == _session_hash(token), LoginSession.account_id == account_id,
        LoginSession.ended_at.is_(None))) is not None


def sign_out() -> None:
    token = flask_session.pop(SESSION_KEY, None)
    if isinstance(token, str):
        session = get_session()
        session.execute(update(LoginSession).where(LoginSession.token_hash == _session_hash(token),
                                                   LoginSession.ended_at.is_(None)).values(ended_at=utcnow()))
        session.commit()
    logout_user()


def end_sessions(account: Account, *, keep_current: bool = False) -> int:
    """End every session of the account, or every other one (the caller commits). Returns how
    many were live. Live sign-in links end too: whatever ends sessions (sign out everywhere, a
    password reset, an email change, staff) must not leave a way back in by mail."""
    from . import links

    links.withdraw(get_session(), "signin", account)
    stmt = update(LoginSession).where(LoginSession.account_id == account.id, LoginSession.ended_at.is_(None))
    current = flask_session.get(SESSION_KEY) if keep_current else None
    if isinstance(current, str):
        stmt = stmt.where(LoginSession.token_hash != _session_hash(current))
    return get_session().execute(stmt.values(ended_at=utcnow())).rowcount or 0


def sign_out_everywhere(account: Account) -> int:
    ended = end_sessions(account)
    get_session().add(AuditLog(actor_id=account.id, actor_email=account.email, action="sign_out_everywhere",
                               target_account_id=account.id, details={"sessions": ended}))
    get_session().commit()
    flask_session.pop(SESSION_KEY, None)
    logout_user()
    return ended


# Password reset: a signed, timed token bound to the current password hash, so it stops
# working as soon as it has been used (the hash changes) or when it expires.

def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-reset")


def _hash_fingerprint(account: Account) -> str:
    # An HMAC of the current hash (never the hash itself): the token dies when the password changes.
    return session_fingerprint(account)[:16]


def make_reset_token(account: Account) -> str:
    return _reset_serializer().dumps({"id": account.id, "h": _hash_fingerprint(account), "e": _email_mark(account)})


def _email_mark(account: Account) -> str:
    """An HMAC of the address the link is mailed to: after an email change it opens nothing."""
    import hmac as _hmac

    key = current_app.config["SECRET_KEY"].encode()
    return _hmac.new(key, f"reset-email|{account.email}".encode(), hashlib.sha256).hexdigest()[:16]


def request_password_reset(email: str) -> None:
    """Always behaves the same for the caller, whether or not the email has an account."""
    account = find_by_email(email)
    if account is None:
        log.info("password reset requested for an unknown email")
        return
    token = make_reset_token(account)
    link = absolute_url("members.reset_password", token=token)
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    with in_language(account.language) as lang:
        body = letter(hello(account),
                      _("Use this link to choose a new password. It works once and expires in %(minutes)d minutes:",
                        minutes=minutes) + "\n\n" + link,
                      _("If you did not ask for this, ignore this email."))
        send_mail(account.email, _("Reset your password"), body, kind="password_reset", account_id=account.id,
                  lang=lang)
    get_session().commit()  # the message is durable once the page answers


def invite_staff(account: Account, invited_by: Account) -> None:
    """A new staff member's first mail: who invited them, and a link to choose a password.
    Queued in the current transaction: the caller commits."""
    token = make_reset_token(account)
    link = absolute_url("members.reset_password", token=token)
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    send_mail(
        account.email,
        "Your staff account for DAWNS Membership",
        f"Hello {account.name},\n\n{invited_by.name} ({invited_by.email}) has given you a {account.role.value} "
        f"account for the DAWNS membership console.\n\nChoose your password here (the link works once, for "
        f"{minutes} minutes):\n\n{link}\n\nIf it has expired, ask for a new one at {absolute_url('members.reset_request')}"
        f" with this address. Then sign in at {absolute_url('members.login')}.\n",
        kind="staff_invitation", account_id=account.id,
    )


def account_for_reset_token(token: str) -> Account | None:
    try:
        data = _reset_serializer().loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"])
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict):
        return None
    account = get_account(int(data.get("id", 0)))
    if account is None or data.get("h") != _hash_fingerprint(account) or data.get("e") != _email_mark(account):
        return None
    return account


def reset_password(token: str, new_password: str) -> Account | None:
    account = account_for_reset_token(token)
    if account is None:
        return None
    session = get_session()
    account.password_hash = hash_password(new_password)
    account.email_verified_at = account.email_verified_at or utcnow()  # the link reached this address
    end_sessions(account)  # the fingerprint ends them too; this also shows it on the server
    session.add(AuditLog(actor_id=account.id, actor_email=account.email, action="password_reset",
                         target_account_id=account.id, details={}))
    session.commit()
    return account


class NotStaff(Exception):
    """The email belongs to a reader account: promoting it needs an explicit decision."""


def create_staff(email: str, name: str, password: str, role: Role, *, promote: bool = False) -> Account:
    session = get_session()
    account = find_by_email(email)
    if account is not None and not account.is_staff and not promote:
        # Anyone can register any address: never hand staff rights to such an account silently.
        raise NotStaff(email)
    if account is None:
        account = Account(email=normalize_email(email), name=name, password_hash=hash_password(password), role=role)
        session.add(account)
    else:
        account.password_hash = hash_password(password)
        account.role = role
        end_sessions(account)
    session.add(AuditLog(actor_id=None, actor_email="cli", action="staff_create",
                         details={"email": normalize_email(email), "role": role.value}))
    session.commit()
    return account
