"""The embedded default: the demo Checkout page creates a real subscription in localstripe."""
from __future__ import annotations

import re

import pytest

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.accounts.services import find_by_email

from ..support.wait import poll
from ..support.web import csrf_from, post_form

JOIN = {"name": "Demo Reader", "email": "demo@example.org", "password": "demo password 123", "newsletter": "y"}


@pytest.fixture
def demo_app(make_app, localstripe):
    from service.demo.localstripe import seed_demo_catalogue

    settings = localstripe.provision("http://127.0.0.1:9/stripe/webhook")
    app = make_app(
        STRIPE_SECRET_KEY=settings["STRIPE_SECRET_KEY"],
        STRIPE_API_BASE=settings["STRIPE_API_BASE"],
        STRIPE_PRICE_ID=settings["STRIPE_PRICE_ID"],
        STRIPE_PRODUCT_ID=settings["STRIPE_PRODUCT_ID"],
        DEMO_CHECKOUT=True,
    )
    seed_demo_catalogue(app)  # what `make run` offers: $5 a month, $50 a year
    return app


def _level_id(app, price_id):
    from sqlalchemy import select

    from service.models import Level

    with app.app_context():
        return get_session().scalar(select(Level.id).where(Level.stripe_price_id == price_id))


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
    assert "Demo mode" in html and "stands in for Stripe Checkout" in html and "$5 per month" in html


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


def _membership(app, email):
    with app.app_context():
        m = find_by_email(email).membership
        values = (m.status, m.level_name, m.level_amount, m.level_interval, m.paid_through)
        get_session().close()
    return values


def test_joining_at_fifty_a_year_ends_active_with_the_yearly_period(live_demo):
    from datetime import timedelta

    from service.db import utcnow

    client = live_demo.test_client()
    resp = post_form(client, "/join", {**JOIN, "email": "yearly@example.org",
                                       "level": str(_level_id(live_demo, "plan_dawns_yearly"))})
    checkout = resp.headers["Location"].removeprefix("http://localhost")
    assert "$50 per year" in client.get(checkout).get_data(as_text=True)
    paid = _pay(client, checkout, "4242 4242 4242 4242")
    client.get(paid.headers["Location"].removeprefix("http://localhost"))
    status, name, amount, interval, paid_through = _membership(live_demo, "yearly@example.org")
    assert (status, name, amount, interval) == (MembershipStatus.ACTIVE, "Member, yearly", 5000, "year")
    assert paid_through - utcnow() > timedelta(days=360)


def test_giving_more_makes_a_plan_of_the_membership_product_in_localstripe(live_demo):
    client = live_demo.test_client()
    resp = post_form(client, "/join", {**JOIN, "email": "generous@example.org", "level": "custom",
                                       "custom_amount": "12", "custom_interval": "month"})
    checkout = resp.headers["Location"].removeprefix("http://localhost")
    assert "$12 per month" in client.get(checkout).get_data(as_text=True)
    paid = _pay(client, checkout, "4242 4242 4242 4242")
    client.get(paid.headers["Location"].removeprefix("http://localhost"))
    status, name, amount, interval, _ = _membership(live_demo, "generous@example.org")
    assert (status, name, amount, interval) == (MembershipStatus.ACTIVE, "Give more", 1200, "month")


def test_the_demo_portal_cancel_at_period_end_reaches_the_membership(live_demo):
    """localstripe sends no customer.subscription.updated for it; the demo reads it back."""
    client = live_demo.test_client()
    resp = post_form(client, "/join", {**JOIN, "email": "ending@example.org"})
    paid = _pay(client, resp.headers["Location"].removeprefix("http://localhost"), "4242 4242 4242 4242")
    client.get(paid.headers["Location"].removeprefix("http://localhost"))
    portal = post_form(client, "/account/billing", {}, form_path="/account")
    portal_path = portal.headers["Location"].removeprefix("http://localhost")
    page = client.get(portal_path)
    client.post(portal_path, data={"csrf_token": csrf_from(page.get_data(as_text=True)), "submit_end": "1"})
    with live_demo.app_context():
        m = find_by_email("ending@example.org").membership
        assert m.status == MembershipStatus.ACTIVE and m.cancel_at_period_end is True
        get_session().close()
    assert "Ends on" in client.get("/account").get_data(as_text=True)


