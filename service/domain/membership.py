"""Membership state rules.

This module is the one place that says what a Stripe subscription status means for a member,
who is entitled, and how far a membership is paid. It imports neither Flask nor Stripe: the
billing code hands it plain mappings (Stripe objects are dicts on the wire).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any


class MembershipStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    LAPSED = "lapsed"
    CANCELED = "canceled"
    COMPED = "comped"


class Role(StrEnum):
    MEMBER = "member"
    STAFF = "staff"
    ADMIN = "admin"


ENTITLED_STATUSES = frozenset(
    {MembershipStatus.ACTIVE, MembershipStatus.PAST_DUE, MembershipStatus.COMPED}
)

# Stripe subscription statuses (https://docs.stripe.com/api/subscriptions/object#subscription_object-status)
# mapped to the spec's membership states.
STRIPE_STATUS_TO_MEMBERSHIP: dict[str, MembershipStatus] = {
    "incomplete": MembershipStatus.PENDING,
    "active": MembershipStatus.ACTIVE,
    "trialing": MembershipStatus.ACTIVE,
    "past_due": MembershipStatus.PAST_DUE,
    "paused": MembershipStatus.PAUSED,
    "unpaid": MembershipStatus.LAPSED,
    "canceled": MembershipStatus.CANCELED,
    "incomplete_expired": MembershipStatus.CANCELED,
}

STATUS_WORDS: dict[MembershipStatus, str] = {
    MembershipStatus.PENDING: "Not yet active: we have not received a payment for this membership.",
    MembershipStatus.ACTIVE: "Active: thank you for supporting independent journalism.",
    MembershipStatus.PAST_DUE: "Active, but the last payment failed. Stripe is retrying; please check your card.",
    MembershipStatus.PAUSED: "Paused: your membership is on hold.",
    MembershipStatus.LAPSED: "Lapsed: payments failed and the membership is no longer active.",
    MembershipStatus.CANCELED: "Canceled: you are no longer a member.",
    MembershipStatus.COMPED: "Complimentary membership granted by our staff.",
}


def is_entitled(status: MembershipStatus | str) -> bool:
    return MembershipStatus(status) in ENTITLED_STATUSES


def membership_status_for_stripe(stripe_status: str) -> MembershipStatus:
    try:
        return STRIPE_STATUS_TO_MEMBERSHIP[stripe_status]
    except KeyError:
        raise ValueError(f"unknown Stripe subscription status {stripe_status!r}") from None


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value), tz=timezone.utc)


@dataclass(frozen=True)
class SubscriptionSnapshot:
    """What one Stripe subscription object said at one moment."""

    id: str
    customer_id: str
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None
    canceled_at: datetime | None
    ended_at: datetime | None
    price_id: str | None
    created_at: datetime | None = None

    @property
    def membership_status(self) -> MembershipStatus:
        return membership_status_for_stripe(self.status)


def snapshot_from_subscription(obj: Mapping[str, Any]) -> SubscriptionSnapshot:
    """Read a Stripe subscription object of any API version.

    Since API 2025-03-31 the billing period lives on each subscription item
    (`items.data[].current_period_end`); older versions (and localstripe) put it on the
    subscription itself. We take the latest item period and fall back to the old field.
    """
    items = ((obj.get("items") or {}).get("data")) or []
    item_ends = [it.get("current_period_end") for it in items if it.get("current_period_end")]
    period_end = max(item_ends) if item_ends else obj.get("current_period_end")
    price_id = None
    if items:
        first = items[0]
        price = first.get("price") or first.get("plan") or {}
        price_id = price.get("id") if isinstance(price, Mapping) else price
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    return SubscriptionSnapshot(
        id=str(obj["id"]),
        customer_id=str(customer),
        status=str(obj["status"]),
        current_period_end=_ts(period_end),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        cancel_at=_ts(obj.get("cancel_at")),
        canceled_at=_ts(obj.get("canceled_at")),
        ended_at=_ts(obj.get("ended_at")),
        price_id=price_id,
        created_at=_ts(obj.get("created")),
    )


def resolve_status(
    subscription_status: str | None,
    *,
    comp_active: bool,
    customer_deleted: bool = False,
) -> MembershipStatus:
    """The member's state from their subscription and any staff comp.

    A paid subscription that entitles takes over from a comp; a comp keeps a member entitled
    when the subscription does not (or there is none).
    """
    if customer_deleted:
        return MembershipStatus.COMPED if comp_active else MembershipStatus.CANCELED
    if subscription_status is not None:
        from_stripe = membership_status_for_stripe(subscription_status)
        if from_stripe in ENTITLED_STATUSES:
            return from_stripe
        if comp_active:
            return MembershipStatus.COMPED
        return from_stripe
    return MembershipStatus.COMPED if comp_active else MembershipStatus.PENDING


def describe(status: MembershipStatus | str) -> str:
    return STATUS_WORDS[MembershipStatus(status)]
