"""Joining at a level or at a "give more" amount, changing level, and never paying twice."""
from __future__ import annotations

import itertools
import time

import pytest
from sqlalchemy import select

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, Level, LevelPrice

from ..support.events import event, post_event
from ..support.factories import PASSWORD, make_account, our_checkout
from ..support.staff import client_as
from ..support.stripe_objects import checkout_session, subscription
from ..support.stripe_standin import Reply, price
from ..support.web import login, post_form

CHECKOUT = "/v1/checkout/sessions"
NOW = int(time.time())
READER = {"name": "Amina Yusuf", "email": "amina@example.org", "password": "correct horse battery", "newsletter": "y"}


@pytest.fixture
def catalogue(app, stripe_api):
    """$5 a month (seeded), $10 a month and $50 a year."""
    with app.app_context():
        s = get_session()
        for name, amount, interval, pid in (("Supporter", 1000, "month", "price_ten"),
                                            ("Member, yearly", 5000, "year", "price_year")):
            level = Level(name=name, amount=amount, currency="usd", interval=interval, stripe_price_id=pid,
                          public=True, position=amount)
            s.add(level)
            s.flush()
            s.add(LevelPrice(stripe_price_id=pid, level_id=level.id, product_id="prod_test_membership",
                             amount=amount, currency="usd", interval=interval))
        s.commit()
        return {lv.stripe_price_id: lv.id for lv in s.scalars(select(Level))}


@pytest.fixture
def checkout_ok(stripe_api):
    made = itertools.count(1)

    def reply(rec):
        n = next(made)
        return Reply(200, checkout_session(id=f"cs_test_{n}", member_id=int(rec.form["client_reference_id"]),
                                           email=rec.form.get("customer_email", ""), customer=None, status="open",
                                           payment_status="unpaid", url=f"https://checkout.stripe.com/c/pay/cs_test_{n}"))
    stripe_api.on("POST", CHECKOUT, reply)
    return stripe_api


def _join(client, **choice):
    return post_form(client, "/join", {**READER, **choice})


def test_the_join_page_offers_the_public_levels_and_give_more(client, catalogue):
    html = client.get("/join").get_data(as_text=True)
    for words in ("Member: $5 a month", "Supporter: $10 a month", "Member, yearly: $50 a year", "Give more",
                  "Amount in whole dollars"):
        assert words in html
    assert "<script" not in html  # the choice works without JavaScript


@pytest.mark.parametrize("price_id", ["price_test_monthly", "price_ten", "price_year"])
def test_joining_at_a_level_sends_its_price_to_checkout(app, client, catalogue, checkout_ok, price_id):
    resp = _join(client, level=str(catalogue[price_id]))
    assert resp.status_code == 303 and resp.headers["Location"].startswith("https://checkout.stripe.com/")
    (req,) = checkout_ok.calls("POST", CHECKOUT)
    assert req.form["line_items[0][price]"] == price_id and req.form["line_items[0][quantity]"] == "1"
    assert "line_items[0][price_data][unit_amount]" not in req.form


@pytest.mark.parametrize("dollars, interval", [(25, "month"), (120, "year"), (5, "month")])
def test_giving_more_sends_price_data_of_the_membership_product(client, catalogue, checkout_ok, dollars, interval):
    resp = _join(client, level="custom", custom_amount=str(dollars), custom_interval=interval)
    assert resp.status_code == 303
    (req,) = checkout_ok.calls("POST", CHECKOUT)
    assert {k: v for k, v in req.form.items() if k.startswith("line_items")} == {
        "line_items[0][price_data][product]": "prod_test_membership",
        "line_items[0][price_data][unit_amount]": str(dollars * 100),
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][recurring][interval]": interval,
        "line_items[0][quantity]": "1",
    }
    assert req.form["mode"] == "subscription"


