"""The embedded default's Stripe stand-in: localstripe as a child process, provisioned.

Without Stripe keys in the environment or `.env`, start localstripe (a fake Stripe server) as a
child process on a free port, create the membership product with its $5/month and $50/year
plans, register our webhook with a fresh
signing secret, and serve the site with the demo Checkout and Portal pages. With keys, serve
against real Stripe and no stand-in. Ctrl-C stops everything this started.
"""
from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode

import click
import stripe
from flask import current_app

DEMO_PRODUCT_ID = "prod_dawns_membership"
DEMO_PLAN_ID = "plan_dawns_monthly"
DEMO_YEARLY_PLAN_ID = "plan_dawns_yearly"
DEMO_SEAT_PLAN_ID = "plan_dawns_seat_yearly"
DEMO_STAFF_EMAIL = "staff@example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def start_localstripe(port: int | None = None, log_path: str | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--from-scratch", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log_path:
            out.close()  # the child holds its own descriptor
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def register_localstripe_webhook(api_base: str, url: str, secret: str, name: str = "dawns") -> None:
    """localstripe's own configuration endpoint (not part of Stripe's API)."""
    body = urlencode({"url": url, "secret": secret}).encode()
    req = urllib.request.Request(f"{api_base}/_config/webhooks/{name}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _stripe(api_base: str, api_key: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=0)  # type: ignore[arg-type]


def provision_localstripe(api_base: str, webhook_url: str) -> dict[str, str]:
    """The membership product, its $5/month, $50/year and $40/year-per-seat plans (localstripe predates Prices)
    and the webhook, in a fresh localstripe; returns the settings to run with."""
    secret_key = "sk_test_demo_" + secrets.token_hex(8)
    webhook_secret = "whsec_" + secrets.token_hex(24)
    client = _stripe(api_base, secret_key)
    try:
        client.v1.products.retrieve(DEMO_PRODUCT_ID)
    except stripe.InvalidRequestError:
        client.v1.products.create({"id": DEMO_PRODUCT_ID, "name": "DAWNS membership"})
    for plan_id, amount, interval in ((DEMO_PLAN_ID, 500, "month"), (DEMO_YEARLY_PLAN_ID, 5000, "year"),
                                      (DEMO_SEAT_PLAN_ID, 4000, "year")):
        try:
            client.v1.plans.retrieve(plan_id)
        except stripe.InvalidRequestError:
            client.v1.plans.create({"id": plan_id, "amount": amount, "currency": "usd", "interval": interval,
                                    "product": DEMO_PRODUCT_ID})
    register_localstripe_webhook(api_base, webhook_url, webhook_secret)
    return {
        "STRIPE_SECRET_KEY": secret_key,
        "STRIPE_API_BASE": api_base,
        "STRIPE_PRICE_ID": DEMO_PLAN_ID,
        "STRIPE_PRODUCT_ID": DEMO_PRODUCT_ID,
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
        "DEMO_CHECKOUT": "1",
    }


def seed_demo_catalogue(app) -> None:
    """$5 a month (seeded from STRIPE_PRICE_ID), $50 a year, and organisation seats at $40 a
    year each, as `make run` offers them."""
    from ..billing.runtime import get_gateway
    from ..db import get_session
    from ..domain.membership import N_
    from ..membership import catalogue
    from ..models import LevelPrice

    with app.app_context():
        session = get_session()
        catalogue.ensure(session, get_gateway())
        if session.query(LevelPrice).filter_by(stripe_price_id=DEMO_YEARLY_PLAN_ID).first() is None:
            catalogue.add(session, get_gateway(), name=N_("Member, yearly"), amount=5000, interval="year",
                          price_id=DEMO_YEARLY_PLAN_ID)
        if session.query(LevelPrice).filter_by(stripe_price_id=DEMO_SEAT_PLAN_ID).first() is None:
            catalogue.add(session, get_gateway(), name=N_("Organisation seat"), amount=4000, interval="year",
                          price_id=DEMO_SEAT_PLAN_ID, organisation=True)
        session.commit()
