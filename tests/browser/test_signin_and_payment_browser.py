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
import pytest

from .checks import Words, check_language, check_page

LANGS = ["en", "fr", "ar"]


def _mail(app, to: str):
    def sent():
        return [m for m in app.extensions.get("mail_outbox", []) if m["To"] == to]

    assert poll(sent)
    return sent()[-1]


def _mail_link(app, to: str, path: str) -> str:
    def sent():
        return [m for m in app.extensions.get("mail_outbox", []) if m["To"] == to]

    assert poll(sent)
    found = re.search(rf"(http://127\.0\.0\.1:\d+{re.escape(path)}\S+)", sent()[-1].get_content())
    assert found, sent()[-1].get_content()
    return found.group(1)


@pytest.mark.parametrize("lang", LANGS)
def test_sign_in_with_an_emailed_link_at_390px(served_demo, phone_in, lang):
    app, server = served_demo
    w = Words(app, lang)
    email = f"linked.{lang}@example.org"
    make_account(app, email=email, verified=True)
    page = phone_in(lang)
    page.goto(f"{server.url}/login")
    check_page(page)
    check_language(page, lang)
    page.locator("#link-email").fill(email)
    page.get_by_role("button", name=w("Email me a sign-in link")).click()
    check_page(page)
    assert w("If an account exists for that address, a link is on its way. It signs you in once, within 15 minutes.") \
        in page.inner_text("main")
    mail = _mail(app, email)
    assert mail["Subject"] == w("Your sign-in link") and mail["Content-Language"] == lang  # the page's language
    link = _mail_link(app, email, "/login/link/")
    page.goto(link)
    check_page(page)
    check_language(page, lang)
    page.get_by_role("button", name=w("Sign in")).click()
    page.wait_for_url(re.compile(r".*/account$"))
    check_page(page)
    check_language(page, lang)
    assert email in page.content()


@pytest.mark.parametrize("lang", LANGS)
def test_a_failed_payment_is_shown_on_the_account_page_at_390px(served_demo, phone_in, lang):
    app, server = served_demo
    w = Words(app, lang)
    email = f"late.{lang}@example.org"
    member = make_account(app, email=email, customer=f"cus_LATE_{lang}", verified=True)
    now = int(time.time())
    client = app.test_client()
    secret = app.config["STRIPE_WEBHOOK_SECRET"]
    plan = {"price": DEMO_PLAN_ID, "product": DEMO_PRODUCT_ID}  # the demo's $5 a month
    post_event(client, event("customer.subscription.created",
                             subscription(id=f"sub_LATE_{lang}", customer=f"cus_LATE_{lang}", status="active",
                                          member_id=member, **plan), created=now - 20), secret=secret)
    late = subscription(id=f"sub_LATE_{lang}", customer=f"cus_LATE_{lang}", status="past_due", member_id=member,
                        period_start=now - 86400, **plan)
    post_event(client, event("customer.subscription.updated", late, created=now - 10), secret=secret)
    apply_events(app)
    page = phone_in(lang)
    page.goto(f"{server.url}/login")
    page.get_by_label(w("Email"), exact=True).fill(email)
    page.get_by_label(w("Password"), exact=True).fill("a long test password")
    page.get_by_role("button", name=w("Log in"), exact=True).click()
    page.wait_for_url(re.compile(r".*/account$"))
    check_page(page)
    check_language(page, lang)
    past_due = w("Active, but the last payment failed. Stripe is retrying; please check your card.")
    assert past_due in page.inner_text("main")
    assert page.get_by_role("button", name=w("Manage billing")).is_visible()
    page.goto(f"{server.url}/account/billing/fix")
    check_page(page)
    check_language(page, lang)