@pytest.mark.parametrize("choice, message", [
    ({"level": "custom", "custom_amount": "4", "custom_interval": "month"}, "Give at least $5 a month, in whole dollars."),
    ({"level": "custom", "custom_amount": "49", "custom_interval": "year"}, "Give at least $50 a year, in whole dollars."),
    ({"level": "custom", "custom_amount": "7.50", "custom_interval": "month"}, "Not a valid integer value."),
    ({"level": "custom", "custom_amount": "", "custom_interval": "month"}, "Enter an amount in whole dollars"),
    ({"level": "999"}, "Choose one of the levels shown."),
    ({"level": "1 OR 1=1"}, "Choose one of the levels shown."),
])
def test_a_bad_choice_gets_a_field_error_and_no_checkout(app, client, catalogue, checkout_ok, choice, message):
    resp = _join(client, **choice)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and message in html
    assert 'value="Amina Yusuf"' in html  # what was typed is kept
    assert checkout_ok.calls("POST", CHECKOUT) == []
    with app.app_context():
        assert get_session().scalar(select(Account.id).where(Account.email == "amina@example.org")) is None


def test_an_archived_level_is_not_offered_and_cannot_be_chosen(app, client, catalogue, checkout_ok):
    with app.app_context():
        get_session().get(Level, catalogue["price_ten"]).archived = True
        get_session().commit()
    assert "Supporter" not in client.get("/join").get_data(as_text=True)
    resp = _join(client, level=str(catalogue["price_ten"]))
    assert resp.status_code == 422 and checkout_ok.calls("POST", CHECKOUT) == []


def _paying_member(app, client, price_id="price_test_monthly", status="active"):
    member = make_account(app, customer="cus_L")
    sub = subscription(id="sub_L", customer="cus_L", status=status, price=price_id)
    post_event(app.test_client(), event("customer.subscription.created", sub, created=NOW - 60))
    login(client, "reader@example.org", PASSWORD)
    return member, sub


def test_account_shows_the_level_and_a_level_change_swaps_the_price_then_the_webhook_confirms(app, client, catalogue,
                                                                                            stripe_api):
    member, sub = _paying_member(app, client)
    account = client.get("/account").get_data(as_text=True)
    assert "$5 a month (Member)" in account and "Change level" in account
    item_id = sub["items"]["data"][0]["id"]
    updated = {**sub, "items": {"object": "list", "data": [{**sub["items"]["data"][0], "price": {
        "id": "price_ten", "object": "price", "product": "prod_test_membership", "unit_amount": 1000,
        "currency": "usd", "recurring": {"interval": "month"}}}]}}
    stripe_api.on("POST", "/v1/subscriptions/sub_L", Reply(200, updated))
    resp = post_form(client, "/account/level", {"level": str(catalogue["price_ten"])})
    assert resp.status_code == 303
    (req,) = stripe_api.calls("POST", "/v1/subscriptions/sub_L")
    assert req.form == {"items[0][id]": item_id, "items[0][price]": "price_ten", "items[0][quantity]": "1",
                        "proration_behavior": "create_prorations", "payment_behavior": "pending_if_incomplete"}
    # Nothing changes until Stripe confirms...
    with app.app_context():
        assert get_session().get(Account, member).membership.level_amount == 500
    post_event(app.test_client(), event("customer.subscription.updated", updated, created=NOW))
    with app.app_context():
        m = get_session().get(Account, member).membership
        assert (m.level_name, m.level_amount, m.monthly_value) == ("Supporter", 1000, 1000)
    assert "$10 a month (Supporter)" in client.get("/account").get_data(as_text=True)


def test_the_level_shows_in_the_member_json_the_entitlement_answer_and_the_staff_list(app, client, catalogue):
    from ..support.staff import api_token

    member, _ = _paying_member(app, client, price_id="price_year")
    token = api_token(app)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/api/v1/members/{member}", headers=headers).json["level"] == {
        "name": "Member, yearly", "amount": 5000, "currency": "usd", "interval": "year"}
    assert api.get(f"/api/v1/entitlements?member_id={member}", headers=headers).json["level"] == "Member, yearly"
    staff_page = client_as(app, "staff").get("/staff").get_data(as_text=True)
    assert "Member, yearly, $50 a year" in staff_page
    with app.app_context():
        assert get_session().get(Account, member).membership.monthly_value == 417


