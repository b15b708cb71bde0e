"""Rows for tests, built through the service functions the app itself uses."""
from __future__ import annotations

from service.db import get_session
from service.domain.membership import MembershipStatus, Role
from service.models import Account, Membership

PASSWORD = "a long test password"


def make_account(app, email="reader@example.org", name="Reader One", role=Role.MEMBER,
                 status=MembershipStatus.PENDING, password=PASSWORD, newsletter=True, created_at=None) -> int:
    from service.members.services import hash_password

    with app.app_context():
        s = get_session()
        acc = Account(email=email.lower(), name=name, password_hash=hash_password(password), role=role)
        if created_at is not None:
            acc.created_at = created_at
        if role == Role.MEMBER:
            acc.membership = Membership(status=status, newsletter_opt_in=newsletter)
        s.add(acc)
        s.commit()
        return acc.id
