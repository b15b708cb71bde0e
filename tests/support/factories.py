"""Rows for tests, built through the service functions the app itself uses."""
from __future__ import annotations

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus, Role
from service.models import Account, Membership

PASSWORD = "a long test password"


def make_account(app, email="reader@example.org", name="Reader One", role=Role.MEMBER,
                 status=MembershipStatus.PENDING, password=PASSWORD, newsletter=True, created_at=None,
                 customer: str | None = None, verified: bool = False) -> int:
    from service.accounts.services import hash_password

    with app.app_context():
        s = get_session()
        acc = Account(email=email.lower(), name=name, password_hash=hash_password(password), role=role,
                      created_at=utcnow())
        if verified:  # as after a reset or confirmation link was used
            acc.email_verified_at = utcnow()
        if created_at is not None:
            acc.created_at = created_at
        if role == Role.MEMBER:
            acc.membership = Membership(status=status, newsletter_opt_in=newsletter, created_at=acc.created_at)
        s.add(acc)
        s.commit()
        account_id = acc.id
    if customer is not None:
        link_customer(app, account_id, customer)
    return account_id


def link_customer(app, account_id: int, customer_id: str) -> None:
    """What a completed Checkout Session of ours does: the customer belongs to the account."""
    from service.billing.lifecycle import link_customer as link

    with app.app_context():
        s = get_session()
        link(s, customer_id, s.get(Account, account_id))
        s.commit()


def our_checkout(app, account_id: int, **fields) -> dict:
    """A completed Checkout Session as Stripe sends it, recorded as one this service created for
    the account (what POST /join does before redirecting to Stripe)."""
    from service.billing.checkout import record_checkout_session

    from .stripe_objects import checkout_session

    fields.setdefault("email", "reader@example.org")
    cs = checkout_session(member_id=account_id, **fields)
    with app.app_context():
        s = get_session()
        record_checkout_session(s, {"id": cs["id"], "status": "open"}, s.get(Account, account_id))
        s.commit()
    return cs
