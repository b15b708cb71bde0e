"""Stripe objects shaped like the API reference at the pinned version (2025-03-31.basil).

Subscription: https://docs.stripe.com/api/subscriptions/object (since basil the billing period
lives on `items.data[]`). Checkout Session: https://docs.stripe.com/api/checkout/sessions/object
"""
from __future__ import annotations

import itertools
import time
from typing import Any

_seq = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_seq):08d}T"


def subscription(
    *,
    id: str | None = None,
    customer: str = "cus_TEST1",
    status: str = "active",
    member_id: int | None = None,
    period_start: int | None = None,
    period_end: int | None = None,
    cancel_at_period_end: bool = False,
    price: str = "price_test_monthly",
    product: str = "prod_test_membership",
    legacy: bool = False,
) -> dict[str, Any]:
    now = int(time.time())
    start = period_start or now
    end = period_end or start + 30 * 86400
    sub_id = id or _id("sub")
    item: dict[str, Any] = {
        "id": _id("si"),
        "object": "subscription_item",
        "price": {"id": price, "object": "price", "unit_amount": 500, "currency": "usd", "product": product,
                  "recurring": {"interval": "month", "interval_count": 1}},
        "quantity": 1,
        "subscription": sub_id,
    }
    obj: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": end if cancel_at_period_end else None,
        "canceled_at": now if status == "canceled" or cancel_at_period_end else None,
        "ended_at": now if status == "canceled" else None,
        "created": start,
        "livemode": False,
        "metadata": {"member_id": str(member_id)} if member_id is not None else {},
        "items": {"object": "list", "data": [item], "has_more": False},
    }
    if legacy:
        # Before 2025-03-31 the period was on the subscription itself.
        obj["current_period_start"] = start
        obj["current_period_end"] = end
        item["plan"] = {"id": price, "object": "plan", "amount": 500, "product": product}
        del item["price"]
    else:
        item["current_period_start"] = start
        item["current_period_end"] = end
    return obj


def checkout_session(
    *,
    id: str | None = None,
    member_id: int,
    email: str,
    customer: str | None = "cus_TEST1",
    subscription: Any = None,
    status: str = "complete",
    payment_status: str = "paid",
    url: str | None = None,
) -> dict[str, Any]:
    sid = id or _id("cs_test")
    return {
        "id": sid,
        "object": "checkout.session",
        "mode": "subscription",
        "client_reference_id": str(member_id),
        "customer": customer,
        "customer_email": email,
        "customer_details": {"email": email},
        "metadata": {"member_id": str(member_id)},
        "status": status,
        "payment_status": payment_status,
        "subscription": subscription,
        "url": url,
        "livemode": False,
        "created": int(time.time()),
    }
