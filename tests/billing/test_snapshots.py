"""Billing reads Stripe subscription objects of any API version as plain snapshots."""
from __future__ import annotations

from datetime import datetime, timezone

from service.billing.snapshots import snapshot_from_subscription


def test_paid_through_is_the_latest_item_period_end_and_items_keep_price_product_and_amount():
    obj = {"id": "sub_1", "customer": "cus_1", "status": "active",
           "items": {"data": [
               {"id": "si_1", "current_period_end": 1_800_000_000, "quantity": 1,
                "price": {"id": "p", "product": "prod_m", "unit_amount": 500, "currency": "usd",
                          "recurring": {"interval": "month"}}},
               {"id": "si_2", "current_period_end": 1_800_000_500, "price": {"id": "p2", "product": {"id": "prod_x"}}}]},
           "current_period_end": 1_700_000_000}
    snap = snapshot_from_subscription(obj)
    assert snap.current_period_end == datetime.fromtimestamp(1_800_000_500, tz=timezone.utc)
    assert (snap.price_id, snap.item_id) == ("p", "si_1")
    assert snap.items[0] == {"id": "si_1", "price": "p", "product": "prod_m", "amount": 500, "currency": "usd",
                             "interval": "month", "quantity": 1}
    assert snap.items[1]["product"] == "prod_x"


def test_paid_through_falls_back_to_the_subscription_field_of_older_versions():
    obj = {"id": "sub_1", "customer": {"id": "cus_1"}, "status": "active", "current_period_end": 1_700_000_000,
           "items": {"data": [{"id": "si_1", "plan": {"id": "plan_x", "amount": 5000, "interval": "year",
                                                       "product": "prod_m", "currency": "usd"}}]}}
    snap = snapshot_from_subscription(obj)
    assert snap.current_period_end == datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)
    assert (snap.customer_id, snap.price_id) == ("cus_1", "plan_x")
    assert (snap.items[0]["amount"], snap.items[0]["interval"], snap.items[0]["product"]) == (5000, "year", "prod_m")