def test_a_demo_checkout_keeps_its_own_plan_and_an_expired_one_cannot_be_paid(demo_app):
    """Two checkouts for one reader: each pays what it was made for; the older is expired."""
    client = demo_app.test_client()
    first = post_form(client, "/join", {**JOIN, "email": "two@example.org"}).headers["Location"]
    yearly = post_form(client, "/account/checkout", {"level": str(_level_id(demo_app, "plan_dawns_yearly"))},
                       form_path="/account").headers["Location"]
    assert "$5 per month" in client.get(first.removeprefix("http://localhost")).get_data(as_text=True)
    assert "$50 per year" in client.get(yearly.removeprefix("http://localhost")).get_data(as_text=True)
    refused = _pay(client, first.removeprefix("http://localhost"), "4242 4242 4242 4242")
    assert refused.status_code == 422 and "expired" in refused.get_data(as_text=True)
    assert _pay(client, yearly.removeprefix("http://localhost"), "4242 4242 4242 4242").status_code == 303


def test_a_newcomer_buys_five_seats_invites_a_colleague_who_is_entitled_with_dawns(live_demo):
    """Issue 11's "done when", on the embedded default: the demo checkout, the real localstripe
    subscription and webhooks, the invitation printed by the log mail backend."""
    from sqlalchemy import select

    from service.membership.service import is_entitled
    from service.models import NewsletterOutbox, Organisation

    client = live_demo.test_client()
    resp = post_form(client, "/organisations/join", {"organisation": "Sahel Relief", "seats": "5",
                                                     "name": "Org Admin", "email": "admin@sahel.example",
                                                     "password": "demo password 123", "newsletter": "y"})
    assert resp.status_code == 303
    checkout = resp.headers["Location"].removeprefix("http://localhost")
    page = client.get(checkout).get_data(as_text=True)
    assert "Demo mode" in page and "$200 per year" in page and "(5 seats)" in page  # 5 x $40
    paid = _pay(client, checkout, "4242 4242 4242 4242")
    assert paid.status_code == 303
    done = client.get(paid.headers["Location"].removeprefix("http://localhost"))
    assert done.status_code == 303 and done.headers["Location"] == "/organisations/sahel-relief"
    assert "0 of 5 used" in client.get("/organisations/sahel-relief").get_data(as_text=True)

    invited = post_form(client, "/organisations/sahel-relief/invite", {"email": "colleague@sahel.example"},
                        form_path="/organisations/sahel-relief")
    assert invited.status_code == 303
    mail = [m for m in live_demo.extensions["mail_outbox"] if m["To"] == "colleague@sahel.example"][-1]
    link = re.search(r"http://localhost(/organisations/invitations/\S+)", mail.get_content()).group(1)
    colleague = live_demo.test_client()
    form = colleague.get(link).get_data(as_text=True)
    accepted = colleague.post(link, data={"csrf_token": csrf_from(form), "name": "Col League",
                                          "password": "another password 1", "newsletter": "y"})
    assert accepted.status_code == 303
    account = colleague.get("/account").get_data(as_text=True)
    assert "A seat in Sahel Relief" in account
    with live_demo.app_context():
        s = get_session()
        reader = find_by_email("colleague@sahel.example")
        assert is_entitled(reader.membership) and reader.membership.status == MembershipStatus.ORGANISATION
        assert s.scalars(select(NewsletterOutbox.action).where(NewsletterOutbox.account_id == reader.id)).all() \
            == ["subscribed"]
        org = s.scalars(select(Organisation)).one()
        assert (org.status, org.seats) == (MembershipStatus.ACTIVE, 5)
        admin = find_by_email("admin@sahel.example")
        assert admin.membership.status == MembershipStatus.PENDING  # seats are not the buyer's own membership
        s.close()
