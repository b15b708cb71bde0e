"""Stripe objects, read as plain data: what one subscription said at one moment.

Billing only turns Stripe objects into these snapshots; what they mean for a membership is the
domain's call (`domain.membership.derive`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


def ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value), tz=timezone.utc)


def id_of(value: Any) -> str | None:
    """An expandable field: a bare id, or the expanded object."""
    if isinstance(value, Mapping):
        return value.get("id")
    return value or None


@dataclass(frozen=True)
class SubscriptionSnapshot:
    id: str
    customer_id: str
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    current_period_start: datetime | None
    cancel_at: datetime | None
    canceled_at: datetime | None
    ended_at: datetime | None
    items: tuple[dict[str, Any], ...]
    created_at: datetime | None = None

    @property
    def price_id(self) -> str | None:
        return self.items[0]["price"] if self.items else None

    @property
    def item_id(self) -> str | None:
        return self.items[0]["id"] if self.items else None


def _item(item: Mapping[str, Any]) -> dict[str, Any]:
    # Since Prices (2018) an item has `price`; localstripe and old versions give a `plan`.
    price = item.get("price") or item.get("plan") or {}
    if not isinstance(price, Mapping):
        price = {"id": price}
    recurring = price.get("recurring") or {}
    amount = price.get("unit_amount", price.get("amount"))
    return {
        "id": item.get("id"),
        "price": price.get("id"),
        "product": id_of(price.get("product")),
        "amount": int(amount) if amount is not None else None,
        "currency": (price.get("currency") or "usd").lower(),
        "interval": recurring.get("interval") or price.get("interval"),
        "quantity": int(item.get("quantity") or 1),
    }


def snapshot_from_subscription(obj: Mapping[str, Any]) -> SubscriptionSnapshot:
    """Read a Stripe subscription object of any API version.

    Since API 2025-03-31 the billing period lives on each subscription item
    (`items.data[].current_period_end`); older versions (and localstripe) put it on the
    subscription itself. We take the latest item period and fall back to the old field.
    """
    items = ((obj.get("items") or {}).get("data")) or []
    periods = [(it.get("current_period_end"), it.get("current_period_start")) for it in items
               if it.get("current_period_end")]
    if periods:
        period_end, period_start = max(periods, key=lambda p: p[0])
    else:
        period_end, period_start = obj.get("current_period_end"), obj.get("current_period_start")
    return SubscriptionSnapshot(
        id=str(obj["id"]),
        customer_id=str(id_of(obj.get("customer"))),
        status=str(obj["status"]),
        current_period_end=ts(period_end),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        current_period_start=ts(period_start),
        cancel_at=ts(obj.get("cancel_at")),
        canceled_at=ts(obj.get("canceled_at")),
        ended_at=ts(obj.get("ended_at")),
        items=tuple(_item(i) for i in items),
        created_at=ts(obj.get("created")),
    )
