"""The embedded default behind `make run`.

Without Stripe keys in the environment or `.env`, start localstripe (a fake Stripe server) as a
child process on a free port, create the $5/month plan, register our webhook with a fresh
signing secret, and serve the site with the demo Checkout and Portal pages. With keys, serve
against real Stripe and no stand-in. Ctrl-C stops everything this started.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode

import click
from flask import current_app
from werkzeug.serving import run_simple

DEMO_PLAN_ID = "plan_dawns_monthly"
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


def provision_localstripe(api_base: str, webhook_url: str) -> dict[str, str]:
    """The plan and the webhook in a fresh localstripe; returns the settings to run with."""
    from .billing.gateway import create_plan

    secret_key = "sk_test_demo_" + secrets.token_hex(8)
    webhook_secret = "whsec_" + secrets.token_hex(24)
    create_plan(api_base, secret_key, DEMO_PLAN_ID, amount_cents=500, currency="usd", interval="month")
    register_localstripe_webhook(api_base, webhook_url, webhook_secret)
    return {
        "STRIPE_SECRET_KEY": secret_key,
        "STRIPE_API_BASE": api_base,
        "STRIPE_PRICE_ID": DEMO_PLAN_ID,
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
        "DEMO_CHECKOUT": "1",
    }


def run_demo(host: str, port: int) -> None:
    from . import create_app
    from .domain.membership import Role
    from .members.services import create_staff

    child = None
    try:
        if not current_app.config["STRIPE_SECRET_KEY"]:
            child, api_base = start_localstripe(log_path=str(current_app.instance_path) + "/localstripe.log")
            os.environ.update(provision_localstripe(api_base, f"http://{host}:{port}/stripe/webhook"))
            click.echo(f"localstripe (Stripe stand-in) running at {api_base}, pid {child.pid}")
        else:
            click.echo("Stripe keys found: using Stripe, no stand-in.")
        app = create_app()
        password = secrets.token_urlsafe(12)
        with app.app_context():
            create_staff(DEMO_STAFF_EMAIL, "Demo staff", password, Role.ADMIN)
        click.echo("")
        click.echo(f"  Membership service: http://{host}:{port}/")
        click.echo(f"  Demo staff login:   {DEMO_STAFF_EMAIL} / {password}   (admin, at /login)")
        click.echo("  Press Ctrl-C to stop.")
        click.echo("")
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        if child is not None:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
