"""'Manage billing': POST /account/billing answers 303 to a Stripe Customer Portal session."""
from __future__ import annotations

from service.db import get_session
from service.models import StripeCustomer

from ..support.factories import PASSWORD, make_account
from ..support.stripe_standin import Reply, stripe_error
from ..support.web import login, post_form

PORTAL = "/v1/billing_portal/sessions"


def _with_customer(app):
    member = make_account(app)
    with app.app_context():
        get_session().add(StripeCustomer(stripe_id="cus_P", account_id=member, email="reader@example.org"))
        get_session().commit()
    return member


def test_manage_billing_redirects_303_to_the_portal(app, client, stripe_api):
    _with_customer(app)
    stripe_api.on("POST", PORTAL, Reply(200, {"id": "bps_1", "object": "billing_portal.session",
                                              "url": "https://billing.stripe.com/p/session/test_1"}))
    login(client, "reader@example.org", PASSWORD)
    resp = post_form(client, "/account/billing", {}, form_path="/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "https://billing.stripe.com/p/session/test_1"
    (req,) = stripe_api.calls("POST", PORTAL)
    assert req.form == {"customer": "cus_P", "return_url": "http://localhost/account", "locale": "en"}


def test_manage_billing_without_a_customer_explains(app, client, stripe_api):
    make_account(app)
    login(client, "reader@example.org", PASSWORD)
    resp = post_form(client, "/account/billing", {}, form_path="/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert "join first" in client.get("/account").get_data(as_text=True)
    assert stripe_api.requests == []


def test_portal_failure_is_a_friendly_page(app, client, stripe_api):
    _with_customer(app)
    stripe_api.on("POST", PORTAL, stripe_error(500, "api_error", "down"))
    login(client, "reader@example.org", PASSWORD)
    resp = post_form(client, "/account/billing", {}, form_path="/account")
    assert resp.status_code == 503 and "payment provider" in resp.get_data(as_text=True)


def test_manage_billing_needs_login_and_csrf(app, client):
    assert client.post("/account/billing").status_code in (302, 400)
    _with_customer(app)
    login(client, "reader@example.org", PASSWORD)
    assert client.post("/account/billing").status_code == 400
