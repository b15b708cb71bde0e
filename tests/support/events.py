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


def post_event(client, evt: dict[str, Any] | str, secret: str = SECRET, timestamp: int | None = None):
    payload = evt if isinstance(evt, str) else json.dumps(evt)
    return client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": sign(payload, secret, timestamp)})
