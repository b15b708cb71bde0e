"""Account service functions: they own the session and the commit."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..billing.gateway import BillingError, CheckoutRequest
from ..billing.lifecycle import fulfil_checkout_session
from ..billing.runtime import get_gateway
from ..billing.services import current_customer_id
from ..db import get_session, utcnow
from ..domain.membership import MembershipStatus, Role, is_entitled
from ..mail import MailError, send_mail
from ..models import Account, AuditLog, Membership, session_fingerprint

log = logging.getLogger("service.members")

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


class EmailTaken(Exception):
    pass


def create_member(name: str, email: str, password: str, newsletter_opt_in: bool) -> Account:
    session = get_session()
    account = Account(
        email=normalize_email(email), name=name.strip(), password_hash=hash_password(password), role=Role.MEMBER
    )
    account.membership = Membership(status=MembershipStatus.PENDING, newsletter_opt_in=newsletter_opt_in)
    session.add(account)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise EmailTaken(email) from None
    return account


def notify_existing_account(account: Account) -> None:
    """Someone tried to join with an email that has an account: tell the owner, not the visitor."""
    try:
        send_mail(
            account.email,
            "Someone tried to join with your email",
            "Someone (maybe you) tried to become a member with this email address, which already "
            "has an account.\n\n"
            f"Log in: {current_app.config['PUBLIC_BASE_URL']}{url_for('members.login')}\n"
            f"Forgot your password? {current_app.config['PUBLIC_BASE_URL']}{url_for('members.reset_request')}\n",
        )
    except MailError:
        pass


def start_checkout(account: Account) -> str:
    """Create a Stripe Checkout Session for the member and return its URL.

    Raises BillingError (the account stays pending)."""
    base = current_app.config["PUBLIC_BASE_URL"]
    req = CheckoutRequest(
        member_id=account.id,
        email=account.email,
        customer_id=current_customer_id(account),
        # {CHECKOUT_SESSION_ID} is filled in by Stripe: https://docs.stripe.com/payments/checkout/custom-success-page
        success_url=f"{base}/join/success?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/join/cancelled",
    )
    checkout = get_gateway().create_checkout_session(req)
    url = checkout.get("url")
    if not url:
        raise BillingError("We could not start the payment. Please try again later.")
    return url


@dataclass
class SuccessView:
    state: str  # "confirmed" | "processing" | "unknown"
    status: MembershipStatus | None


def confirm_checkout(session_id: str) -> SuccessView:
    """The success page: fetch the session from Stripe and fulfil it through the shared path."""
    gateway = get_gateway()
    checkout = gateway.retrieve_checkout_session(session_id)
    if checkout.get("mode") not in (None, "subscription"):
        return SuccessView("unknown", None)
    session = get_session()
    account = fulfil_checkout_session(session, gateway, checkout)
    session.commit()
    if account is None:
        return SuccessView("unknown", None)
    status = account.membership.status if account.membership else MembershipStatus.PENDING
    if is_entitled(status):
        return SuccessView("confirmed", status)
    return SuccessView("unknown" if checkout.get("status") == "expired" else "processing", status)


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
    account.last_login_at = utcnow()
    get_session().commit()
    return account


# Password reset: a signed, timed token bound to the current password hash, so it stops
# working as soon as it has been used (the hash changes) or when it expires.

def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-reset")


def _hash_fingerprint(account: Account) -> str:
    # An HMAC of the current hash (never the hash itself): the token dies when the password changes.
    return session_fingerprint(account)[:16]


def make_reset_token(account: Account) -> str:
    return _reset_serializer().dumps({"id": account.id, "h": _hash_fingerprint(account)})


def request_password_reset(email: str) -> None:
    """Always behaves the same for the caller, whether or not the email has an account."""
    account = find_by_email(email)
    if account is None:
        log.info("password reset requested for an unknown email")
        return
    token = make_reset_token(account)
    link = f"{current_app.config['PUBLIC_BASE_URL']}{url_for('members.reset_password', token=token)}"
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    try:
        send_mail(
            account.email,
            "Reset your password",
            f"Hello {account.name},\n\nUse this link to choose a new password. It works once and "
            f"expires in {minutes} minutes:\n\n{link}\n\nIf you did not ask for this, ignore this email.\n",
        )
    except MailError:
        pass


def account_for_reset_token(token: str) -> Account | None:
    try:
        data = _reset_serializer().loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"])
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict):
        return None
    account = get_account(int(data.get("id", 0)))
    if account is None or data.get("h") != _hash_fingerprint(account):
        return None
    return account


def reset_password(token: str, new_password: str) -> Account | None:
    account = account_for_reset_token(token)
    if account is None:
        return None
    session = get_session()
    account.password_hash = hash_password(new_password)
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
    session.add(AuditLog(actor_id=None, actor_email="cli", action="staff_create",
                         details={"email": normalize_email(email), "role": role.value}))
    session.commit()
    return account
