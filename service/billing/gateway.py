"""The billing gateway: the only way the service talks to Stripe.

`BillingGateway` is the Protocol every caller is typed against; `StripeGateway` speaks Stripe's
API through the official client (or any server that speaks it, via STRIPE_API_BASE). The
embedded default's twin, for localstripe, lives in `service/demo/gateway.py`; `create_app`
picks one. Stripe's errors become `BillingError`, whose `message` is safe to show a reader.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

import stripe

from .. import metrics
from ..i18n import english, lazy_gettext as _l
from .transport import Urllib3Client

log = logging.getLogger("service.billing")


class BillingError(Exception):
    """Stripe could not do what we asked. `message` is safe to show a reader (a lazy text: it
    reads in the language of whoever is shown it)."""

    def __init__(self, message: str, *, retryable: bool = True, detail: str | None = None) -> None:
        # What Stripe said, for logs and operators (never shown to readers), in English.
        self.detail = detail or english(message)
        super().__init__(self.detail)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Fetched:
    """A Stripe object and the moment (Stripe's clock) it was read."""

    obj: dict[str, Any]
    as_of: datetime


@dataclass(frozen=True)
class LineItem:
    """What a subscription charges for: a catalogue Price, or an amount of the membership
    product ("give more", https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-line_items-price_data)."""

    price_id: str | None = None
    amount: int | None = None
    currency: str = "usd"
    interval: str | None = None
    product_id: str | None = None
    quantity: int = 1

    def params(self) -> dict[str, Any]:
        if self.price_id:
            return {"price": self.price_id, "quantity": self.quantity}
        if not (self.amount and self.interval and self.product_id):
            raise ValueError("a line item needs a price, or an amount, an interval and a product")
        return {"price_data": {"product": self.product_id, "unit_amount": self.amount, "currency": self.currency,
                               "recurring": {"interval": self.interval}}, "quantity": self.quantity}


@dataclass(frozen=True)
class CheckoutRequest:
    member_id: int
    email: str
    customer_id: str | None
    line: LineItem
    success_url: str
    cancel_url: str
    metadata: dict[str, str] = field(default_factory=dict)
    locale: str | None = None
    # Seats: the buyer may change the quantity on Checkout's page, within (minimum, maximum).
    adjustable_quantity: tuple[int, int] | None = None


class BillingGateway(Protocol):
    def create_checkout_session(self, req: CheckoutRequest) -> dict[str, Any]: ...
    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]: ...
    def expire_checkout_session(self, session_id: str) -> dict[str, Any]: ...
    def retrieve_subscription(self, subscription_id: str) -> Fetched: ...
    def list_subscriptions(self, starting_after: str | None = None, limit: int = 100,
                           customer: str | None = None) -> Fetched: ...
    def update_subscription_price(self, subscription_id: str, item_id: str, line: LineItem) -> dict[str, Any]: ...
    def cancel_subscription(self, subscription_id: str, at_period_end: bool) -> dict[str, Any]: ...
    def create_subscription(self, customer_id: str, line: LineItem, metadata: dict[str, str]) -> dict[str, Any]: ...
    def create_invoiced_subscription(self, customer_id: str, line: LineItem, days_until_due: int,
                                     metadata: dict[str, str]) -> dict[str, Any]: ...
    def update_subscription_quantity(self, subscription_id: str, item_id: str, quantity: int) -> dict[str, Any]: ...
    def retrieve_charge(self, charge_id: str) -> dict[str, Any]: ...
    def retrieve_customer(self, customer_id: str) -> dict[str, Any]: ...
    def find_customers(self, email: str, limit: int = 10) -> list[dict[str, Any]]: ...
    def create_customer(self, email: str, metadata: dict[str, str], name: str | None = None) -> dict[str, Any]: ...
    def update_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]: ...
    def save_card(self, customer_id: str, card: dict[str, Any]) -> str: ...
    def create_portal_session(self, customer_id: str, return_url: str, locale: str | None = None) -> dict[str, Any]: ...
    def retrieve_price(self, price_id: str) -> dict[str, Any]: ...
    def create_price(self, *, product_id: str, amount: int, currency: str, interval: str) -> dict[str, Any]: ...


