"""Integration tier: localstripe (a separate fake Stripe process) sends real signed webhooks to
the app served by a real WSGI server. Deliveries are awaited by polling the database."""
from __future__ import annotations

import secrets

import pytest
import requests
import stripe

from service.billing.runtime import get_gateway
from service.db import get_session
from service.demo.localstripe import register_localstripe_webhook
from service.domain.membership import MembershipStatus
from service.models import Account, StripeEvent

from ..support.factories import link_customer, make_account
from ..support.server import LiveServer
from ..support.wait import poll


@pytest.fixture
def integrated(make_app, localstripe):
    settings = localstripe.provision("http://127.0.0.1:9/unused")
    secret = "whsec_" + secrets.token_hex(16)
    app = make_app(
        STRIPE_SECRET_KEY=settings["STRIPE_SECRET_KEY"],
        STRIPE_API_BASE=settings["STRIPE_API_BASE"],
        STRIPE_PRICE_ID=settings["STRIPE_PRICE_ID"],
        STRIPE_PRODUCT_ID=settings["STRIPE_PRODUCT_ID"],
        STRIPE_WEBHOOK_SECRET=secret,
        STRIPE_API_VERSION="2017-08-15",  # what localstripe speaks
        DEMO_CHECKOUT=True,  # the gateway's twin for localstripe: Prices are Plans there
    )
    server = LiveServer(app, worker=True)
    # localstripe keeps one registration per name: this test's server gets the deliveries.
    register_localstripe_webhook(localstripe.url, f"{server.url}/stripe/webhook", secret, name="tests")
    yield app
    server.stop()


def wait_for_status(app, account_id: int, wanted: MembershipStatus) -> MembershipStatus:
    def status() -> MembershipStatus:
        with app.app_context():
            value = get_session().get(Account, account_id).membership.status
            get_session().close()
        return value

    poll(lambda: status() == wanted)
    return status()


def subscribe(app, account_id: int, email: str, payment_method: dict) -> dict:
    """What Checkout does, done directly against localstripe (the test plays Stripe Checkout)."""
    client = stripe.StripeClient(app.config["STRIPE_SECRET_KEY"], max_network_retries=0,
                                 base_addresses={"api": app.config["STRIPE_API_BASE"]})  # type: ignore[arg-type]
    customer = client.v1.customers.create({"email": email, "metadata": {"member_id": str(account_id)}})
    # Checkout made the customer for a session of ours: the customer belongs to the member.
    link_customer(app, account_id, customer.id)
    pm = client.v1.payment_methods.create(payment_method)
    client.v1.payment_methods.attach(pm.id, {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm.id}})
    sub = client.v1.subscriptions.create({
        "customer": customer.id,
        "items": [{"plan": app.config["STRIPE_PRICE_ID"]}],
        "metadata": {"member_id": str(account_id)},
        "expand": ["latest_invoice.payment_intent"],
    })
    return sub.to_dict()


CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_pm_card_visa_makes_the_member_active_through_a_real_webhook(integrated):
    member = make_account(integrated, email="visa@example.org")
    sub = subscribe(integrated, member, "visa@example.org", CARD)
    assert sub["status"] == "active"
    assert wait_for_status(integrated, member, MembershipStatus.ACTIVE) == MembershipStatus.ACTIVE

    def delivered() -> bool:
        with integrated.app_context():
            types = {e.type for e in get_session().query(StripeEvent).filter_by(account_id=member)}
            get_session().close()
        return {"customer.subscription.created", "invoice.payment_succeeded"} <= types

    assert poll(delivered)


def test_failing_3d_secure_card_ends_canceled(integrated, localstripe):
    member = make_account(integrated, email="3ds@example.org")
    three_ds = {"type": "card", "card": {"number": "4000000000003220", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    sub = subscribe(integrated, member, "3ds@example.org", three_ds)
    assert sub["status"] == "incomplete"
    intent = sub["latest_invoice"]["payment_intent"]
    assert intent["status"] == "requires_action"
    # The reader fails the 3-D Secure challenge (localstripe's test hook for it).
    requests.post(f"{localstripe.url}/v1/payment_intents/{intent['id']}/_authenticate",
                  data={"client_secret": intent["client_secret"], "success": "false"},
                  auth=(integrated.config["STRIPE_SECRET_KEY"], ""), timeout=10)
    assert wait_for_status(integrated, member, MembershipStatus.CANCELED) == MembershipStatus.CANCELED


def test_failing_sepa_debit_ends_canceled(integrated):
    member = make_account(integrated, email="sepa@example.org")
    sepa = {"type": "sepa_debit", "sepa_debit": {"iban": "DE62370400440532013001"}}
    subscribe(integrated, member, "sepa@example.org", sepa)
    assert wait_for_status(integrated, member, MembershipStatus.CANCELED) == MembershipStatus.CANCELED


def test_cancel_ends_canceled(integrated):
    member = make_account(integrated, email="quit@example.org")
    sub = subscribe(integrated, member, "quit@example.org", CARD)
    assert wait_for_status(integrated, member, MembershipStatus.ACTIVE) == MembershipStatus.ACTIVE
    with integrated.app_context():
        get_gateway().cancel_subscription(sub["id"], at_period_end=False)
    assert wait_for_status(integrated, member, MembershipStatus.CANCELED) == MembershipStatus.CANCELED
