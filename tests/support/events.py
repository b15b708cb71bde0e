"""Signed Stripe webhook deliveries, built like Stripe's Event object
(https://docs.stripe.com/api/events/object) and signed with the real library."""
from __future__ import annotations

import itertools
import json
import time
from typing import Any

import stripe

SECRET = "whsec_test_secret"
_seq = itertools.count(1)


def event(type_: str, obj: dict[str, Any], *, id: str | None = None, created: int | None = None,
          api_version: str = "2025-03-31.basil") -> dict[str, Any]:
    return {
        "id": id or f"evt_{next(_seq):010d}T",
        "object": "event",
        "api_version": api_version,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def sign(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def post_event(client, evt: dict[str, Any] | str, secret: str = SECRET, timestamp: int | None = None, *,
               apply: bool = True):
    """Deliver a signed event, then let the worker apply what is due (as `worker --once`
    would, Stripe queue only: DAWNS deliveries stay queued unless a test runs them)."""
    payload = evt if isinstance(evt, str) else json.dumps(evt)
    resp = client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": sign(payload, secret, timestamp)})
    if apply and resp.status_code == 200:
        apply_events(client.application)
    return resp


def apply_events(app):
    """The worker's Stripe pass: every due event, in Stripe's order."""
    from service.billing import queue
    from service.billing.runtime import get_gateway
    from service.db import close_session, get_session

    with app.app_context():
        try:
            return queue.run_due(get_session(), get_gateway())
        finally:
            close_session()


def run_worker(app):
    """A whole `worker --once`: Stripe events, DAWNS deliveries, exports."""
    from service.worker import run_until_idle

    with app.app_context():
        return run_until_idle()


def outcome_of(app, event_id: str) -> str | None:
    from sqlalchemy import select

    from service.db import get_session
    from service.models import StripeEvent

    with app.app_context():
        return get_session().scalar(select(StripeEvent.outcome).where(StripeEvent.stripe_id == event_id))
