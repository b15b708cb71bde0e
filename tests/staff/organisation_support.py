"""Invoiced organisations at the Stripe stand-in: the organisation level, and Stripe's answers to
the customer, the `send_invoice` subscription, its reads and its quantity changes."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from service.db import get_session
from service.models import Organisation

from ..support.organisations import org_level as support_org_level
from ..support.staff import client_as
from ..support.stripe_objects import subscription
from ..support.stripe_standin import Recorded, Reply, StripeStandIn, SubscriptionTruth
from ..support.web import csrf_from

ORG_PRICE = "price_org_year"
ORG_AMOUNT = 20_000  # $200 per seat per year
CUSTOMER = "cus_ORG"
SUBSCRIPTION = "sub_ORG"
ITEM = "si_ORG"
YEAR = 365 * 86400


def org_level(app) -> int:
    """A yearly per-seat level with the organisation flag, as an admin adds it under Levels."""
    return support_org_level(app, price=ORG_PRICE, amount=ORG_AMOUNT)


def org_subscription(quantity: int, *, status: str = "active", metadata: dict | None = None,
                     period_end: int | None = None) -> dict[str, Any]:
    """A subscription of seats as https://docs.stripe.com/api/subscriptions/object shapes it."""
    now = int(time.time())
    obj = subscription(id=SUBSCRIPTION, customer=CUSTOMER, status=status, price=ORG_PRICE, period_start=now,
                       period_end=period_end or now + YEAR)
    item = obj["items"]["data"][0]
    item["id"] = ITEM
    item["quantity"] = quantity
    item["price"].update(unit_amount=ORG_AMOUNT, recurring={"interval": "year", "interval_count": 1})
    obj.update(collection_method="send_invoice", days_until_due=30, metadata=metadata or {})
    return obj


class InvoicedStripe:
    """Stripe for one invoiced organisation: it makes what it is asked for and serves it back."""

    def __init__(self, stripe_api: StripeStandIn) -> None:
        self.api = stripe_api
        self.truth = SubscriptionTruth(stripe_api)
        stripe_api.on("POST", "/v1/customers", self._customer)
        stripe_api.on("POST", "/v1/subscriptions", self._create)
        stripe_api.on("POST", f"/v1/subscriptions/{SUBSCRIPTION}", self._update)

    def _customer(self, rec: Recorded) -> Reply:
        return Reply(200, {"id": CUSTOMER, "object": "customer", "email": rec.form.get("email"),
                           "name": rec.form.get("name"), "metadata": {"organisation": rec.form.get("metadata[organisation]")},
                           "livemode": False})

    def _create(self, rec: Recorded) -> Reply:
        obj = org_subscription(int(rec.form["items[0][quantity]"]),
                               metadata={"organisation": rec.form.get("metadata[organisation]", "")})
        self.truth.set(obj)
        return Reply(200, obj)

    def _update(self, rec: Recorded) -> Reply:
        obj, _ = self.truth.current[SUBSCRIPTION]
        obj["items"]["data"][0]["quantity"] = int(rec.form["items[0][quantity]"])
        self.truth.set(obj)
        return Reply(200, obj)

    def current(self) -> dict[str, Any]:
        return self.truth.current[SUBSCRIPTION][0]

    def set_status(self, status: str) -> dict[str, Any]:
        obj = self.current()
        obj["status"] = status
        if status == "canceled":
            obj["ended_at"] = obj["canceled_at"] = int(time.time())
        self.truth.set(obj)
        return obj


def new_org_form(level_id: int, **fields) -> dict[str, str]:
    data = {"name": "UNICEF Nairobi", "contact_email": "billing@unicef.org", "contact_name": "Wanjiru Kamau",
            "seats": "5", "domains": "unicef.org", "trial_days": "14", "level": str(level_id), "confirm": "y"}
    data.update({k: str(v) for k, v in fields.items()})
    return {f"org-{k}": v for k, v in data.items()}


def create_org(app, level_id: int, staff=None, **fields):
    """Staff fill in /staff/organisations/new (as a staff member unless `staff` is a client)."""
    staff = staff or client_as(app, "staff")
    token = csrf_from(staff.get("/staff/organisations/new").get_data(as_text=True))
    resp = staff.post("/staff/organisations/new", data={**new_org_form(level_id, **fields), "csrf_token": token})
    resp.close()  # runs what the app does after the response (the contact's mail)
    return resp


def organisation(app, slug: str | None = None) -> Organisation | None:
    with app.app_context():
        s = get_session()
        stmt = select(Organisation).order_by(Organisation.id)
        if slug:
            stmt = stmt.where(Organisation.slug == slug)
        org = s.scalars(stmt).first()
        if org is not None:
            s.expunge(org)
        return org


def invoice(paid: bool = True) -> dict[str, Any]:
    """An invoice of the organisation's subscription (2025-03-31.basil shape)."""
    return {"id": "in_ORG_1", "object": "invoice", "customer": CUSTOMER, "status": "paid" if paid else "open",
            "collection_method": "send_invoice", "amount_paid": 5 * ORG_AMOUNT if paid else 0, "currency": "usd",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": SUBSCRIPTION}},
            "lines": {"object": "list", "data": []}}
