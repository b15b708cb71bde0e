"""The billing gateway: the only module that calls Stripe.

`StripeGateway` talks to Stripe (or to any server that speaks its API, via STRIPE_API_BASE).
`DemoStripeGateway` has the same interface for the embedded default: Checkout and the Customer
Portal do not exist in localstripe, so those two become demo pages of this service, and every
other call goes to localstripe through the real client. `create_app` picks one.
"""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import stripe
from itsdangerous import BadSignature, URLSafeSerializer

log = logging.getLogger("service.billing")


class BillingError(Exception):
    """Stripe could not do what we asked. `message` is safe to show a reader."""

    def __init__(self, message: str, *, retryable: bool = True, detail: str | None = None) -> None:
        super().__init__(detail or message)
        self.message = message
        self.retryable = retryable
        # What Stripe said, for logs and operators (never shown to readers).
        self.detail = detail or message


@dataclass(frozen=True)
class Fetched:
    """A Stripe object and the moment (Stripe's clock) it was read."""

    obj: dict[str, Any]
    as_of: datetime


@dataclass(frozen=True)
class CheckoutRequest:
    member_id: int
    email: str
    customer_id: str | None
    success_url: str
    cancel_url: str


class BillingGateway(Protocol):
    def create_checkout_session(self, req: CheckoutRequest) -> dict[str, Any]: ...
    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]: ...
    def retrieve_subscription(self, subscription_id: str) -> Fetched: ...
    def retrieve_charge(self, charge_id: str) -> dict[str, Any]: ...
    def retrieve_customer(self, customer_id: str) -> dict[str, Any]: ...
    def list_subscriptions(self, starting_after: str | None = None, limit: int = 100) -> Fetched: ...
    def create_portal_session(self, customer_id: str, return_url: str) -> dict[str, Any]: ...


def _translate(exc: stripe.StripeError) -> BillingError:
    # Error classes: https://docs.stripe.com/api/errors/handling
    detail = f"{type(exc).__name__}: {exc.user_message or exc}"
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        # Our configuration is wrong (e.g. a rotated key): fixable, so callers should retry later.
        log.error("Stripe rejected our API key: %s", detail)
        return BillingError("Payments are temporarily unavailable. Please try again later.",
                            retryable=True, detail=f"Stripe rejected the API key ({detail})")
    if isinstance(exc, stripe.InvalidRequestError):
        log.error("Stripe rejected a request: %s", detail)
        # Only a missing object is final; other refusals may be ours to fix, so retry.
        return BillingError("We could not start the payment. Please try again later.",
                            retryable=exc.code != "resource_missing", detail=detail)
    if isinstance(exc, stripe.RateLimitError):
        return BillingError("Payments are busy right now. Please try again in a minute.", detail=detail)
    log.error("Stripe unavailable: %s", detail)
    return BillingError("We could not reach our payment provider. Please try again in a few minutes.",
                        detail=detail)


class StripeGateway:
    def __init__(
        self,
        *,
        api_key: str,
        price_id: str,
        api_version: str,
        api_base: str | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 2,
    ) -> None:
        self.price_id = price_id
        base_addresses: dict[str, str] = {}
        if api_base:
            base_addresses = {"api": api_base.rstrip("/"), "files": api_base.rstrip("/")}
        self.client = stripe.StripeClient(
            api_key or "sk_unset",
            stripe_version=api_version,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def _call(self, fn, *args, **kwargs) -> dict[str, Any]:
        return self._fetch(fn, *args, **kwargs).obj

    def _fetch(self, fn, *args, **kwargs) -> Fetched:
        try:
            result = fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return Fetched(result.to_dict(), _server_time(result))

    def create_checkout_session(self, req: CheckoutRequest) -> dict[str, Any]:
        # Subscription-mode Checkout: https://docs.stripe.com/api/checkout/sessions/create
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": self.price_id, "quantity": 1}],
            "client_reference_id": str(req.member_id),
            "metadata": {"member_id": str(req.member_id)},
            "subscription_data": {"metadata": {"member_id": str(req.member_id)}},
            "success_url": req.success_url,
            "cancel_url": req.cancel_url,
        }
        if req.customer_id:
            params["customer"] = req.customer_id
        else:
            params["customer_email"] = req.email
        return self._call(self.client.v1.checkout.sessions.create, params)

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.checkout.sessions.retrieve, session_id)

    def retrieve_subscription(self, subscription_id: str) -> Fetched:
        return self._fetch(self.client.v1.subscriptions.retrieve, subscription_id)

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.charges.retrieve, charge_id)

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.customers.retrieve, customer_id)

    def list_subscriptions(self, starting_after: str | None = None, limit: int = 100) -> Fetched:
        # status=all includes canceled ones: https://docs.stripe.com/api/subscriptions/list
        params: dict[str, Any] = {"status": "all", "limit": limit}
        if starting_after:
            params["starting_after"] = starting_after
        return self._fetch(self.client.v1.subscriptions.list, params)

    def create_portal_session(self, customer_id: str, return_url: str) -> dict[str, Any]:
        # https://docs.stripe.com/api/customer_portal/sessions/create
        return self._call(
            self.client.v1.billing_portal.sessions.create,
            {"customer": customer_id, "return_url": return_url},
        )

    # Used by the demo pages and by the localstripe integration tests only.
    def raw(self) -> stripe.StripeClient:
        return self.client


