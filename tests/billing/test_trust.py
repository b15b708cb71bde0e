"""SPEC "Trust rules": what a Stripe object says about itself links nothing.

The takeover this guards against: a Payment Link opened with ?client_reference_id=<an admin's
id> made a checkout the service never created; the payer's customer was linked to the admin,
and a later customer.updated moved the admin's login email to the payer's address.
"""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from service.db import get_session
from service.domain.membership import MembershipStatus, Role
from service.models import Account, CheckoutSession, StripeCustomer, StripeSubscription

from ..support.events import event, outcome_of, post_event
from ..support.factories import PASSWORD, make_account, our_checkout
from ..support.staff import client_as
from ..support.stripe_objects import checkout_session, subscription
from ..support.stripe_standin import SubscriptionTruth
from ..support.web import login

NOW = int(time.time())


def _accounts(app) -> dict[int, tuple[str, Role, list[str]]]:
    """Every account's login email, role and linked customers."""
    with app.app_context():
        s = get_session()
        out = {}
        for acc in s.scalars(select(Account)):
            customers = s.scalars(select(StripeCustomer.stripe_id).where(StripeCustomer.account_id == acc.id)).all()
            out[acc.id] = (acc.email, acc.role, sorted(customers))
        return out


def _entitled(app, account_id) -> bool:
    from service.membership.service import is_entitled

    with app.app_context():
        return is_entitled(get_session().get(Account, account_id).membership)


@pytest.mark.parametrize("target", ["staff", "admin", "reader", "nobody"])
def test_a_checkout_we_did_not_create_takes_over_no_account(app, stripe_api, target):
    admin = make_account(app, email="admin@example.org", role=Role.ADMIN)
    staff = make_account(app, email="staff@example.org", role=Role.STAFF)
    reader = make_account(app, email="reader@example.org")
    reference = {"staff": staff, "admin": admin, "reader": reader, "nobody": 999_999}[target]
    before = _accounts(app)
    hook = app.test_client()

    # A Payment Link opened with ?client_reference_id=<id>: Stripe sends the session, the
    # subscription and its invoice; the payer's customer is the attacker's.
    sub = subscription(id="sub_X", customer="cus_X", status="active", member_id=reference)
    SubscriptionTruth(stripe_api).set(sub)
    foreign = checkout_session(id="cs_live_paymentlink", member_id=reference, email="attacker@evil.example",
                               customer="cus_X", subscription="sub_X")
    completed = event("checkout.session.completed", foreign, created=NOW - 30)
    post_event(hook, completed)
    assert outcome_of(app, completed["id"]) == "foreign"
    post_event(hook, event("customer.subscription.created", sub, created=NOW - 29))
    invoice = {"id": "in_X", "object": "invoice", "customer": "cus_X",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_X"}}}
    post_event(hook, event("invoice.paid", invoice, created=NOW - 28))
    # The payer then changes the customer's email in the Portal to... the target's login email's
    # neighbour, and then to the target's own address.
    for n, email in enumerate(("attacker2@evil.example", "admin@example.org")):
        post_event(hook, event("customer.updated", {"id": "cus_X", "object": "customer", "email": email},
                               created=NOW - 20 + n))

    assert _accounts(app) == before  # every account keeps its email, role and customers
    for account_id in (admin, staff, reader):
        assert not _entitled(app, account_id)
    with app.app_context():
        s = get_session()
        assert s.scalar(select(StripeCustomer.account_id).where(StripeCustomer.stripe_id == "cus_X")) is None
        assert s.scalar(select(StripeSubscription.account_id).where(StripeSubscription.stripe_id == "sub_X")) is None
        stored = s.scalars(select(CheckoutSession).where(CheckoutSession.stripe_id == "cs_live_paymentlink")).one()
        assert (stored.ours, stored.account_id, stored.claimed_reference) == (False, None, str(reference))
    # Staff still sign in, and their console shows the foreign session.
    console = app.test_client()
    login(console, "admin@example.org", PASSWORD)
    page = console.get("/staff/checkouts").get_data(as_text=True)
    assert "cs_live_paymentlink" in page and "attacker@evil.example" in page

    # The foreign subscription counts once a trusted path links its customer: a checkout of ours
    # for the reader that reuses that customer.
    if target == "reader":
        cs = our_checkout(app, reader, customer="cus_X", subscription="sub_X")
        ours = event("checkout.session.completed", cs)
        post_event(hook, ours)
        assert outcome_of(app, ours["id"]) == "applied"
        assert _entitled(app, reader)


def test_a_webhook_never_links_a_customer_to_a_staff_account_even_through_our_own_session(app, stripe_api):
    editor = make_account(app, email="editor@example.org", role=Role.STAFF)
    SubscriptionTruth(stripe_api).set(subscription(id="sub_S", customer="cus_S", status="active"))
    cs = our_checkout(app, editor, email="editor@example.org", customer="cus_S", subscription="sub_S")
    completed = event("checkout.session.completed", cs)
    post_event(app.test_client(), completed)
    assert outcome_of(app, completed["id"]) == "foreign"
    assert _accounts(app)[editor] == ("editor@example.org", Role.STAFF, [])


def test_staff_cannot_start_a_checkout(app, stripe_api):
    from ..support.web import post_form

    client = client_as(app, "staff")
    resp = post_form(client, "/account/checkout", {}, form_path="/logout")
    assert resp.status_code == 403
    assert stripe_api.requests == []


def test_subscription_metadata_naming_a_member_links_nothing(app):
    """metadata.member_id is set by whoever creates the subscription (the Dashboard, a link)."""
    reader = make_account(app)
    sub = subscription(id="sub_M", customer="cus_M", status="active", member_id=reader)
    created = event("customer.subscription.created", sub)
    post_event(app.test_client(), created)
    assert outcome_of(app, created["id"]) == "unlinked"
    assert not _entitled(app, reader)


def test_join_records_the_checkout_session_it_created(app, client, stripe_api):
    from ..support.stripe_standin import Reply
    from ..support.web import post_form

    stripe_api.on("POST", "/v1/checkout/sessions", lambda rec: Reply(200, checkout_session(
        id="cs_test_recorded", member_id=int(rec.form["client_reference_id"]), email=rec.form["customer_email"],
        customer=None, status="open", url="https://checkout.stripe.com/c/pay/cs_test_recorded")))
    post_form(client, "/join", {"name": "Amina Yusuf", "email": "amina@example.org", "password": "a long password 1",
                                "newsletter": "y"})
    with app.app_context():
        row = get_session().scalars(select(CheckoutSession)).one()
        account = get_session().scalars(select(Account).where(Account.email == "amina@example.org")).one()
        assert (row.stripe_id, row.ours, row.account_id, row.status) == ("cs_test_recorded", True, account.id, "open")
        assert account.membership.status == MembershipStatus.PENDING
