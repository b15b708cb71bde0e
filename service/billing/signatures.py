"""Is this webhook delivery a genuine Stripe event? (https://docs.stripe.com/webhooks#verify-official-libraries)"""
from __future__ import annotations

import json
import re
import time
from typing import Any

import stripe


# What the event table holds (Stripe's ids are short ASCII: evt_..., cus_..., sub_...).
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_TYPE = re.compile(r"[a-z0-9_.]{1,100}")
_VERSION = re.compile(r"[A-Za-z0-9_.-]{1,40}")
EARLIEST = 1_262_304_000  # 2010-01-01: Stripe existed
FUTURE_SKEW = 3600  # a clock ahead by more than an hour is not Stripe's


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON does not


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
    if "\\u0000" in text:
        raise InvalidEvent("body holds a NUL character")  # no database stores it in text
    try:
        event = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
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
    _check_fields(event)
    signed_at = _signed_at(signature)
    if signed_at is not None and event["created"] > signed_at + SIGNED_SKEW:
        # Stripe signs a delivery after it made the event (a retry, long after): an event "made"
        # later than its own signature would pin its subscription's snapshot into the future.
        raise InvalidEvent("event `created` is later than its signature")
    return event


SIGNED_SKEW = 300  # seconds an event's `created` may run ahead of its signature's `t`


def _signed_at(header: str) -> int | None:
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return None


def _ok(pattern: re.Pattern[str], value: Any, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _check_fields(event: dict[str, Any]) -> None:
    """What the queue stores and orders by has Stripe's shape, so a signed but odd body gets a
    clear 400 (never a 500, nor a 503 that Stripe would retry for days)."""
    obj = event["data"]["object"]
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    created = event["created"]
    if not (_ok(_ID, event["id"]) and _ok(_TYPE, event["type"])
            and _ok(_VERSION, event.get("api_version"), optional=True)
            and _ok(_ID, obj.get("id"), optional=True) and _ok(_ID, customer, optional=True)):
        raise InvalidEvent("event fields are not Stripe's (id, type, api_version, object id or customer)")
    if not (EARLIEST <= created <= time.time() + FUTURE_SKEW):
        raise InvalidEvent("event `created` is not a plausible time")