def translate(exc: stripe.StripeError) -> BillingError:
    # Error classes: https://docs.stripe.com/api/errors/handling
    detail = f"{type(exc).__name__}: {exc.user_message or exc}"
    metrics.stripe_error(_error_kind(exc))
    if isinstance(exc, stripe.CardError):
        return BillingError(exc.user_message or _l("Your card was declined."), retryable=False, detail=detail)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        # Our configuration is wrong (e.g. a rotated key): fixable, so callers should retry later.
        log.error("Stripe rejected our API key: %s", detail)
        return BillingError(_l("Payments are temporarily unavailable. Please try again later."),
                            retryable=True, detail=f"Stripe rejected the API key ({detail})")
    if isinstance(exc, stripe.InvalidRequestError):
        log.error("Stripe rejected a request: %s", detail)
        # Only a missing object is final (Stripe says `resource_missing`; a server without codes,
        # such as localstripe, says 404); other refusals may be ours to fix, so retry.
        missing = exc.code == "resource_missing" or exc.http_status == 404
        return BillingError(_l("We could not start the payment. Please try again later."),
                            retryable=not missing, detail=detail)
    if isinstance(exc, stripe.RateLimitError):
        return BillingError(_l("Payments are busy right now. Please try again in a minute."), detail=detail)
    log.error("Stripe unavailable: %s", detail)
    return BillingError(_l("We could not reach our payment provider. Please try again in a few minutes."),
                        detail=detail)


def _error_kind(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.CardError):
        return "card"
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return "authentication"
    if isinstance(exc, stripe.InvalidRequestError):
        return "not_found" if exc.code == "resource_missing" or exc.http_status == 404 else "invalid_request"
    if isinstance(exc, stripe.RateLimitError):
        return "rate_limited"
    return "unavailable"


