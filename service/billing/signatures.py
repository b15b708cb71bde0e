"""Is this webhook delivery a genuine Stripe event? (https://docs.stripe.com/webhooks#verify-official-libraries)"""
from __future__ import annotations

import json
from typing import Any

import stripe


class InvalidEvent(Exception):
    """A webhook delivery that is not a genuine Stripe event. `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_event(payload: bytes, signature: str | None, secret: str, tolerance: int = 300) -> dict[str, Any]:
    """Check the Stripe-Signature header and return the event as a plain dict.

    The official library's own check (`WebhookSignature.verify_header`: the HMAC-SHA256 of
    "timestamp.body" with the signing secret, and a 300 s tolerance; it is what
    `Webhook.construct_event` runs first), without building Stripe objects: the body is parsed
    once, here (https://docs.stripe.com/webhooks#verify-official-libraries).
    """
    if not signature:
        raise InvalidEvent("missing Stripe-Signature header")
    if not secret:
        raise InvalidEvent("STRIPE_WEBHOOK_SECRET is not configured")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("body is not UTF-8") from None
    try:
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise InvalidEvent(f"bad signature: {exc.user_message or 'verification failed'}") from None
    try:
        event = json.loads(text)
    except ValueError:
        raise InvalidEvent("body is not JSON") from None
    if not (
        isinstance(event, dict)
        and event.get("object") == "event"
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("created"), int)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise InvalidEvent("body is not a Stripe event")
    return event
