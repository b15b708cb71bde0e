"""Readers in English, French and Arabic (SPEC "Readers"): where the language comes from (the
saved choice, the `lang` switcher, Accept-Language), right to left for Arabic, and the language
carried to Stripe Checkout and the Portal, to Mailchimp and into every email, with dates and
amounts per locale. Staff pages stay English."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from service.db import get_session
from service.models import Account, MailOutbox

from ..support.events import event, post_event, run_worker
from ..support.factories import PASSWORD, link_customer, make_account
from ..support.i18n import html_lang, page_text, tr
from ..support.mailchimp_standin import md5
from ..support.staff import client_as
from ..support.stripe_objects import checkout_session, subscription
from ..support.stripe_standin import Reply, SubscriptionTruth
from ..support.web import csrf, login, post_form

CHECKOUT = "/v1/checkout/sessions"
PORTAL = "/v1/billing_portal/sessions"
JOIN = {"name": "Amina Yusuf", "email": "amina@example.org", "password": "correct horse battery", "newsletter": "y"}


def saved_language(app, email):
    with app.app_context():
        return get_session().scalars(select(Account.language).where(Account.email == email)).one()


def set_language(app, account_id, lang):
    with app.app_context():
        get_session().get(Account, account_id).language = lang
        get_session().commit()


@pytest.fixture
def checkout_ok(stripe_api):
    def reply(rec):
        return Reply(200, checkout_session(id="cs_test_lang", member_id=int(rec.form["client_reference_id"]),
                                           email=rec.form.get("customer_email", ""), customer=None, status="open",
                                           payment_status="unpaid", url="https://checkout.stripe.com/c/pay/cs_lang"))
    stripe_api.on("POST", CHECKOUT, reply)
    return stripe_api


# --- where the language comes from ---------------------------------------------------------------

@pytest.mark.parametrize("lang, direction", [("en", "ltr"), ("fr", "ltr"), ("ar", "rtl")])
def test_accept_language_chooses_the_page_language_and_arabic_is_right_to_left(app, client, lang, direction):
    resp = client.get("/join", headers={"Accept-Language": f"{lang};q=0.9, de;q=0.5"})
    assert html_lang(resp) == (lang, direction)
    text = page_text(resp)
    for words in ("Become a member", "What every member gets", "Full name", "Join"):
        assert tr(app, lang, words) in text
    if lang != "en":
        assert tr(app, lang, "What every member gets") != "What every member gets"
        assert "What every member gets" not in text


def test_an_unknown_language_falls_back_to_english(app, client):
    assert html_lang(client.get("/join", headers={"Accept-Language": "de, es;q=0.8"})) == ("en", "ltr")
    assert html_lang(client.get("/join?lang=xx")) == ("en", "ltr")


def test_every_reader_page_has_the_switcher_and_it_beats_accept_language(app, client):
    resp = client.get("/join?level=1", headers={"Accept-Language": "fr"})
    html = resp.get_data(as_text=True)
    # Each language named in itself, linking to this page in that language (its query kept).
    assert '<span lang="fr" aria-current="true">Français</span>' in html
    assert 'href="/join?level=1&amp;lang=ar" lang="ar" hreflang="ar">العربية</a>' in html
    assert 'href="/join?level=1&amp;lang=en" lang="en" hreflang="en">English</a>' in html
    assert {"Accept-Language", "Cookie"} <= set(resp.vary)  # a shared cache keys pages on both

    chosen = client.get("/join?lang=ar", headers={"Accept-Language": "fr"})
    assert html_lang(chosen) == ("ar", "rtl")
    cookie = chosen.headers["Set-Cookie"]
    assert "lang=ar" in cookie and "SameSite=Lax" in cookie and "HttpOnly" in cookie
    # The choice is remembered (a cookie) for the next pages, over Accept-Language.
    assert html_lang(client.get("/login", headers={"Accept-Language": "fr"})) == ("ar", "rtl")
    for path in ("/", "/login", "/reset", "/organisations/join", "/no-such-page"):
        assert 'hreflang="fr"' in client.get(path).get_data(as_text=True), path
    # Not on programs' answers: no cookie on JSON.
    assert "Set-Cookie" not in client.get("/.well-known/jwks.json?lang=fr").headers


def test_the_switcher_links_never_leave_the_site(app, client):
    html = client.get("/%5Cevil.example/x?a=1").get_data(as_text=True)
    links = re.findall(r'href="([^"]*lang=[a-z]+)"', html)
    assert len(links) == 2 and all(re.match(r"/[^/\\]", link) and "\\" not in link for link in links), links


def _switch(client, lang, next_url="/account"):
    token = csrf(client, "/account")
    resp = client.post("/language", data={"csrf_token": token, "lang": lang, "next": next_url})
    return resp


def test_the_saved_choice_comes_first_and_the_switcher_saves_it(app, client):
    reader = make_account(app)
    set_language(app, reader, "fr")
    login(client, "reader@example.org", PASSWORD)
    page = client.get("/account", headers={"Accept-Language": "ar"})
    assert html_lang(page) == ("fr", "ltr")
    # A signed-in reader's switcher is a form: the choice is saved with a POST and a CSRF token.
    html = page.get_data(as_text=True)
    assert 'action="/language"' in html and 'name="lang" value="ar" lang="ar">العربية</button>' in html
    client.set_cookie("lang", "en")  # an older choice in this browser: the account's wins
    assert html_lang(client.get("/account")) == ("fr", "ltr")

    resp = _switch(client, "ar", "/account?tab=1")
    assert resp.status_code == 303 and resp.headers["Location"] == "/account?tab=1"
    assert saved_language(app, "reader@example.org") == "ar"
    assert html_lang(client.get("/account", headers={"Accept-Language": "fr"})) == ("ar", "rtl")


def test_the_switchers_post_needs_its_token_and_stays_on_the_site(app, client):
    reader = make_account(app)
    set_language(app, reader, "fr")
    login(client, "reader@example.org", PASSWORD)
    assert client.post("/language", data={"lang": "ar", "next": "/account"}).status_code == 400
    assert saved_language(app, "reader@example.org") == "fr"
    assert _switch(client, "xx").status_code == 400
    resp = _switch(client, "en", "https://evil.example/")
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    assert saved_language(app, "reader@example.org") == "en"


def test_a_lang_link_shows_a_page_in_that_language_but_saves_nothing(app, client):
    """A link (maybe from another site) may show a page in any language; only the reader's own
    POST changes what their mail and Stripe pages speak."""
    reader = make_account(app)
    set_language(app, reader, "fr")
    login(client, "reader@example.org", PASSWORD)
    assert html_lang(client.get("/account?lang=ar")) == ("ar", "rtl")
    assert saved_language(app, "reader@example.org") == "fr"
    assert html_lang(client.get("/account")) == ("fr", "ltr")


def test_a_translated_message_never_turns_a_name_into_markup(app):
    """Lazy texts (shown later, in the reader's language) escape their variables like any text."""
    from flask import render_template_string

    from service.i18n import lazy_gettext

    message = lazy_gettext("Your payment for %(organisation)s went through: there is no need to pay again.",
                           organisation='<a href="https://evil.example/">Relief</a>')
    with app.test_request_context("/?lang=fr"):
        html = render_template_string("<p>{{ m }}</p>", m=message)
    assert "<a href" not in html and "&lt;a href=&#34;https://evil.example/&#34;&gt;" in html


def test_joining_saves_the_language_of_the_page(app, client, checkout_ok):
    post_form(client, "/join", JOIN, form_path="/join?lang=fr")
    assert saved_language(app, "amina@example.org") == "fr"
    (req,) = checkout_ok.calls("POST", CHECKOUT)
    assert req.form["locale"] == "fr"  # Stripe Checkout in French too


def test_checkout_in_arabic_lets_stripe_follow_the_browser(app, client, checkout_ok):
    """Checkout has no Arabic (its `locale` enum): `auto` rather than forcing English."""
    client.get("/join?lang=ar")
    post_form(client, "/join", JOIN)
    (req,) = checkout_ok.calls("POST", CHECKOUT)
    assert req.form["locale"] == "auto"
    assert saved_language(app, "amina@example.org") == "ar"


def test_the_portal_opens_in_the_readers_language(app, client, stripe_api):
    reader = make_account(app, customer="cus_P")
    set_language(app, reader, "fr")
    stripe_api.on("POST", PORTAL, Reply(200, {"id": "bps_1", "object": "billing_portal.session",
                                              "url": "https://billing.stripe.com/p/session/test_1"}))
    login(client, "reader@example.org", PASSWORD)
    resp = post_form(client, "/account/billing", {}, form_path="/account")
    assert resp.status_code == 303
    (req,) = stripe_api.calls("POST", PORTAL)
    assert req.form["locale"] == "fr"


def test_staff_pages_stay_english(app):
    staff = client_as(app, "staff")
    resp = staff.get("/staff", headers={"Accept-Language": "ar"})
    assert html_lang(resp) == ("en", "ltr")
    assert html_lang(staff.get("/staff?lang=fr")) == ("en", "ltr")


# --- forms, errors, amounts and dates ---------------------------------------------------------------

def test_form_errors_are_in_the_readers_language(app, client):
    token = csrf(client, "/join?lang=fr")
    resp = client.post("/join", data={"csrf_token": token, "email": "not-an-address", "password": "short",
                                      "level": "1"})
    assert resp.status_code == 422
    text = page_text(resp)
    for message in ("Please enter your name.", "Please enter a valid email address."):
        assert tr(app, "fr", message) in text and message not in text
    assert tr(app, "fr", "Use at least %(num)d characters.", num=10) in text


def test_error_pages_are_in_the_readers_language(app, client):
    resp = client.get("/no-such-page", headers={"Accept-Language": "ar"})
    assert resp.status_code == 404 and html_lang(resp) == ("ar", "rtl")
    assert tr(app, "ar", "Page not found") in page_text(resp)
    # Programs still get English JSON.
    api = client.get("/api/v1/nothing", headers={"Accept-Language": "ar"})
    assert api.status_code in (401, 404) and api.is_json


def test_amounts_and_dates_are_formatted_per_locale(app):
    from service.i18n import day, in_language, money, per_interval

    when = datetime(2026, 3, 4, tzinfo=timezone.utc)
    with app.test_request_context("/"):
        with in_language("en"):
            assert (money(500), money(550), per_interval(5000, "usd", "year"), day(when)) == \
                ("$5", "$5.50", "$50 a year", "4 March 2026")
        with in_language("fr"):
            assert money(500) == "5\xa0$US" and money(123450, "eur") == "1\u202f234,50\xa0€"
            assert day(when) == "4 mars 2026"
            assert per_interval(500, "usd", "month") == tr(app, "fr", "%(amount)s a month", amount="5\xa0$US")
        with in_language("ar"):
            assert "5" in money(500) and "US$" in money(500)
            assert day(when) == "4 مارس 2026"


def test_the_join_page_prices_read_in_french(app, client):
    text = page_text(client.get("/join?lang=fr"))
    assert tr(app, "fr", "%(amount)s a month", amount="5\xa0$US") in text
    assert "$5 a month" not in text


# --- mail in the reader's language --------------------------------------------------------------------

def outbox(app, kind):
    with app.app_context():
        rows = get_session().scalars(select(MailOutbox).where(MailOutbox.kind == kind).order_by(MailOutbox.id)).all()
        get_session().expunge_all()
        return rows


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_a_payment_failed_mail_is_written_in_the_readers_language(app, client, stripe_api, lang):
    reader = make_account(app, customer="cus_A")
    set_language(app, reader, lang)
    truth = SubscriptionTruth(stripe_api)
    now = int(time.time())
    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_A", customer="cus_A", status="active", member_id=reader),
                             created=now - 100))
    truth.set(subscription(id="sub_A", customer="cus_A", status="past_due", member_id=reader))
    retry = datetime(2026, 3, 4, 12, tzinfo=timezone.utc)
    post_event(client, event("invoice.payment_failed", {
        "id": "in_fail", "object": "invoice", "customer": "cus_A", "attempt_count": 1, "amount_due": 500,
        "currency": "usd", "next_payment_attempt": int(retry.timestamp()),
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_A"}}},
        created=now))
    (welcome,) = outbox(app, "welcome")
    assert welcome.language == lang and welcome.subject == tr(app, lang, "Welcome to DAWNS")
    (row,) = outbox(app, "payment_failed")
    assert row.language == lang
    assert row.subject == tr(app, lang, "Your DAWNS payment did not go through") != "Your DAWNS payment did not go through"
    with app.test_request_context("/"):
        from service.i18n import day, in_language, money

        with in_language(lang):
            amount, date = money(500), day(retry)
    assert tr(app, lang, "We could not take your payment of %(amount)s for your DAWNS membership.",
              amount=amount) in row.text_body
    assert tr(app, lang, "We will try again on %(date)s.", date=date) in row.text_body
    assert tr(app, lang, "Hello %(name)s,", name="Reader One") in row.text_body
    assert "http://localhost/account/billing/fix" in row.text_body
    assert f'<html lang="{lang}"' in row.html_body and (('dir="rtl"' in row.html_body) == (lang == "ar"))
    (delivered,) = [m for m in app.extensions["mail_outbox"] if m["Subject"] == row.subject]
    assert delivered["Content-Language"] == lang


def test_a_reset_mail_asked_from_a_french_page_is_french(app, client):
    make_account(app)  # no saved language: the page's is used
    post_form(client, "/reset", {"email": "reader@example.org"}, form_path="/reset?lang=fr")
    (row,) = outbox(app, "password_reset")
    assert row.language == "fr" and row.subject == tr(app, "fr", "Reset your password")


def test_the_sign_in_link_follows_the_saved_language_over_the_page(app, client):
    reader = make_account(app)
    set_language(app, reader, "ar")
    post_form(client, "/login/link", {"email": "reader@example.org"}, form_path="/login?lang=fr")
    (row,) = outbox(app, "signin_link")
    assert row.language == "ar" and row.subject == tr(app, "ar", "Your sign-in link")
    (delivered,) = [m for m in app.extensions["mail_outbox"] if m["Subject"] == row.subject]
    assert 'dir="rtl"' in delivered.get_body(("html",)).get_content()


# --- Mailchimp ------------------------------------------------------------------------------------------

def test_mailchimp_gets_the_readers_language_and_learns_a_new_one(mc_app, mailchimp):
    app = mc_app
    client = app.test_client()
    reader = make_account(app, email="amina@example.org", name="Amina Yusuf")
    link_customer(app, reader, "cus_M")
    set_language(app, reader, "fr")
    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_M", customer="cus_M", status="active", member_id=reader)))
    run_worker(app)
    put = [c for c in mailchimp.calls if c.method == "PUT"][-1]
    assert put.path.endswith(md5("amina@example.org")) and put.body["language"] == "fr"

    login(client, "amina@example.org", PASSWORD)
    _switch(client, "ar")
    run_worker(app)
    put = [c for c in mailchimp.calls if c.method == "PUT"][-1]
    assert put.body["language"] == "ar" and put.body["status"] == "subscribed"
