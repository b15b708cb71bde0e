"""Issue 12's other reader journeys in Chromium, at 390 px with axe on every page: signing in
with an emailed link, and a failed payment as the reader sees it (on /account, and the page the
payment-failed mail links to)."""
from __future__ import annotations

import re
import time

from service.demo.localstripe import DEMO_PLAN_ID, DEMO_PRODUCT_ID

from ..support.events import apply_events, event, post_event
from ..support.factories import make_account
from ..support.stripe_objects import subscription
from ..support.wait import poll
from .checks import check_page


def _mail_link(app, to: str, path: str) -> str:
    def sent():
        return [m for m in app.extensions.get("mail_outbox", []) if m["To"] == to]

    assert poll(sent)
    found = re.search(rf"(http://127\.0\.0\.1:\d+{re.escape(path)}\S+)", sent()[-1].get_content())
    assert found, sent()[-1].get_content()
    return found.group(1)


def test_sign_in_with_an_emailed_link_at_390px(served_demo, phone):
    app, server = served_demo
    make_account(app, email="linked@example.org", verified=True)
    page = phone
    page.goto(f"{server.url}/login")
    check_page(page)
    page.locator("#link-email").fill("linked@example.org")
    page.get_by_role("button", name="Email me a sign-in link").click()
    check_page(page)
    assert "a link is on its way" in page.content()
    link = _mail_link(app, "linked@example.org", "/login/link/")
    page.goto(link)
    check_page(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/account$"))
    check_page(page)
    assert "linked@example.org" in page.content()


def test_a_failed_payment_is_shown_on_the_account_page_at_390px(served_demo, phone):
    app, server = served_demo
    member = make_account(app, email="late@example.org", customer="cus_LATE", verified=True)
    now = int(time.time())
    client = app.test_client()
    secret = app.config["STRIPE_WEBHOOK_SECRET"]
    plan = {"price": DEMO_PLAN_ID, "product": DEMO_PRODUCT_ID}  # the demo's $5 a month
    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_LATE", customer="cus_LATE", status="active", member_id=member,
                                          **plan), created=now - 20), secret=secret)
    late = subscription(id="sub_LATE", customer="cus_LATE", status="past_due", member_id=member,
                        period_start=now - 86400, **plan)
    post_event(client, event("customer.subscription.updated", late, created=now - 10), secret=secret)
    apply_events(app)
    page = phone
    page.goto(f"{server.url}/login")
    page.get_by_label("Email", exact=True).fill("late@example.org")
    page.get_by_label("Password", exact=True).fill("a long test password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/account$"))
    check_page(page)
    assert "the last payment failed" in page.content()
    assert page.get_by_role("button", name="Manage billing").is_visible()
    page.goto(f"{server.url}/account/billing/fix")
    check_page(page)
