"""Journey 2: the success page retrieves the session and fulfils it through the shared path."""
from __future__ import annotations

import time

from sqlalchemy import func, select

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, StripeCustomer, StripeSubscription

from ..support.factories import PASSWORD, make_account, our_checkout
from ..support.stripe_objects import subscription
from ..support.web import login
from ..support.stripe_standin import Reply, stripe_error


def _status(app, account_id):
    with app.app_context():
        return get_session().get(Account, account_id).membership.status


def _reader(app, client, email="reader@example.org") -> int:
    """A reader who joined and is signed in, as after POST /join."""
    acc = make_account(app, email=email)
    login(client, email, PASSWORD)
    return acc


def _serve_session(stripe_api, session_obj):
    """Stripe answers the session with the subscription's id; the subscription on its own path."""
    sub = session_obj.get("subscription")
    if isinstance(sub, dict):
        stripe_api.on("GET", f"/v1/subscriptions/{sub['id']}", Reply(200, sub))
        session_obj = {**session_obj, "subscription": sub["id"]}
    stripe_api.on("GET", f"/v1/checkout/sessions/{session_obj['id']}", Reply(200, session_obj))


def test_completed_paid_session_makes_the_member_active(app, client, stripe_api):
    acc = _reader(app, client)
    end = int(time.time()) + 30 * 86400
    sub = subscription(id="sub_1", customer="cus_1", status="active", member_id=acc, period_end=end)
    _serve_session(stripe_api, our_checkout(app, acc, id="cs_1", customer="cus_1", subscription=sub))
    resp = client.get("/join/success?session_id=cs_1")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "you are a member" in html and 'http-equiv="refresh"' not in html
    assert len(stripe_api.calls("GET", "/v1/checkout/sessions/cs_1")) == 1
    assert len(stripe_api.calls("GET", "/v1/subscriptions/sub_1")) == 1
    assert _status(app, acc) == MembershipStatus.ACTIVE
    with app.app_context():
        s = get_session()
        customer = s.scalars(select(StripeCustomer)).one()
        assert (customer.stripe_id, customer.account_id) == ("cus_1", acc)
        row = s.scalars(select(StripeSubscription)).one()
        assert row.stripe_id == "sub_1" and row.account_id == acc
        membership = s.get(Account, acc).membership
        assert membership.paid_through.timestamp() == end


def test_reloading_the_success_page_changes_nothing(app, client, stripe_api):
    acc = _reader(app, client)
    sub = subscription(id="sub_1", customer="cus_1", status="active", member_id=acc)
    _serve_session(stripe_api, our_checkout(app, acc, id="cs_1", customer="cus_1", subscription=sub))
    for _ in range(3):
        assert client.get("/join/success?session_id=cs_1").status_code == 200
    with app.app_context():
        s = get_session()
        assert s.scalar(select(func.count(StripeCustomer.id))) == 1
        assert s.scalar(select(func.count(StripeSubscription.id))) == 1
    assert _status(app, acc) == MembershipStatus.ACTIVE


def test_payment_still_processing_says_so_refreshes_and_never_claims_active(app, client, stripe_api):
    acc = _reader(app, client)
    sub = subscription(id="sub_2", customer="cus_2", status="incomplete", member_id=acc)
    _serve_session(stripe_api, our_checkout(app, acc, id="cs_2", customer="cus_2", subscription=sub,
                                            status="complete", payment_status="unpaid"))
    html = client.get("/join/success?session_id=cs_2").get_data(as_text=True)
    assert "confirming your payment" in html
    assert "Check again" in html and "http-equiv" not in html  # a manual refresh: no timed one (WCAG 2.2.1)
    assert "you are a member" not in html and "Active" not in html
    assert _status(app, acc) == MembershipStatus.PENDING


def test_open_session_without_subscription_is_not_fulfilled(app, client, stripe_api):
    acc = _reader(app, client)
    _serve_session(stripe_api, our_checkout(app, acc, id="cs_3", customer=None, subscription=None, status="open",
                                            payment_status="unpaid"))
    html = client.get("/join/success?session_id=cs_3").get_data(as_text=True)
    assert "you are a member" not in html
    assert _status(app, acc) == MembershipStatus.PENDING


def test_unknown_session_or_stripe_down_gives_a_friendly_page(app, client, stripe_api):
    acc = _reader(app, client)
    our_checkout(app, acc, id="cs_missing")
    stripe_api.on("GET", "/v1/checkout/sessions/cs_missing",
                  stripe_error(404, "invalid_request_error", "No such checkout.session: 'cs_missing'", "resource_missing"))
    resp = client.get("/join/success?session_id=cs_missing")
    assert resp.status_code == 503 and "Traceback" not in resp.get_data(as_text=True)
    assert client.get("/join/success").status_code == 400


def test_cancelled_page_lets_the_reader_try_again(app, client):
    html = client.get("/join/cancelled").get_data(as_text=True)
    assert "No payment was taken" in html and "/login" in html


def test_a_session_id_that_is_not_a_checkout_session_never_reaches_stripe(client, stripe_api):
    assert client.get("/join/success?session_id=../../v1/customers").status_code == 400
    assert stripe_api.requests == []


def test_a_paused_member_cannot_start_a_second_subscription(app, client, stripe_api):
    from service.domain.membership import MembershipStatus as S

    from ..support.web import post_form

    make_account(app, status=S.PAUSED)
    login(client, "reader@example.org", PASSWORD)
    stripe_api.reset()
    resp = post_form(client, "/account/checkout", {}, form_path="/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert "Manage billing" in client.get("/account").get_data(as_text=True)
    assert stripe_api.requests == []


def test_the_success_page_for_someone_elses_session_changes_nothing(app, client, stripe_api):
    owner = make_account(app, email="owner@example.org")
    sub = subscription(id="sub_O", customer="cus_O", status="active")
    _serve_session(stripe_api, our_checkout(app, owner, id="cs_owner", customer="cus_O", subscription=sub))
    stripe_api.reset()
    intruder = _reader(app, client, "intruder@example.org")
    for who in (client, app.test_client()):  # another reader, then a stranger
        resp = who.get("/join/success?session_id=cs_owner")
        assert resp.status_code == 200 and "log in with the account you joined with" in resp.get_data(as_text=True)
    assert stripe_api.requests == []  # not even read from Stripe
    assert _status(app, owner) == MembershipStatus.PENDING and _status(app, intruder) == MembershipStatus.PENDING
    with app.app_context():
        assert get_session().scalar(select(func.count(StripeCustomer.id))) == 0


def test_the_success_page_for_a_session_we_never_created_is_neutral(app, client, stripe_api):
    _reader(app, client)
    resp = client.get("/join/success?session_id=cs_live_not_ours")
    assert resp.status_code == 200 and "Thank you" in resp.get_data(as_text=True)
    assert stripe_api.requests == []
