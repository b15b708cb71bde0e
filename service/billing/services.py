"""Billing service functions for the member pages."""
from __future__ import annotations

from sqlalchemy import select

from ..db import get_session
from ..models import Account, StripeCustomer
from .runtime import get_gateway


def current_customer_id(account: Account) -> str | None:
    """The member's newest Stripe customer that still exists (reused by Checkout and the Portal)."""
    return get_session().scalar(
        select(StripeCustomer.stripe_id)
        .where(StripeCustomer.account_id == account.id, StripeCustomer.deleted.is_(False))
        .order_by(StripeCustomer.id.desc())
        .limit(1)
    )


def portal_url(account: Account, return_url: str) -> str | None:
    customer_id = current_customer_id(account)
    if customer_id is None:
        return None
    return get_gateway().create_portal_session(customer_id, return_url)["url"]
