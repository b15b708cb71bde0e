"""The catalogue: seeded from STRIPE_PRICE_ID, managed with `flask levels` and /staff/admin/levels,
and a price change that never takes access from someone paying an older price."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, AuditLog, Level, LevelPrice, ServiceSetting

from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.staff import client_as
from ..support.stripe_objects import subscription
from ..support.stripe_standin import Reply, SubscriptionTruth, price
from ..support.web import csrf_from

NOW = int(time.time())


def _levels(app):
    with app.app_context():
        rows = get_session().scalars(select(Level).order_by(Level.id)).all()
        return [(lv.name, lv.amount, lv.interval, lv.stripe_price_id, lv.public, lv.archived, lv.default) for lv in rows]


def _status(app, member):
    with app.app_context():
        return get_session().get(Account, member).membership.status


def test_stripe_price_id_seeds_the_first_level_from_stripe(app, stripe_api):
    # The `app` fixture starts the service like a deployment does: the catalogue was empty.
    assert _levels(app) == [("Member", 500, "month", "price_test_monthly", True, False, True)]
    with app.app_context():
        row = get_session().scalars(select(LevelPrice)).one()
        assert (row.stripe_price_id, row.product_id) == ("price_test_monthly", "prod_test_membership")


def test_without_stripe_product_id_the_product_is_read_once_from_the_price_and_kept(make_app, stripe_api):
    app = make_app(STRIPE_PRODUCT_ID="")
    with app.app_context():
        kept = get_session().get(ServiceSetting, "membership_product_id")
        assert kept is not None and kept.value == "prod_test_membership"
    stripe_api.requests.clear()
    again = make_app(STRIPE_PRODUCT_ID="")  # a restart, another worker
    assert again is not None and stripe_api.calls("GET", "/v1/prices/price_test_monthly") == []


def test_levels_cli_lists_adds_with_and_without_a_price_and_archives(app, runner, stripe_api):
    stripe_api.on("GET", "/v1/prices/price_yearly", Reply(200, price("price_yearly", 5000, "year")))
    added = runner.invoke(args=["levels", "add", "Member, yearly", "--amount", "5000", "--interval", "year",
                                "--price", "price_yearly"])
    assert added.exit_code == 0, added.output
    assert "$50 a year, price price_yearly" in added.output
    stripe_api.on("POST", "/v1/prices", lambda rec: Reply(200, price("price_created", int(rec.form["unit_amount"]),
                                                                       rec.form["recurring[interval]"])))
    made = runner.invoke(args=["levels", "add", "Supporter", "--amount", "1500", "--interval", "month"])
    assert made.exit_code == 0, made.output
    (create,) = stripe_api.calls("POST", "/v1/prices")
    assert create.form == {"product": "prod_test_membership", "unit_amount": "1500", "currency": "usd",
                           "recurring[interval]": "month"}
    listing = runner.invoke(args=["levels", "list"])
    assert "Supporter" in listing.output and "$15" in listing.output and "public, default" in listing.output
    archived = runner.invoke(args=["levels", "archive", "2"])
    assert archived.exit_code == 0 and "keep their membership" in archived.output
    assert [row[5] for row in _levels(app)] == [False, True, False]


def test_levels_cli_refuses_a_price_that_does_not_match(app, runner, stripe_api):
    stripe_api.on("GET", "/v1/prices/price_other", Reply(200, price("price_other", 700, "month")))
    result = runner.invoke(args=["levels", "add", "X", "--amount", "500", "--interval", "month", "--price", "price_other"])
    assert result.exit_code != 0 and "is 700 usd per month, not 500 usd per month" in result.output
    assert len(_levels(app)) == 1


def test_admins_manage_levels_on_the_admin_page_and_it_is_audited(app, stripe_api):
    admin = client_as(app, "admin")
    page = admin.get("/staff/admin/levels")
    assert page.status_code == 200 and "$5 a month" in page.get_data(as_text=True)
    stripe_api.on("POST", "/v1/prices", lambda rec: Reply(200, price("price_ten", 1000, "month")))
    resp = admin.post("/staff/admin/levels", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                                  "lvl-name": "Friend", "lvl-amount": "10", "lvl-interval": "month",
                                                  "lvl-public": "y", "lvl-confirm": "y"})
    assert resp.status_code == 303
    assert _levels(app)[-1] == ("Friend", 1000, "month", "price_ten", True, False, False)
    with app.app_context():
        assert get_session().scalars(select(AuditLog.action).where(AuditLog.action == "level_add")).one()
    assert client_as(app, "staff").get("/staff/admin/levels").status_code == 403


def test_a_price_change_never_takes_access_from_members_paying_the_old_price(make_app, stripe_api, runner):
    """The usual way to raise a price: STRIPE_PRICE_ID names a new Price of the same product."""
    old = make_app()
    member = make_account(old, customer="cus_old")
    sub = subscription(id="sub_old", customer="cus_old", status="active", price="price_test_monthly")
    truth = SubscriptionTruth(stripe_api)
    truth.set(sub)
    post_event(old.test_client(), event("customer.subscription.created", sub, created=NOW - 60))
    assert _status(old, member) == MembershipStatus.ACTIVE

    stripe_api.on("GET", "/v1/prices/price_new", Reply(200, price("price_new", 700, "month")))
    new = make_app(STRIPE_PRICE_ID="price_new")  # redeployed with the new price
    # The renewal's invoice.paid recomputes the member: still active, at the old level's terms.
    invoice = {"id": "in_r", "object": "invoice", "customer": "cus_old",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_old"}}}
    post_event(new.test_client(), event("invoice.paid", invoice, created=NOW))
    assert _status(new, member) == MembershipStatus.ACTIVE
    with new.app_context():
        membership = get_session().get(Account, member).membership
        assert (membership.level_name, membership.level_amount) == ("Member", 500)
        default = get_session().scalars(select(Level).where(Level.default.is_(True))).one()
        assert (default.stripe_price_id, default.amount) == ("price_new", 700)
    # ... and so does reconcile, again and again.
    stripe_api.on("GET", "/v1/subscriptions", Reply(200, {"object": "list", "data": [sub], "has_more": False}))
    result = new.test_cli_runner().invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 0, result.output
    assert _status(new, member) == MembershipStatus.ACTIVE


def test_a_price_of_another_product_never_becomes_a_level(app, runner, stripe_api):
    stripe_api.on("GET", "/v1/prices/price_donation",
                  Reply(200, price("price_donation", 1000, "month", product="prod_donations")))
    result = runner.invoke(args=["levels", "add", "Supporter", "--amount", "1000", "--interval", "month",
                                 "--price", "price_donation"])
    assert result.exit_code != 0 and "not to the membership product" in result.output
    assert len(_levels(app)) == 1


@pytest.mark.parametrize("bad, words", [
    ({"recurring": {"interval": "month", "interval_count": 3, "usage_type": "licensed"}}, "every 1 month"),
    ({"recurring": {"interval": "week", "interval_count": 1, "usage_type": "licensed"}}, "monthly or yearly"),
    ({"recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered"}}, "licensed"),
    ({"active": False}, "archived in Stripe"),
])
def test_only_flat_monthly_or_yearly_active_prices_become_levels(app, runner, stripe_api, bad, words):
    stripe_api.on("GET", "/v1/prices/price_odd", Reply(200, {**price("price_odd", 500, "month"), **bad}))
    result = runner.invoke(args=["levels", "add", "Odd", "--amount", "500", "--interval", "month", "--price",
                                 "price_odd"])
    assert result.exit_code != 0 and words in result.output


def test_a_bad_stripe_price_id_is_logged_and_never_stops_joining_or_webhooks(make_app, stripe_api, caplog):
    stripe_api.on("GET", "/v1/prices/price_weekly", Reply(200, price("price_weekly", 100, "week")))
    app = make_app(STRIPE_PRICE_ID="price_weekly")
    assert app.test_client().get("/join").status_code == 200
    member = make_account(app, customer="cus_W")
    post_event(app.test_client(), event("customer.subscription.created",
                                        subscription(id="sub_W", customer="cus_W", status="active")))
    assert _status(app, member) == MembershipStatus.ACTIVE  # judged with the catalogue as it stands
    assert "catalogue not refreshed from STRIPE_PRICE_ID" in caplog.text


def test_stripe_price_id_of_another_product_is_refused_when_the_product_is_set(make_app, stripe_api, caplog):
    stripe_api.on("GET", "/v1/prices/price_mug", Reply(200, price("price_mug", 1500, "month", product="prod_shop")))
    app = make_app(STRIPE_PRICE_ID="price_mug")
    with app.app_context():
        prices = get_session().scalars(select(LevelPrice.stripe_price_id)).all()
    assert prices == ["price_test_monthly"] or "price_mug" not in prices
    assert "is a price of prod_shop, not of the membership product" in caplog.text


def test_a_new_stripe_price_id_never_lands_on_an_archived_level(make_app, stripe_api, runner):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["levels", "archive", "1"]).exit_code == 0
    stripe_api.on("GET", "/v1/prices/price_six", Reply(200, price("price_six", 600, "month")))
    make_app(STRIPE_PRICE_ID="price_six")
    levels = _levels(app)
    assert levels[0][5] is True and levels[0][3] == "price_test_monthly"  # the archived one is untouched
    assert levels[1] == ("Member", 600, "month", "price_six", True, False, True)
    assert "$6 a month" in app.test_client().get("/join").get_data(as_text=True)


@pytest.mark.parametrize("amount", ["5.999", "sNaN", "Infinity", "-3"])
def test_the_admin_page_refuses_amounts_that_are_not_whole_cents(app, stripe_api, amount):
    admin = client_as(app, "admin")
    page = admin.get("/staff/admin/levels").get_data(as_text=True)
    resp = admin.post("/staff/admin/levels", data={"csrf_token": csrf_from(page), "lvl-name": "Odd",
                                                  "lvl-amount": amount, "lvl-interval": "month", "lvl-confirm": "y"})
    assert resp.status_code == 303
    assert len(_levels(app)) == 1 and stripe_api.calls("POST", "/v1/prices") == []