DEMO_SESSION_PREFIX = "cs_demo_"


class DemoStripeGateway(StripeGateway):
    """localstripe has no Checkout and no Portal: those become labelled demo pages here.

    A demo checkout session id is signed and self-contained (member, customer, a nonce), so no
    table is needed for a stand-in, and it never changes: the service records it as its own
    like any Checkout Session. Its customer is made in localstripe when the session is; the
    subscription the demo page makes carries the nonce, which is how a retrieve finds it.
    """

    def __init__(self, *, secret_key: str, public_base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.public_base_url = public_base_url.rstrip("/")
        self._signer = URLSafeSerializer(secret_key, salt="demo-checkout")

    def encode_session(self, data: dict[str, Any]) -> str:
        return DEMO_SESSION_PREFIX + self._signer.dumps(data)

    def decode_session(self, session_id: str) -> dict[str, Any]:
        if not session_id.startswith(DEMO_SESSION_PREFIX):
            raise BillingError("Unknown checkout session.", retryable=False)
        try:
            return self._signer.loads(session_id[len(DEMO_SESSION_PREFIX):])
        except BadSignature:
            raise BillingError("Unknown checkout session.", retryable=False) from None

    def create_checkout_session(self, req: CheckoutRequest) -> dict[str, Any]:
        nonce = secrets.token_hex(6)
        # What Checkout would hold lives on the localstripe customer, so the id stays short.
        details = {"member_id": str(req.member_id), "demo_success_url": req.success_url,
                   "demo_cancel_url": req.cancel_url}
        if req.customer_id:
            customer = self._call(self.client.v1.customers.update, req.customer_id, {"metadata": details})["id"]
        else:
            customer = self._call(self.client.v1.customers.create, {"email": req.email, "metadata": details})["id"]
        session_id = self.encode_session({"c": customer, "n": nonce})
        return {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "url": f"{self.public_base_url}/demo/checkout/{session_id}",
        }

    def demo_session(self, session_id: str) -> dict[str, Any]:
        """The demo session's details: its customer, nonce, email, member and return URLs."""
        token = self.decode_session(session_id)
        customer = self._call(self.client.v1.customers.retrieve, token["c"])
        metadata = customer.get("metadata") or {}
        return {"customer": token["c"], "nonce": token["n"], "email": customer.get("email"),
                "member_id": metadata.get("member_id"), "success_url": metadata.get("demo_success_url", ""),
                "cancel_url": metadata.get("demo_cancel_url", "")}

    def demo_subscription(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The subscription the demo page made for this session, if it went through."""
        for sub in self.customer_subscriptions(data["customer"]):
            if (sub.get("metadata") or {}).get("demo_checkout") == data["nonce"] and sub["status"] != "incomplete":
                return sub
        return None

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        data = self.demo_session(session_id)
        subscription = self.demo_subscription(data)
        complete = subscription is not None
        return {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "client_reference_id": data["member_id"],
            "customer": data["customer"],
            "customer_email": data["email"],
            "subscription": subscription["id"] if subscription else None,
            "status": "complete" if complete else "open",
            "payment_status": "paid" if complete else "unpaid",
            "metadata": {"member_id": data["member_id"]},
        }

    def create_portal_session(self, customer_id: str, return_url: str) -> dict[str, Any]:
        token = self._signer.dumps({"customer": customer_id, "return_url": return_url})
        return {"object": "billing_portal.session", "url": f"{self.public_base_url}/demo/portal/{token}"}

    def customer_subscriptions(self, customer_id: str) -> list[dict[str, Any]]:
        return self._call(self.client.v1.subscriptions.list, {"customer": customer_id, "status": "all"})["data"]

    def decode_portal(self, token: str) -> dict[str, Any]:
        try:
            return self._signer.loads(token)
        except BadSignature:
            raise BillingError("Unknown portal session.", retryable=False) from None


def _server_time(result: Any) -> datetime:
    """Stripe's own clock for this read (the `Date` header), to compare with event `created`."""
    response = getattr(result, "last_response", None)
    header = response.headers.get("Date") if response is not None else None
    if header:
        try:
            return parsedate_to_datetime(header).astimezone(timezone.utc)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc).replace(microsecond=0)


class InvalidEvent(Exception):
    """A webhook delivery that is not a genuine Stripe event. `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_event(payload: bytes, signature: str | None, secret: str, tolerance: int = 300) -> dict[str, Any]:
    """Check the Stripe-Signature header and return the event as a plain dict.

    https://docs.stripe.com/webhooks#verify-official-libraries (300 s tolerance by default).
    """
    if not signature:
        raise InvalidEvent("missing Stripe-Signature header")
    if not secret:
        raise InvalidEvent("STRIPE_WEBHOOK_SECRET is not configured")
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise InvalidEvent(f"bad signature: {exc.user_message or 'verification failed'}") from None
    except ValueError:
        raise InvalidEvent("body is not JSON") from None
    except (AttributeError, TypeError, KeyError):
        raise InvalidEvent("body is not a Stripe event") from None  # signed, but e.g. a JSON list
    try:
        event = json.loads(payload)
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


def build_gateway(config: dict[str, Any]) -> StripeGateway:
    common = dict(
        api_key=config["STRIPE_SECRET_KEY"],
        price_id=config["STRIPE_PRICE_ID"],
        api_version=config["STRIPE_API_VERSION"],
        api_base=config["STRIPE_API_BASE"] or None,
        timeout=config["STRIPE_TIMEOUT"],
        max_network_retries=config["STRIPE_MAX_NETWORK_RETRIES"],
    )
    if config["DEMO_CHECKOUT"]:
        return DemoStripeGateway(
            secret_key=config["SECRET_KEY"], public_base_url=config["PUBLIC_BASE_URL"], **common
        )
    return StripeGateway(**common)


class DemoCardDeclined(BillingError):
    def __init__(self, message: str, session_id: str) -> None:
        super().__init__(message, retryable=False)
        self.session_id = session_id


def demo_subscribe(gateway: DemoStripeGateway, session_id: str, card: dict[str, Any]) -> None:
    """Do in localstripe what Stripe Checkout does: card, default payment method, subscription.

    Raises BillingError when the card is refused, with Stripe's own message."""
    data = gateway.demo_session(session_id)
    if gateway.demo_subscription(data) is not None:
        return  # paid already (a second click, or the back button)
    client = gateway.client
    try:
        customer_id = data["customer"]
        pm = client.v1.payment_methods.create({"type": "card", "card": card})
        client.v1.payment_methods.attach(pm.id, {"customer": customer_id})
        client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": pm.id}})
        # localstripe speaks an API version from before Prices: the $5/month plan is a Plan.
        sub = client.v1.subscriptions.create(
            {
                "customer": customer_id,
                "items": [{"plan": gateway.price_id}],
                "metadata": {"member_id": str(data["member_id"]), "demo_checkout": data["nonce"]},
            }
        )
    except stripe.CardError as exc:
        raise BillingError(exc.user_message or "Your card was declined.", retryable=False) from exc
    except stripe.StripeError as exc:
        raise _translate(exc) from exc
    if sub.status == "incomplete":
        # Hosted Checkout would not complete with a refused card: ask for another one.
        raise DemoCardDeclined("Your card was declined. Try another card.", session_id)


def demo_cancel(gateway: DemoStripeGateway, subscription_id: str, at_period_end: bool) -> None:
    try:
        if at_period_end:
            gateway.client.v1.subscriptions.update(subscription_id, {"cancel_at_period_end": True})
        else:
            gateway.client.v1.subscriptions.cancel(subscription_id)
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def create_plan(api_base: str, api_key: str, plan_id: str, *, amount_cents: int, currency: str, interval: str) -> None:
    """Create the membership Plan in a stand-in (localstripe predates Prices)."""
    client = stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=0)  # type: ignore[arg-type]
    try:
        client.v1.plans.retrieve(plan_id)
        return  # already there: provisioning is repeatable
    except stripe.InvalidRequestError:
        pass
    try:
        client.v1.plans.create(
            {
                "id": plan_id,
                "amount": amount_cents,
                "currency": currency,
                "interval": interval,
                "product": {"name": "DAWNS membership"},
            }
        )
    except stripe.StripeError as exc:
        raise _translate(exc) from exc