class StripeGateway:
    def __init__(self, *, api_key: str, api_version: str, api_base: str | None = None, timeout: float = 10.0,
                 max_network_retries: int = 2) -> None:
        base_addresses: dict[str, str] = {}
        if api_base:
            base_addresses = {"api": api_base.rstrip("/"), "files": api_base.rstrip("/")}
        self.client = stripe.StripeClient(
            api_key or "sk_unset",
            stripe_version=api_version,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=max_network_retries,
            http_client=Urllib3Client(api_base or "https://api.stripe.com", timeout),
        )

    def _call(self, fn, *args, **kwargs) -> dict[str, Any]:
        return self._fetch(fn, *args, **kwargs).obj

    def _fetch(self, fn, *args, **kwargs) -> Fetched:
        try:
            result = fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        return Fetched(result.to_dict(), _server_time(result))

    def create_checkout_session(self, req: CheckoutRequest) -> dict[str, Any]:
        # Subscription-mode Checkout: https://docs.stripe.com/api/checkout/sessions/create
        metadata = {"member_id": str(req.member_id), **req.metadata}
        line = req.line.params()
        if req.adjustable_quantity:
            # https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-line_items-adjustable_quantity
            low, high = req.adjustable_quantity
            line["adjustable_quantity"] = {"enabled": True, "minimum": low, "maximum": high}
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [line],
            "client_reference_id": str(req.member_id),
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": req.success_url,
            "cancel_url": req.cancel_url,
        }
        if req.locale:
            params["locale"] = req.locale
        if req.customer_id:
            params["customer"] = req.customer_id
        else:
            params["customer_email"] = req.email
        return self._call(self.client.v1.checkout.sessions.create, params)

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.checkout.sessions.retrieve, session_id)

    def retrieve_subscription(self, subscription_id: str) -> Fetched:
        # The worker's hottest Stripe call (every invoice event reads its subscription): the
        # library's raw request gives the parsed body without building StripeObjects.
        # https://docs.stripe.com/api/subscriptions/retrieve
        try:
            response = self.client.raw_request("get", f"/v1/subscriptions/{quote(subscription_id, safe='')}")
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        return Fetched(response.data, _date_of(response.headers))

    def list_subscriptions(self, starting_after: str | None = None, limit: int = 100,
                           customer: str | None = None) -> Fetched:
        # status=all includes canceled ones: https://docs.stripe.com/api/subscriptions/list
        params: dict[str, Any] = {"status": "all", "limit": limit}
        if starting_after:
            params["starting_after"] = starting_after
        if customer:
            params["customer"] = customer
        return self._fetch(self.client.v1.subscriptions.list, params)

    def update_subscription_price(self, subscription_id: str, item_id: str, line: LineItem) -> dict[str, Any]:
        # Swap the item's price, prorated: https://docs.stripe.com/billing/subscriptions/change-price
        # pending_if_incomplete: the change takes effect only once its invoice is paid; an unpaid
        # switch (monthly to yearly bills at once) must not buy a fresh period of access
        # (https://docs.stripe.com/billing/subscriptions/pending-updates).
        item = {"id": item_id, **line.params()}
        return self._call(self.client.v1.subscriptions.update, subscription_id,
                          {"items": [item], "proration_behavior": "create_prorations",
                           "payment_behavior": "pending_if_incomplete"})

    def cancel_subscription(self, subscription_id: str, at_period_end: bool) -> dict[str, Any]:
        if at_period_end:
            return self._call(self.client.v1.subscriptions.update, subscription_id, {"cancel_at_period_end": True})
        return self._call(self.client.v1.subscriptions.cancel, subscription_id)

    def create_subscription(self, customer_id: str, line: LineItem, metadata: dict[str, str]) -> dict[str, Any]:
        return self._call(self.client.v1.subscriptions.create,
                          {"customer": customer_id, "items": [line.params()], "metadata": metadata})

    def retrieve_charge(self, charge_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.charges.retrieve, charge_id)

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.customers.retrieve, customer_id)

    def find_customers(self, email: str, limit: int = 10) -> list[dict[str, Any]]:
        """Customers whose email is exactly `email` (Stripe compares it case-sensitively):
        https://docs.stripe.com/api/customers/list#list_customers-email"""
        return self._call(self.client.v1.customers.list, {"email": email, "limit": limit}).get("data") or []

    def create_customer(self, email: str, metadata: dict[str, str], name: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"email": email, "metadata": metadata}
        if name:
            params["name"] = name
        return self._call(self.client.v1.customers.create, params)

    def create_invoiced_subscription(self, customer_id: str, line: LineItem, days_until_due: int,
                                     metadata: dict[str, str]) -> dict[str, Any]:
        # Stripe emails each invoice, payable within `days_until_due`:
        # https://docs.stripe.com/api/subscriptions/create#create_subscription-collection_method
        return self._call(self.client.v1.subscriptions.create, {
            "customer": customer_id, "items": [line.params()], "collection_method": "send_invoice",
            "days_until_due": days_until_due, "metadata": metadata})

    def update_subscription_quantity(self, subscription_id: str, item_id: str, quantity: int) -> dict[str, Any]:
        # Seats: the item's quantity, prorated (https://docs.stripe.com/billing/subscriptions/quantities)
        return self._call(self.client.v1.subscriptions.update, subscription_id, {
            "items": [{"id": item_id, "quantity": quantity}], "proration_behavior": "create_prorations"})

    def update_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.client.v1.customers.update, customer_id, params)

    def save_card(self, customer_id: str, card: dict[str, Any]) -> str:
        """Attach a card as the customer's default payment method (what Checkout does)."""
        pm = self._call(self.client.v1.payment_methods.create, {"type": "card", "card": card})
        self._call(self.client.v1.payment_methods.attach, pm["id"], {"customer": customer_id})
        self.update_customer(customer_id, {"invoice_settings": {"default_payment_method": pm["id"]}})
        return pm["id"]

    def expire_checkout_session(self, session_id: str) -> dict[str, Any]:
        # An open Checkout Session can be paid until it expires: https://docs.stripe.com/api/checkout/sessions/expire
        return self._call(self.client.v1.checkout.sessions.expire, session_id)

    def create_portal_session(self, customer_id: str, return_url: str, locale: str | None = None) -> dict[str, Any]:
        # https://docs.stripe.com/api/customer_portal/sessions/create (`locale`: the Portal's language)
        params = {"customer": customer_id, "return_url": return_url}
        if locale:
            params["locale"] = locale
        return self._call(self.client.v1.billing_portal.sessions.create, params)

    def retrieve_price(self, price_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.prices.retrieve, price_id)

    def create_price(self, *, product_id: str, amount: int, currency: str, interval: str) -> dict[str, Any]:
        # https://docs.stripe.com/api/prices/create
        return self._call(self.client.v1.prices.create, {"product": product_id, "unit_amount": amount,
                                                         "currency": currency, "recurring": {"interval": interval}})


def _server_time(result: Any) -> datetime:
    """Stripe's own clock for this read (the `Date` header), to compare with event `created`."""
    response = getattr(result, "last_response", None)
    return _date_of(response.headers if response is not None else {})


def _date_of(headers: Any) -> datetime:
    header = headers.get("Date")
    if header:
        try:
            return parsedate_to_datetime(header).astimezone(timezone.utc)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc).replace(microsecond=0)
