"""Organisations for tests, made through the service's own paths: an organisation level in the
catalogue, an organisation whose Stripe customer is linked to it (as a completed Checkout of
ours does), and its subscription applied from a signed webhook by the worker."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from service.db import get_session
from service.models import Account, Level, LevelPrice, Organisation, Seat

from .events import event, post_event
from .stripe_objects import subscription

ORG_PRICE = "price_org_yearly"
ORG_AMOUNT = 12_000


def org_level(app, price: str = ORG_PRICE, amount: int = ORG_AMOUNT) -> int:
    """A yearly per-seat organisation level (never on /join)."""
    from service.membership import catalogue

    with app.app_context():
        s = get_session()
        level = Level(name="Organisation seat", amount=amount, currency="usd", interval="year",
                      stripe_price_id=price, public=False, organisation=True, position=10)
        s.add(level)
        s.flush()
        s.add(LevelPrice(stripe_price_id=price, level_id=level.id, product_id="prod_test_membership",
                         amount=amount, currency="usd", interval="year"))
        s.commit()
        catalogue.forget()
        return level.id


def org_subscription(*, id: str, customer: str, quantity: int, status: str = "active",
                     period_start: int | None = None, period_end: int | None = None,
                     price: str = ORG_PRICE, collection_method: str = "charge_automatically") -> dict[str, Any]:
    start = period_start or int(time.time()) - 60
    sub = subscription(id=id, customer=customer, status=status, period_start=start,
                       period_end=period_end or start + 365 * 86400, price=price)
    item = sub["items"]["data"][0]
    item["quantity"] = quantity
    item["price"]["unit_amount"] = ORG_AMOUNT
    item["price"]["recurring"] = {"interval": "year", "interval_count": 1}
    sub["collection_method"] = collection_method
    return sub


def make_org(app, *, admin_id: int | None, name: str = "Relief Network", customer: str | None = None,
             domains: list[str] | None = None, billing: str = "checkout") -> int:
    """An organisation whose customer (if given) is linked to it."""
    from service.billing.lifecycle import link_customer_to_organisation
    from service.membership.organisations import unique_slug

    with app.app_context():
        s = get_session()
        level = s.scalars(select(Level).where(Level.organisation.is_(True))).first()
        org = Organisation(name=name, slug=unique_slug(s, name), admin_account_id=admin_id, seats=0,
                           domains=domains or [], level_id=level.id if level else None, billing=billing)
        s.add(org)
        s.flush()
        if customer:
            link_customer_to_organisation(s, customer, org)
        s.commit()
        return org.id


def apply_org_subscription(client, sub: dict[str, Any], kind: str = "updated", created: int | None = None):
    resp = post_event(client, event(f"customer.subscription.{kind}", sub,
                                    created=created if created is not None else int(time.time())))
    assert resp.status_code == 200
    return resp


def active_org(app, client, *, admin_id: int | None, seats: int, name: str = "Relief Network",
               domains: list[str] | None = None, n: int = 1) -> tuple[int, dict[str, Any]]:
    """An organisation paying for `seats` seats (its subscription applied by the worker)."""
    customer = f"cus_ORG{n}"
    org_id = make_org(app, admin_id=admin_id, name=name, customer=customer, domains=domains)
    sub = org_subscription(id=f"sub_ORG{n}", customer=customer, quantity=seats)
    apply_org_subscription(client, sub, "created", created=int(time.time()) - 30)
    return org_id, sub


def org(app, org_id: int) -> Organisation:
    with app.app_context():
        s = get_session()
        found = s.get(Organisation, org_id)
        s.expunge(found)
        return found


def seats(app, org_id: int) -> dict[str, str]:
    """email -> seat status, for the organisation's seats."""
    with app.app_context():
        rows = get_session().execute(select(Account.email, Seat.status).join(Seat, Seat.account_id == Account.id)
                                     .where(Seat.organisation_id == org_id)).all()
        return {email: status for email, status in rows}


def give_seat(app, org_id: int, account_id: int, how: str = "staff") -> None:
    from service.membership.organisations import take_seat

    with app.app_context():
        s = get_session()
        take_seat(s, s.get(Organisation, org_id), s.get(Account, account_id), how)
        s.commit()
