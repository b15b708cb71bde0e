"""The embedded default: the demo Checkout page creates a real subscription in localstripe."""
from __future__ import annotations

import re

import pytest

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.members.services import find_by_email

from ..support.wait import poll
from ..support.web import csrf_from, post_form

JOIN = {"name": "Demo Reader", "email": "demo@example.org", "password": "demo password 123", "newsletter": "y"}


@pytest.fixture
def demo_app(make_app, localstripe):
    settings = localstripe.provision("http://127.0.0.1:9/stripe/webhook")
    return make_app(
        STRIPE_SECRET_KEY=settings["STRIPE_SECRET_KEY"],
        STRIPE_API_BASE=settings["STRIPE_API_BASE"],
        STRIPE_PRICE_ID=settings["STRIPE_PRICE_ID"],
        DEMO_CHECKOUT=True,
    )


def _pay(client, checkout_url: str, number: str):
    page = client.get(checkout_url)
    assert page.status_code == 200
    action = re.search(r'<form method="post" action="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post(action, data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                     "number": number, "exp": "12/34", "cvc": "123"})


def test_joining_reaches_the_labelled_demo_checkout_page(demo_app):
    client = demo_app.test_client()
    resp = post_form(client, "/join", JOIN)
    assert resp.status_code == 303
    path = resp.headers["Location"].removeprefix("http://localhost")
    assert path.startswith("/demo/checkout/cs_demo_")
    html = client.get(path).get_data(as_text=True)
    assert "Demo mode" in html and "stands in for Stripe Checkout" in html and "$5.00 per month" in html


def test_paying_with_the_test_card_makes_the_member_active(demo_app):
    client = demo_app.test_client()
    resp = post_form(client, "/join", JOIN)
    paid = _pay(client, resp.headers["Location"].removeprefix("http://localhost"), "4242 4242 4242 4242")
    assert paid.status_code == 303
    success = client.get(paid.headers["Location"].removeprefix("http://localhost"))
    assert "you are a member" in success.get_data(as_text=True)
    with demo_app.app_context():
        account = find_by_email("demo@example.org")
        assert account.membership.status == MembershipStatus.ACTIVE
        assert account.membership.stripe_subscription_id.startswith("sub_")
        get_session().close()


def test_a_declined_card_stays_on_the_demo_page_and_the_member_stays_pending(demo_app):
    client = demo_app.test_client()
    resp = post_form(client, "/join", JOIN)
    declined = _pay(client, resp.headers["Location"].removeprefix("http://localhost"), "4000 0000 0000 0341")
    assert declined.status_code == 402
    assert "Your card was declined" in declined.get_data(as_text=True)
    with demo_app.app_context():
        assert find_by_email("demo@example.org").membership.status == MembershipStatus.PENDING
        get_session().close()


def test_demo_pages_do_not_exist_with_real_stripe_keys(client):
    assert client.get("/demo/checkout/cs_demo_x").status_code == 404


@pytest.fixture
def live_demo(make_app, localstripe):
    """The embedded default end to end: demo pages, localstripe, real signed webhooks."""
    import secrets as _secrets

    from service.devserver import register_localstripe_webhook

    from ..support.server import LiveServer

    settings = localstripe.provision("http://127.0.0.1:9/unused")
    secret = "whsec_" + _secrets.token_hex(16)
    app = make_app(STRIPE_SECRET_KEY=settings["STRIPE_SECRET_KEY"], STRIPE_API_BASE=settings["STRIPE_API_BASE"],
                   STRIPE_PRICE_ID=settings["STRIPE_PRICE_ID"], STRIPE_WEBHOOK_SECRET=secret, DEMO_CHECKOUT=True,
                   STRIPE_API_VERSION="2017-08-15")
    server = LiveServer(app)
    register_localstripe_webhook(localstripe.url, f"{server.url}/stripe/webhook", secret, name="tests")
    yield app
    server.stop()


def _events_for(app, account_id):
    from service.models import StripeEvent

    with app.app_context():
        types = [e.type for e in get_session().query(StripeEvent).filter_by(account_id=account_id)]
        get_session().close()
    return types


def test_demo_journey_is_driven_by_real_webhooks_and_the_demo_portal_cancels(live_demo):
    from ..support.web import login

    client = live_demo.test_client()
    resp = post_form(client, "/join", {**JOIN, "email": "journey@example.org"})
    paid = _pay(client, resp.headers["Location"].removeprefix("http://localhost"), "4242 4242 4242 4242")
    assert paid.status_code == 303
    # The browser follows Stripe's redirect: the success page links the customer (a session of ours).
    success = client.get(paid.headers["Location"].removeprefix("http://localhost"))
    assert success.status_code == 200
    with live_demo.app_context():
        member = find_by_email("journey@example.org").id
        get_session().close()
    assert poll(lambda: "customer.subscription.created" in _events_for(live_demo, member))

    login(client, "journey@example.org", JOIN["password"])
    account = client.get("/account").get_data(as_text=True)
    assert "Active" in account and "Manage billing" in account
    portal = post_form(client, "/account/billing", {}, form_path="/account")
    assert portal.status_code == 303
    portal_path = portal.headers["Location"].removeprefix("http://localhost")
    assert portal_path.startswith("/demo/portal/")
    page = client.get(portal_path)
    assert "Demo mode" in page.get_data(as_text=True)
    cancel = client.post(portal_path, data={"csrf_token": csrf_from(page.get_data(as_text=True)), "submit_now": "1"})
    assert cancel.status_code == 303

    def canceled():
        with live_demo.app_context():
            status = find_by_email("journey@example.org").membership.status
            get_session().close()
        return status == MembershipStatus.CANCELED

    assert poll(canceled)
    assert poll(lambda: "customer.subscription.deleted" in _events_for(live_demo, member))
