"""Every webhook is verified: anything else gets 400 and nothing is stored."""
from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import func, select

from service.db import get_session
from service.models import StripeEvent

from ..support.events import SECRET, event, post_event, sign
from ..support.stripe_objects import subscription


def stored(app) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count(StripeEvent.id)))


def _evt():
    return event("customer.subscription.updated", subscription(id="sub_sig", customer="cus_sig"))


def test_signed_event_is_accepted(app, client):
    resp = post_event(client, _evt())
    assert resp.status_code == 200 and resp.json["received"] is True
    assert stored(app) == 1


def test_missing_signature_header(app, client):
    resp = client.post("/stripe/webhook", data=json.dumps(_evt()), content_type="application/json")
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_event"
    assert stored(app) == 0


def test_wrong_secret(app, client):
    assert post_event(client, _evt(), secret="whsec_someone_else").status_code == 400
    assert stored(app) == 0


def test_stale_timestamp_beyond_300_seconds(app, client):
    assert post_event(client, _evt(), timestamp=int(time.time()) - 301).status_code == 400
    assert stored(app) == 0


def test_tampered_body(app, client):
    payload = json.dumps(_evt())
    header = sign(payload)
    tampered = payload.replace('"active"', '"canceled"')
    resp = client.post("/stripe/webhook", data=tampered, content_type="application/json",
                       headers={"Stripe-Signature": header})
    assert resp.status_code == 400
    assert stored(app) == 0


def test_non_json_body(app, client):
    assert post_event(client, "this is not json").status_code == 400
    assert stored(app) == 0


@pytest.mark.parametrize("body", [
    {"hello": "world"},
    {"object": "event", "id": "evt_1", "type": "x", "created": 1, "data": {}},
    ["evt_1"],
])
def test_json_that_is_not_an_event(app, client, body):
    assert post_event(client, json.dumps(body)).status_code == 400
    assert stored(app) == 0


def test_signature_failures_are_logged_without_the_body(app, client, caplog):
    evt = _evt()
    with caplog.at_level(logging.WARNING, logger="service.billing.webhooks"):
        post_event(client, evt, secret="whsec_wrong")
    text = caplog.text
    assert "webhook rejected" in text
    assert "sub_sig" not in text and "cus_sig" not in text


def test_webhook_needs_no_csrf_but_only_post(client):
    assert client.get("/stripe/webhook").status_code == 405


def test_secret_is_the_configured_one():
    assert SECRET == "whsec_test_secret"


def _signed_odd(**changes):
    evt = _evt()
    for key, value in changes.items():
        if key == "customer":
            evt["data"]["object"]["customer"] = value
        else:
            evt[key] = value
    return json.dumps(evt)


@pytest.mark.parametrize("body", [
    _signed_odd(created=10**20),                        # out of any datetime's range
    _signed_odd(created=-10**15),
    _signed_odd(created=int(time.time()) + 30 * 86400),  # a month ahead: not Stripe's clock
    _signed_odd(id="evt_" + "x" * 300),                 # longer than any Stripe id
    _signed_odd(type="customer.subscription.updated" * 10),
    _signed_odd(api_version="2025-03-31." + "x" * 60),
    _signed_odd(api_version={"not": "a string"}),
    _signed_odd(id="evt_\u0000nul"),
    _signed_odd(customer=12345),
    _signed_odd().replace('"livemode": false', '"livemode": NaN'),
    '{"a": ' * 100_000 + "1" + "}" * 100_000,          # nested past the parser's depth
])
def test_a_signed_body_that_is_not_stripes_shape_gets_400_and_nothing_is_stored(app, client, body):
    resp = post_event(client, body)
    assert resp.status_code == 400, resp.get_data(as_text=True)[:200]
    assert resp.json["error"]["code"] == "invalid_event"
    assert stored(app) == 0
