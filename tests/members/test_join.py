"""Journey 1: a reader joins and is sent to Stripe Checkout."""
from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, StripeCustomer

from ..support.stripe_objects import checkout_session
from ..support.stripe_standin import Reply, stripe_error
from ..support.web import csrf, post_form

CHECKOUT_PATH = "/v1/checkout/sessions"
GOOD = {"name": "Amina Yusuf", "email": "Amina@Example.org", "password": "correct horse battery", "newsletter": "y"}


def count_accounts(app) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count(Account.id)))


def account(app, email: str) -> Account:
    with app.app_context():
        acc = get_session().scalars(select(Account).where(Account.email == email)).one()
        _ = acc.membership
        return acc


@pytest.fixture
def checkout_ok(stripe_api):
    made = itertools.count()

    def reply(rec):
        # Stripe makes a new session each time: the first is cs_test_abc, the next ones differ.
        n = next(made)
        return Reply(200, checkout_session(id="cs_test_abc" + (f"_{n}" if n else ""),
                                           member_id=int(rec.form["client_reference_id"]),
                                           email=rec.form.get("customer_email", ""), customer=None,
                                           status="open", payment_status="unpaid",
                                           url="https://checkout.stripe.com/c/pay/cs_test_abc"))
    stripe_api.on("POST", CHECKOUT_PATH, reply)
    return stripe_api


def test_join_page_shows_form_with_dawns_checked_and_price(client):
    html = client.get("/join").get_data(as_text=True)
    for label in ("Full name", "Email", "Password", "Member: $5 a month", "Give more", ">Join</button>"):
        assert label in html
    # The $5/month level (seeded from STRIPE_PRICE_ID) is checked by default.
    assert 'checked id="level-0" name="level" type="radio" value="1"' in html
    assert 'name="newsletter" type="checkbox" value="y"' in html and "checked" in html
    assert "DAWNS Digest" in html and "free" in html


def test_join_creates_pending_member_and_redirects_303_to_checkout(app, client, checkout_ok):
    resp = post_form(client, "/join", GOOD)
    assert resp.status_code == 303
    assert resp.headers["Location"] == "https://checkout.stripe.com/c/pay/cs_test_abc"
    acc = account(app, "amina@example.org")
    assert acc.name == "Amina Yusuf"
    assert acc.membership.status == MembershipStatus.PENDING
    assert acc.membership.newsletter_opt_in is True
    # The reader is logged in: the account page answers.
    assert client.get("/account").status_code == 200


def test_checkout_session_request_carries_the_right_parameters(app, client, checkout_ok):
    post_form(client, "/join", GOOD)
    (req,) = checkout_ok.calls("POST", CHECKOUT_PATH)
    member_id = str(account(app, "amina@example.org").id)
    assert req.form["mode"] == "subscription"
    assert req.form["line_items[0][price]"] == "price_test_monthly"
    assert req.form["line_items[0][quantity]"] == "1"
    assert req.form["client_reference_id"] == member_id
    assert req.form["subscription_data[metadata][member_id]"] == member_id
    assert req.form["metadata[member_id]"] == member_id
    assert req.form["customer_email"] == "amina@example.org"
    assert "customer" not in req.form
    assert req.form["success_url"] == "http://localhost/join/success?session_id={CHECKOUT_SESSION_ID}"
    assert req.form["cancel_url"] == "http://localhost/join/cancelled"
    assert req.headers["authorization"] == "Bearer sk_test_123"
    assert req.headers["stripe-version"] == app.config["STRIPE_API_VERSION"]


