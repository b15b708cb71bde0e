"""The embedded default's twin of the billing gateway, for localstripe.

localstripe (a fake Stripe server) speaks an API from before Prices and has no Checkout and no
Customer Portal. So this twin keeps the `BillingGateway` Protocol and:
- turns Checkout and the Portal into labelled demo pages of this service;
- reads and makes Prices as Plans (a "give more" amount becomes a Plan of the membership
  product);
- leaves everything else to the real client against localstripe.

A demo checkout session id is signed, timed (like a Checkout Session, it expires after 24 hours)
and short: it names the localstripe customer, a nonce, the plan and the quantity; the member
and the return URLs are kept on that customer's metadata, and the subscription the demo page
makes carries the nonce. A portal link lasts an hour.
"""
from __future__ import annotations

import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..billing.gateway import BillingError, CheckoutRequest, LineItem, StripeGateway
from ..i18n import lazy_gettext as _l

SESSION_PREFIX = "cs_demo_"
SESSION_MAX_AGE = 24 * 3600
PORTAL_MAX_AGE = 3600


class DemoGateway(StripeGateway):
    def __init__(self, *, secret_key: str, public_base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.public_base_url = public_base_url.rstrip("/")
        self._signer = URLSafeTimedSerializer(secret_key, salt="demo-checkout")
        self._portal_signer = URLSafeTimedSerializer(secret_key, salt="demo-portal")

    # --- Prices are Plans in localstripe ------------------------------------------------------

    def retrieve_price(self, price_id: str) -> dict[str, Any]:
        plan = self._call(self.client.v1.plans.retrieve, price_id)
        return {"id": plan["id"], "object": "price", "product": plan.get("product"), "unit_amount": plan["amount"],
                "currency": plan["currency"], "recurring": {"interval": plan["interval"]}}

    def create_price(self, *, product_id: str, amount: int, currency: str, interval: str) -> dict[str, Any]:
        plan_id = f"plan_{product_id}_{interval}_{amount}_{currency}"
        try:
            return self.retrieve_price(plan_id)  # the same amount again: the same Plan
        except BillingError:
            pass
        self._call(self.client.v1.plans.create, {"id": plan_id, "amount": amount, "currency": currency,
                                                 "interval": interval, "product": product_id})
        return self.retrieve_price(plan_id)

    def _plan_for(self, line: LineItem) -> str:
        if line.price_id:
            return line.price_id
        assert line.amount and line.interval and line.product_id
        return self.create_price(product_id=line.product_id, amount=line.amount, currency=line.currency,
                                 interval=line.interval)["id"]

    def create_subscription(self, customer_id: str, line: LineItem, metadata: dict[str, str]) -> dict[str, Any]:
        return self._call(self.client.v1.subscriptions.create, {
            "customer": customer_id, "items": [{"plan": self._plan_for(line), "quantity": line.quantity}],
            "metadata": metadata})

    def create_invoiced_subscription(self, customer_id: str, line: LineItem, days_until_due: int,
                                     metadata: dict[str, str]) -> dict[str, Any]:
        # localstripe knows neither `collection_method` nor invoices sent by email, and charges the
        # first invoice at once: the demo starts the subscription with a Stripe trial as long as
        # the payment term, so nothing is charged; the staff-set trial is what entitles the seats
        # until the first invoice is paid, as for a real organisation.
        return self._call(self.client.v1.subscriptions.create, {
            "customer": customer_id, "items": [{"plan": self._plan_for(line), "quantity": line.quantity}],
            "trial_period_days": days_until_due, "metadata": metadata})

    def update_subscription_quantity(self, subscription_id: str, item_id: str, quantity: int) -> dict[str, Any]:
        return self._call(self.client.v1.subscriptions.update, subscription_id, {
            "items": [{"id": item_id, "quantity": quantity}]})

    def update_subscription_price(self, subscription_id: str, item_id: str, line: LineItem) -> dict[str, Any]:
        return self._call(self.client.v1.subscriptions.update, subscription_id, {
            "items": [{"id": item_id, "plan": self._plan_for(line), "quantity": line.quantity}],
            "proration_behavior": "create_prorations"})

    # --- Checkout: a demo page ----------------------------------------------------------------

    def encode_session(self, data: dict[str, Any]) -> str:
        return SESSION_PREFIX + self._signer.dumps(data)

    def decode_session(self, session_id: str) -> dict[str, Any]:
        if not session_id.startswith(SESSION_PREFIX):
            raise BillingError(_l("Unknown checkout session."), retryable=False)
        try:
            return self._signer.loads(session_id[len(SESSION_PREFIX):], max_age=SESSION_MAX_AGE)
        except BadSignature:  # also when expired (SignatureExpired is a BadSignature)
            raise BillingError(_l("Unknown or expired checkout session."), retryable=False) from None

    def create_checkout_session(self, req: CheckoutRequest) -> dict[str, Any]:
        nonce = secrets.token_hex(6)
        details = {"member_id": str(req.member_id), "demo_success_url": req.success_url,
                   "demo_cancel_url": req.cancel_url, **req.metadata}
        if req.customer_id:
            customer = self.update_customer(req.customer_id, {"metadata": details})["id"]
        else:
            customer = self.create_customer(req.email, details)["id"]
        session_id = self.encode_session({"c": customer, "n": nonce, "p": self._plan_for(req.line),
                                          "q": req.line.quantity})
        return {"id": session_id, "object": "checkout.session", "mode": "subscription", "status": "open",
                "url": f"{self.public_base_url}/demo/checkout/{session_id}"}

    def demo_session(self, session_id: str) -> dict[str, Any]:
        """The demo session's details: its customer, nonce, email, member, plan and URLs."""
        token = self.decode_session(session_id)
        customer = self.retrieve_customer(token["c"])
        metadata = customer.get("metadata") or {}
        return {"customer": token["c"], "nonce": token["n"], "email": customer.get("email"),
                "member_id": metadata.get("member_id"), "plan": self.retrieve_price(token["p"]),
                "organisation": metadata.get("organisation"),
                "quantity": int(token.get("q") or 1),
                "expired": token["n"] in (metadata.get("demo_expired") or "").split(","),
                "success_url": metadata.get("demo_success_url", ""), "cancel_url": metadata.get("demo_cancel_url", "")}

    def expire_checkout_session(self, session_id: str) -> dict[str, Any]:
        data = self.demo_session(session_id)
        expired = [n for n in (self.retrieve_customer(data["customer"]).get("metadata") or {})
                   .get("demo_expired", "").split(",") if n]
        self.update_customer(data["customer"], {"metadata": {"demo_expired": ",".join([*expired, data["nonce"]][-20:])}})
        return {"id": session_id, "object": "checkout.session", "status": "expired"}

    def demo_subscription(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The subscription the demo page made for this session, if it went through."""
        for sub in self.customer_subscriptions(data["customer"]):
            if (sub.get("metadata") or {}).get("demo_checkout") == data["nonce"] and sub["status"] != "incomplete":
                return sub
        return None

    def customer_subscriptions(self, customer_id: str) -> list[dict[str, Any]]:
        return self.list_subscriptions(customer=customer_id).obj["data"]

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
            "status": "complete" if complete else ("expired" if data["expired"] else "open"),
            "payment_status": "paid" if complete else "unpaid",
            "metadata": {"member_id": data["member_id"]},
        }

    def pay(self, session_id: str, card: dict[str, Any]) -> None:
        """Do in localstripe what Stripe Checkout does: card, default payment method, subscription.

        Raises DemoCardDeclined when the card is refused (the reader may try another)."""
        data = self.demo_session(session_id)
        if self.demo_subscription(data) is not None:
            return  # paid already (a second click, or the back button)
        if data["expired"]:
            raise BillingError(_l("This checkout has expired: start again from your account."), retryable=False)
        self.save_card(data["customer"], card)
        plan = data["plan"]["id"] if data["plan"] else None
        if plan is None:
            raise BillingError(_l("This demo checkout has no price."), retryable=False)
        sub = self.create_subscription(data["customer"], LineItem(price_id=plan, quantity=data["quantity"]),
                                       {"member_id": data["member_id"] or "", "demo_checkout": data["nonce"]})
        if sub["status"] == "incomplete":
            # Hosted Checkout would not complete with a refused card: ask for another one.
            raise DemoCardDeclined(_l("Your card was declined. Try another card."))

    # --- the Customer Portal: a demo page -----------------------------------------------------

    def create_portal_session(self, customer_id: str, return_url: str, locale: str | None = None) -> dict[str, Any]:
        # The demo Portal is a page of ours: it speaks the reader's language like every other.
        token = self._portal_signer.dumps({"customer": customer_id, "return_url": return_url})
        return {"object": "billing_portal.session", "url": f"{self.public_base_url}/demo/portal/{token}"}

    def decode_portal(self, token: str) -> dict[str, Any]:
        try:
            return self._portal_signer.loads(token, max_age=PORTAL_MAX_AGE)
        except BadSignature:
            raise BillingError(_l("Unknown or expired portal session."), retryable=False) from None


class DemoCardDeclined(BillingError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
