"""The reader mail tied to membership and billing events (SPEC "Readers"): welcome, payment
failed (with a link that opens the Customer Portal), membership ended and the yearly renewal
reminder. Each is written in the transaction of the change (or the Stripe event's outcome)
that causes it: once per transition or event, never for a rollback, a duplicate delivery or a
retried attempt."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, update

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus, Role
from service.models import Account, MailOutbox, StripeEvent

from ..support.events import apply_events, event, outcome_of, post_event
from ..support.factories import PASSWORD, make_account
from ..support.organisations import active_org, give_seat, org_level, org_subscription
from ..support.stripe_objects import subscription
from ..support.stripe_standin import Reply, SubscriptionTruth
from ..support.web import login, post_form

PORTAL = "/v1/billing_portal/sessions"
PORTAL_URL = "https://billing.stripe.com/p/session/test_fix"


@pytest.fixture
def truth(stripe_api):
    return SubscriptionTruth(stripe_api)


@pytest.fixture
def member(app):
    return make_account(app, customer="cus_A")  # linked, as a completed checkout of ours does


def sub(member, status="active", *, yearly=False, id="sub_A", customer="cus_A", **kw):
    obj = subscription(id=id, customer=customer, status=status, member_id=member, **kw)
    if yearly:  # "give more" on the membership product, $50 a year
        price = obj["items"]["data"][0]["price"]
        price.update(id="price_give_more_year", unit_amount=5000, recurring={"interval": "year", "interval_count": 1})
    return obj


def deliver(client, type_, obj, *, created=None, evt=None):
    evt = evt or event(type_, obj, created=created if created is not None else int(time.time()))
    resp = post_event(client, evt)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return evt


def mails(app, kind=None):
    """The outbox rows (durable: what the worker would send), oldest first."""
    with app.app_context():
        stmt = select(MailOutbox).order_by(MailOutbox.id)
        if kind is not None:
            stmt = stmt.where(MailOutbox.kind == kind)
        rows = get_session().scalars(stmt).all()
        get_session().expunge_all()
        return rows


def sent(app, subject_part):
    """Messages the log backend delivered (inline after the commit, as the worker would)."""
    return [m for m in app.extensions["mail_outbox"] if subject_part in m["Subject"]]


def status_of(app, account_id):
    with app.app_context():
        return get_session().get(Account, account_id).membership.status


def payment_failed_invoice(sub_id="sub_A", customer="cus_A", **kw):
    return {"id": "in_fail", "object": "invoice", "customer": customer, "attempt_count": 1, "amount_due": 500,
            "currency": "usd", "next_payment_attempt": int(time.time()) + 3 * 86400,
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub_id}}, **kw}


# --- welcome ------------------------------------------------------------------------------------

def test_welcome_once_on_activation_not_again_on_renewal(app, client, member, truth):
    now = int(time.time())
    deliver(client, "customer.subscription.created", sub(member, "incomplete"), created=now - 300)
    assert mails(app, "welcome") == []  # not entitled yet
    deliver(client, "customer.subscription.updated", sub(member), created=now - 200)
    (welcome,) = mails(app, "welcome")
    assert welcome.to_address == "reader@example.org" and welcome.account_id == member
    assert "premium stories" in welcome.text_body and "DAWNS Digest" in welcome.text_body
    assert "http://localhost/account" in welcome.text_body
    assert '<a href="http://localhost/account">' in welcome.html_body
    assert len(sent(app, "Welcome to DAWNS")) == 1

    # A renewal (a new period, by event and by invoice.paid) and a duplicate recompute: nothing more.
    renewed = sub(member, period_start=now + 30 * 86400, period_end=now + 60 * 86400)
    deliver(client, "customer.subscription.updated", renewed, created=now - 100)
    truth.set(renewed)
    deliver(client, "invoice.paid", {"id": "in_r", "object": "invoice", "customer": "cus_A", "status": "paid",
                                     "parent": {"subscription_details": {"subscription": "sub_A"}}})
    assert status_of(app, member) == MembershipStatus.ACTIVE
    assert len(mails(app, "welcome")) == 1 and len(sent(app, "Welcome")) == 1
    assert mails(app, "membership_ended") == [] and mails(app, "payment_failed") == []


def test_welcome_says_the_digest_only_for_who_opted_in(app, client):
    reader = make_account(app, email="quiet@example.org", customer="cus_Q", newsletter=False)
    deliver(client, "customer.subscription.created", sub(reader, id="sub_Q", customer="cus_Q"))
    (welcome,) = mails(app, "welcome")
    assert "switch it on from your account" in welcome.text_body


def test_welcome_for_a_comp_once(app):
    from service.membership.service import recompute
    from service.staff import services as staff

    reader = make_account(app)
    admin = make_account(app, email="admin@example.org", role=Role.ADMIN)
    with app.app_context():
        staff.comp(get_session().get(Account, admin), reader, "press", None)
    (welcome,) = mails(app, "welcome")
    assert "complimentary membership" in welcome.text_body
    with app.app_context():  # recomputed again (a worker pass, a staff action): no second welcome
        recompute(get_session(), get_session().get(Account, reader))
        get_session().commit()
    assert len(mails(app, "welcome")) == 1


def test_welcome_for_an_organisation_seat_and_nothing_for_its_subscription(app, client, truth):
    org_level(app)
    admin = make_account(app, email="admin@relief.example")
    org_id, org_sub = active_org(app, client, admin_id=admin, seats=3)
    colleague = make_account(app, email="colleague@relief.example")
    give_seat(app, org_id, colleague)
    assert status_of(app, colleague) == MembershipStatus.ORGANISATION
    (welcome,) = mails(app, "welcome")
    assert welcome.to_address == "colleague@relief.example" and "Relief Network gives you a seat" in welcome.text_body

    # The organisation's card fails, and its yearly renewal comes up: no reader mail of either kind.
    truth.set(org_subscription(id="sub_ORG1", customer="cus_ORG1", quantity=3, status="past_due"))
    failed = deliver(client, "invoice.payment_failed", payment_failed_invoice("sub_ORG1", "cus_ORG1"))
    assert outcome_of(app, failed["id"]) == "applied"
    upcoming = deliver(client, "invoice.upcoming", upcoming_invoice("sub_ORG1", "cus_ORG1", 36_000))
    assert outcome_of(app, upcoming["id"]) == "ignored"
    assert mails(app, "payment_failed") == [] and mails(app, "renewal_reminder") == []
    assert len(mails(app, "welcome")) == 1


# --- payment failed -----------------------------------------------------------------------------

def test_payment_failed_once_when_the_event_is_delivered_twice(app, client, member, truth):
    now = int(time.time())
    deliver(client, "customer.subscription.created", sub(member), created=now - 100)
    truth.set(sub(member, "past_due"))
    evt = event("invoice.payment_failed", payment_failed_invoice(), created=now)
    deliver(client, None, None, evt=evt)
    again = post_event(client, evt)
    assert again.status_code == 200 and again.json["duplicate"] is True
    (row,) = mails(app, "payment_failed")
    assert row.status == "delivered" and row.to_address == "reader@example.org"
    assert "$5" in row.text_body and "http://localhost/account/billing/fix" in row.text_body
    assert len(sent(app, "payment did not go through")) == 1
    assert status_of(app, member) == MembershipStatus.PAST_DUE
    assert mails(app, "membership_ended") == []  # past due is still entitled (grace)


def test_payment_failed_once_after_a_worker_retry(app, client, member, truth, monkeypatch):
    """The attempt that queued the mail then failed is rolled back whole: the retry writes the
    only message."""
    from service.membership import reader_mail

    now = int(time.time())
    deliver(client, "customer.subscription.created", sub(member), created=now - 100)
    truth.set(sub(member, "past_due"))
    original, calls = reader_mail.payment_failed, []

    def write_then_fail(*args, **kw):
        original(*args, **kw)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the worker fell over after writing the mail")

    monkeypatch.setattr(reader_mail, "payment_failed", write_then_fail)
    evt = deliver(client, "invoice.payment_failed", payment_failed_invoice(), created=now)
    assert outcome_of(app, evt["id"]) == "received" and mails(app, "payment_failed") == []
    with app.app_context():  # the backoff is over
        get_session().execute(update(StripeEvent).where(StripeEvent.stripe_id == evt["id"])
                              .values(next_attempt_at=utcnow()))
        get_session().commit()
    apply_events(app)
    assert outcome_of(app, evt["id"]) == "applied" and len(calls) == 2
    assert len(mails(app, "payment_failed")) == 1 and len(sent(app, "payment did not go through")) == 1


def test_the_payment_failed_link_opens_the_portal_for_the_signed_in_reader(app, client, member, truth, stripe_api):
    deliver(client, "customer.subscription.created", sub(member), created=int(time.time()) - 100)
    truth.set(sub(member, "past_due"))
    deliver(client, "invoice.payment_failed", payment_failed_invoice())
    (row,) = mails(app, "payment_failed")
    link = re.search(r"http://localhost(/\S+)", row.text_body.split("billing page:")[1]).group(1)
    assert link == "/account/billing/fix"

    assert client.get(link).status_code == 302  # sign in first
    login(client, "reader@example.org", PASSWORD, next_url=link)
    page = client.get(link)
    assert page.status_code == 200 and "did not go through" in page.get_data(as_text=True)
    assert stripe_api.calls("POST", PORTAL) == []  # a Portal session only when the reader asks for one
    stripe_api.on("POST", PORTAL, Reply(200, {"id": "bps_fix", "object": "billing_portal.session", "url": PORTAL_URL}))
    resp = post_form(client, "/account/billing", {}, form_path=link)
    assert resp.status_code == 303 and resp.headers["Location"] == PORTAL_URL
    (req,) = stripe_api.calls("POST", PORTAL)
    assert req.form["customer"] == "cus_A"


def test_no_payment_failed_mail_for_a_first_payment_in_checkout(app, client, member, truth):
    truth.set(sub(member, "incomplete"))
    deliver(client, "invoice.payment_failed", payment_failed_invoice())
    assert mails(app) == []


# --- membership ended ---------------------------------------------------------------------------

def test_membership_ended_once(app, client, member):
    now = int(time.time())
    deliver(client, "customer.subscription.created", sub(member), created=now - 300)
    deliver(client, "customer.subscription.deleted", sub(member, "canceled"), created=now - 200)
    deliver(client, "customer.subscription.deleted", sub(member, "canceled"), created=now - 100)  # again, newer
    assert status_of(app, member) == MembershipStatus.CANCELED
    (ended,) = mails(app, "membership_ended")
    assert "has ended" in ended.text_body and "http://localhost/account" in ended.text_body
    assert len(sent(app, "membership has ended")) == 1


def test_lapsed_then_canceled_is_one_ending(app, client, member):
    now = int(time.time())
    deliver(client, "customer.subscription.created", sub(member), created=now - 300)
    deliver(client, "customer.subscription.updated", sub(member, "past_due"), created=now - 250)
    deliver(client, "customer.subscription.updated", sub(member, "unpaid"), created=now - 200)
    assert status_of(app, member) == MembershipStatus.LAPSED
    deliver(client, "customer.subscription.deleted", sub(member, "canceled"), created=now - 100)
    (ended,) = mails(app, "membership_ended")
    assert "payments did not go through" in ended.text_body


def test_rejoining_after_the_end_is_welcomed_back(app, client, member):
    now = int(time.time())
    deliver(client, "customer.subscription.created", sub(member), created=now - 300)
    deliver(client, "customer.subscription.deleted", sub(member, "canceled"), created=now - 200)
    deliver(client, "customer.subscription.created", sub(member, id="sub_B"), created=now - 100)
    first, back = mails(app, "welcome")
    assert first.subject == "Welcome to DAWNS" and back.subject == "Welcome back to DAWNS"


# --- yearly renewal reminder --------------------------------------------------------------------

def upcoming_invoice(sub_id="sub_A", customer="cus_A", amount=5000, when=None, legacy=False):
    invoice = {"object": "invoice", "customer": customer, "amount_due": amount, "currency": "usd",
               "next_payment_attempt": when or int(time.time()) + 7 * 86400, "billing_reason": "upcoming"}
    if legacy:
        invoice["subscription"] = sub_id
    else:
        invoice["parent"] = {"type": "subscription_details", "subscription_details": {"subscription": sub_id}}
    return invoice


@pytest.mark.parametrize("legacy", [False, True])
def test_renewal_reminder_for_a_yearly_membership_once(app, client, member, legacy):
    renews = int(datetime(2031, 3, 14, 12, tzinfo=timezone.utc).timestamp())
    deliver(client, "customer.subscription.created", sub(member, yearly=True, period_end=renews),
            created=int(time.time()) - 100)
    evt = deliver(client, "invoice.upcoming", upcoming_invoice(when=renews, legacy=legacy))
    post_event(client, evt)  # delivered twice
    assert outcome_of(app, evt["id"]) == "applied"
    (reminder,) = mails(app, "renewal_reminder")
    assert "renews on 14 March 2031 for $50" in reminder.text_body
    assert "http://localhost/account" in reminder.text_body
    assert len(sent(app, "renews soon")) == 1


def test_no_renewal_reminder_for_a_monthly_membership(app, client, member):
    deliver(client, "customer.subscription.created", sub(member), created=int(time.time()) - 100)
    evt = deliver(client, "invoice.upcoming", upcoming_invoice(amount=500))
    assert outcome_of(app, evt["id"]) == "ignored"
    assert mails(app, "renewal_reminder") == []


def test_no_renewal_reminder_for_a_membership_that_ends(app, client, member):
    deliver(client, "customer.subscription.created", sub(member, yearly=True, cancel_at_period_end=True),
            created=int(time.time()) - 100)
    deliver(client, "invoice.upcoming", upcoming_invoice())
    assert mails(app, "renewal_reminder") == []


# --- the transaction decides --------------------------------------------------------------------

def test_a_rollback_sends_nothing(app):
    from service.membership.service import recompute

    reader = make_account(app)
    with app.app_context():
        s = get_session()
        account = s.get(Account, reader)
        account.membership.comped_at = utcnow()
        recompute(s, account)
        assert s.scalars(select(MailOutbox.kind)).all() == ["welcome"]  # written, not committed
        s.rollback()
        s.commit()
    assert mails(app) == [] and list(app.extensions["mail_outbox"]) == []
    assert status_of(app, reader) == MembershipStatus.PENDING
