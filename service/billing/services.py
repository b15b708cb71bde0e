"""Billing service functions for the member pages."""
from __future__ import annotations

from sqlalchemy import select

from ..db import get_session
from ..models import Account, StripeCustomer
from .runtime import get_gateway


def portal_url(account: Account, return_url: str) -> str | None:
    customer = get_session().scalars(
        select(StripeCustomer)
        .where(StripeCustomer.account_id == account.id, StripeCustomer.deleted.is_(False))
        .order_by(StripeCustomer.id.desc())
    ).first()
    if customer is None:
        return None
    return get_gateway().create_portal_session(customer.stripe_id, return_url)["url"]