def test_existing_customer_is_reused_on_a_new_checkout(app, client, checkout_ok):
    post_form(client, "/join", GOOD)
    acc = account(app, "amina@example.org")
    # The first Checkout was left open (the reader went back): Stripe still says so. It is
    # expired before the new one is made, so that it cannot be paid as well.
    first = checkout_session(id="cs_test_abc", member_id=acc.id, email=acc.email, customer=None, status="open",
                             payment_status="unpaid")
    checkout_ok.on("GET", f"{CHECKOUT_PATH}/cs_test_abc", Reply(200, first))
    checkout_ok.on("POST", f"{CHECKOUT_PATH}/cs_test_abc/expire", Reply(200, {**first, "status": "expired"}))
    with app.app_context():
        s = get_session()
        s.add(StripeCustomer(stripe_id="cus_EXISTING", account_id=acc.id, email=acc.email))
        s.commit()
    resp = post_form(client, "/account/checkout", {}, form_path="/account")
    assert resp.status_code == 303
    second = checkout_ok.calls("POST", CHECKOUT_PATH)[-1]
    assert len(checkout_ok.calls("POST", f"{CHECKOUT_PATH}/cs_test_abc/expire")) == 1
    assert second.form["customer"] == "cus_EXISTING"
    assert "customer_email" not in second.form


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"email": "not-an-email"}, "email", "Please enter a valid email address."),
        ({"password": "short"}, "password", "Use at least 10 characters."),
        ({"name": ""}, "name", "Please enter your name."),
    ],
)
def test_bad_input_shows_field_error_keeps_what_was_typed_and_creates_nothing(
    app, client, stripe_api, change, field, message
):
    data = {**GOOD, **change}
    resp = post_form(client, "/join", data)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f'id="{field}-error" role="alert">{message}' in html
    assert f'id="{field}" ' in html and 'aria-invalid="true"' in html
    for kept in ("name", "email"):
        if kept != field and data[kept]:
            assert f'value="{data[kept]}"' in html
    assert 'type="password" value=""' in html  # passwords are never echoed back
    assert count_accounts(app) == 0
    assert stripe_api.requests == []


def test_join_without_csrf_token_is_refused(app, client, stripe_api):
    client.get("/join")
    resp = client.post("/join", data=GOOD)
    assert resp.status_code == 400
    assert "This form has expired" in resp.get_data(as_text=True)
    assert count_accounts(app) == 0
    assert stripe_api.requests == []


def test_duplicate_email_is_sent_to_log_in_and_gets_no_second_account(app, client, checkout_ok):
    post_form(client, "/join", GOOD)
    other = app.test_client()
    resp = post_form(other, "/join", {**GOOD, "email": "  AMINA@example.ORG ", "name": "Someone Else"})
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith("/login")
    page = other.get("/login").get_data(as_text=True)
    assert "Please log in to continue" in page
    assert "Amina Yusuf" not in page and "pending" not in page
    assert count_accounts(app) == 1
    assert len(checkout_ok.calls("POST", CHECKOUT_PATH)) == 1
    # The owner of the address is told; the visitor is not shown anything more.
    outbox = app.extensions["mail_outbox"]
    assert outbox[-1]["To"] == "amina@example.org"
    assert "tried to join" in outbox[-1]["Subject"]


def test_unticked_dawns_box_is_remembered(app, client, checkout_ok):
    data = {k: v for k, v in GOOD.items() if k != "newsletter"}
    post_form(client, "/join", data)
    assert account(app, "amina@example.org").membership.newsletter_opt_in is False


@pytest.mark.parametrize(
    "reply",
    [
        stripe_error(500, "api_error", "Something went wrong on Stripe's end."),
        stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_***123"),
        Reply(200, {}, delay=5.0),  # slower than STRIPE_TIMEOUT
    ],
    ids=["stripe-500", "bad-key", "timeout"],
)
def test_stripe_failure_gives_a_friendly_page_and_leaves_the_account_pending(make_app, stripe_api, reply):
    stripe_api.on("POST", CHECKOUT_PATH, reply)
    app = make_app(STRIPE_TIMEOUT=0.5)
    client = app.test_client()
    resp = post_form(client, "/join", GOOD)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 503
    assert "We could not start the payment" in html
    assert "Traceback" not in html and "sk_test" not in html
    assert account(app, "amina@example.org").membership.status == MembershipStatus.PENDING
    assert len(stripe_api.calls("POST", CHECKOUT_PATH)) == 1


def test_join_form_works_without_javascript(client):
    html = client.get("/join").get_data(as_text=True)
    assert "<script" not in html
    assert 'method="post" action="/join"' in html
    assert csrf(client, "/join")
