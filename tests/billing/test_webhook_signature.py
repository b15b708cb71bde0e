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