def test_a_second_checkout_is_refused_while_the_member_pays(app, client, catalogue, checkout_ok):
    _paying_member(app, client)
    page = client.get("/account/checkout")
    assert page.status_code == 200
    resp = post_form(client, "/account/checkout", {"level": str(catalogue["price_ten"])})
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert "You already have a membership subscription" in client.get("/account").get_data(as_text=True)
    assert checkout_ok.calls("POST", CHECKOUT) == []


def test_a_completed_checkout_whose_webhook_has_not_arrived_blocks_a_second_one(app, client, catalogue,
                                                                              checkout_ok, stripe_api):
    from ..support.stripe_standin import SubscriptionTruth

    member = make_account(app)
    login(client, "reader@example.org", PASSWORD)
    paid = our_checkout(app, member, id="cs_paid", customer="cus_P", subscription="sub_P")
    SubscriptionTruth(stripe_api).set(subscription(id="sub_P", customer="cus_P", status="active"))
    stripe_api.on("GET", f"{CHECKOUT}/cs_paid", Reply(200, paid))
    resp = post_form(client, "/account/checkout", {"level": str(catalogue["price_test_monthly"])})
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert checkout_ok.calls("POST", CHECKOUT) == []
    with app.app_context():  # and the payment that went through is applied at once
        assert get_session().get(Account, member).membership.status == MembershipStatus.ACTIVE


def test_two_paying_subscriptions_flag_the_member_and_staff_can_filter_for_them(app, client):
    member = make_account(app, customer="cus_T")
    hook = app.test_client()
    for sub_id in ("sub_T1", "sub_T2"):  # the second made in the Dashboard, say
        post_event(hook, event("customer.subscription.created",
                               subscription(id=sub_id, customer="cus_T", status="active"), created=NOW - 60))
    make_account(app, email="single@example.org")
    with app.app_context():
        m = get_session().get(Account, member).membership
        assert m.paying_twice and "Paying twice" in m.flag_reason
    staff = client_as(app, "staff")
    listed = staff.get("/staff?flag=paying_twice").get_data(as_text=True)
    assert "reader@example.org" in listed and "single@example.org" not in listed and "paying twice" in listed


def test_a_level_change_is_refused_while_a_payment_is_behind(app, client, catalogue, stripe_api):
    _paying_member(app, client, status="past_due")
    resp = post_form(client, "/account/level", {"level": str(catalogue["price_year"])}, form_path="/account")
    assert resp.status_code == 422 and "Your last payment has not gone through" in resp.get_data(as_text=True)
    assert stripe_api.calls("POST", "/v1/subscriptions/sub_L") == []


def test_an_incomplete_subscription_being_confirmed_blocks_a_second_checkout(app, client, catalogue, checkout_ok):
    member = make_account(app, customer="cus_I")
    post_event(app.test_client(), event("customer.subscription.created",
                                        subscription(id="sub_I", customer="cus_I", status="incomplete")))
    login(client, "reader@example.org", PASSWORD)
    resp = post_form(client, "/account/checkout", {"level": str(catalogue["price_ten"])})
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert checkout_ok.calls("POST", CHECKOUT) == []
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.PENDING


def test_a_comp_in_front_of_a_subscription_still_retried_blocks_a_second_checkout(app, client, catalogue, checkout_ok):
    member = make_account(app, customer="cus_C2")
    post_event(app.test_client(), event("customer.subscription.created", subscription(
        id="sub_C2", customer="cus_C2", status="past_due", period_start=NOW - 40 * 86400, period_end=NOW - 10 * 86400)))
    staff = client_as(app, "staff")
    post_form(staff, f"/staff/members/{member}/comp", {"comp-reason": "Partner", "comp-confirm": "y"},
              form_path=f"/staff/members/{member}")
    with app.app_context():
        assert get_session().get(Account, member).membership.status == MembershipStatus.COMPED
    login(client, "reader@example.org", PASSWORD)
    resp = post_form(client, "/account/checkout", {"level": str(catalogue["price_ten"])})
    assert resp.status_code == 303 and checkout_ok.calls("POST", CHECKOUT) == []
