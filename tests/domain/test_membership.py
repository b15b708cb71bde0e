"""The domain rules, on their own (no Flask, no Stripe, no database)."""
from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest

from service.domain.membership import (
    MembershipStatus,
    is_entitled,
    membership_status_for_stripe,
    resolve_status,
    snapshot_from_subscription,
)


def test_domain_module_imports_neither_flask_nor_stripe_nor_sqlalchemy():
    source = Path(__file__).resolve().parents[2] / "service" / "domain" / "membership.py"
    tree = ast.parse(source.read_text())
    imported = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"flask", "stripe", "sqlalchemy"}


@pytest.mark.parametrize("status, entitled", [
    ("pending", False), ("active", True), ("past_due", True), ("paused", False),
    ("lapsed", False), ("canceled", False), ("comped", True),
])
def test_entitlement_per_state(status, entitled):
    assert is_entitled(status) is entitled


def test_unknown_stripe_status_is_an_error_not_a_guess():
    with pytest.raises(ValueError):
        membership_status_for_stripe("exploded")


def test_paid_through_is_the_latest_item_period_end():
    obj = {"id": "sub_1", "customer": "cus_1", "status": "active",
           "items": {"data": [{"current_period_end": 1_800_000_000, "price": {"id": "p"}},
                              {"current_period_end": 1_800_000_500, "price": {"id": "p2"}}]},
           "current_period_end": 1_700_000_000}
    snap = snapshot_from_subscription(obj)
    assert snap.current_period_end == datetime.fromtimestamp(1_800_000_500, tz=timezone.utc)
    assert snap.price_id == "p"


def test_paid_through_falls_back_to_the_subscription_field_of_older_versions():
    obj = {"id": "sub_1", "customer": {"id": "cus_1"}, "status": "active", "current_period_end": 1_700_000_000,
           "items": {"data": [{"plan": {"id": "plan_x"}}]}, "metadata": {"member_id": "42"}}
    snap = snapshot_from_subscription(obj)
    assert snap.current_period_end == datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)
    assert (snap.customer_id, snap.price_id) == ("cus_1", "plan_x")


def test_a_paid_subscription_takes_over_from_a_comp_and_a_comp_covers_a_dead_one():
    assert resolve_status("active", comp_active=True) == MembershipStatus.ACTIVE
    assert resolve_status("canceled", comp_active=True) == MembershipStatus.COMPED
    assert resolve_status(None, comp_active=True) == MembershipStatus.COMPED
    assert resolve_status(None, comp_active=False) == MembershipStatus.PENDING
    assert resolve_status("active", comp_active=False, customer_deleted=True) == MembershipStatus.CANCELED
