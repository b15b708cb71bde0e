"""Organisations (SPEC "Organisations"): self-serve seats through Checkout, invitations, domain
claims, seat limits, quantity changes in Stripe, and what a seat entitles."""
from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from service.db import get_session
from service.domain.membership import MembershipStatus, Role
from service.membership.service import is_entitled
from service.models import Account, AccountToken, AuditLog, NewsletterOutbox, Organisation, Seat, StripeCustomer

from ..support.events import event, post_event
from ..support.factories import PASSWORD, make_account
from ..support.organisations import (
    ORG_PRICE,
    active_org,
    apply_org_subscription,
    give_seat,
    make_org,
    org,
    org_level,
    org_subscription,
    seats,
)
from ..support.stripe_objects import checkout_session, subscription
from ..support.stripe_standin import Reply, SubscriptionTruth
from ..support.web import csrf, csrf_from, login, logout, post_form


def now() -> int:
    return int(time.time())


@pytest.fixture
def level(app):
    return org_level(app)


def member(app, account_id: int):
    with app.app_context():
        acc = get_session().get(Account, account_id)
        m = acc.membership
        get_session().expunge_all()
        return m


def entitled(app, account_id: int) -> bool:
    with app.app_context():
        return is_entitled(get_session().get(Account, account_id).membership)


def mails_to(app, to: str) -> list:
    return [m for m in app.extensions.get("mail_outbox", []) if m["To"] == to]


def link_in(mail, path: str) -> str:
    found = re.search(rf"http://localhost({re.escape(path)}[^\s]+)", mail.get_content())
    assert found, mail.get_content()
    return found.group(1)


# --- self-serve --------------------------------------------------------------------------------

def test_the_organisation_level_is_not_offered_on_join(app, client, level):
    html = client.get("/join").get_data(as_text=True)
    assert "Organisation seat" not in html and ORG_PRICE not in html
    assert "$120 a year" in client.get("/organisations/join").get_data(as_text=True)


def test_self_serve_checkout_carries_quantity_and_the_organisation_level_then_the_organisation_is_active(
        app, client, stripe_api, level):
    buyer = make_account(app, email="buyer@relief.example", name="Bea Buyer")
    login(client, "buyer@relief.example", PASSWORD)

    def made(rec):
        return Reply(200, checkout_session(id="cs_org_1", member_id=buyer, email="buyer@relief.example",
                                           customer=None, status="open", payment_status="unpaid",
                                           url="https://checkout.stripe.com/c/pay/cs_org_1"))
    stripe_api.on("POST", "/v1/checkout/sessions", made)
    resp = post_form(client, "/organisations/join", {"organisation": "Relief Network", "seats": "5"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("cs_org_1")
    (req,) = stripe_api.calls("POST", "/v1/checkout/sessions")
    assert req.form["mode"] == "subscription"
    assert req.form["line_items[0][price]"] == ORG_PRICE
    assert req.form["line_items[0][quantity]"] == "5"
    assert req.form["line_items[0][adjustable_quantity][enabled]"] == "true"
    assert req.form["line_items[0][adjustable_quantity][minimum]"] == "3"
    assert "customer" not in req.form  # the organisation's own customer, never the buyer's
    assert req.form["customer_email"] == "buyer@relief.example"
    assert req.form["success_url"] == "http://localhost/organisations/join/success?session_id={CHECKOUT_SESSION_ID}"
    with app.app_context():
        o = get_session().scalars(select(Organisation)).one()
        assert (o.name, o.slug, o.admin_account_id, o.status) == ("Relief Network", "relief-network", buyer,
                                                                 MembershipStatus.PENDING)
        org_id = o.id

    # The buyer raised the quantity to 6 on Checkout's page; Stripe completes and sends its events.
    sub = org_subscription(id="sub_org_1", customer="cus_org_1", quantity=6)
    SubscriptionTruth(stripe_api).set(sub, as_of=now())
    completed = checkout_session(id="cs_org_1", member_id=buyer, email="buyer@relief.example",
                                 customer="cus_org_1", subscription="sub_org_1")
    assert post_event(client, event("checkout.session.completed", completed, created=now() - 5)).status_code == 200
    invoice = {"id": "in_org_1", "object": "invoice", "customer": "cus_org_1", "status": "paid",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_org_1"}}}
    assert post_event(client, event("invoice.paid", invoice, created=now() - 4)).status_code == 200
    o = org(app, org_id)
    assert (o.status, o.seats, o.stripe_customer_id, o.stripe_subscription_id) == (
        MembershipStatus.ACTIVE, 6, "cus_org_1", "sub_org_1")
    # The subscription pays for seats, not for the buyer's own membership.
    assert member(app, buyer).status == MembershipStatus.PENDING and not entitled(app, buyer)
    with app.app_context():
        customer = get_session().scalars(select(StripeCustomer).where(StripeCustomer.stripe_id == "cus_org_1")).one()
        assert (customer.account_id, customer.organisation_id) == (None, org_id)
    # The success page sends the admin to the organisation's page.
    stripe_api.on("GET", "/v1/checkout/sessions/cs_org_1", Reply(200, completed))
    resp = client.get("/organisations/join/success?session_id=cs_org_1")
    assert resp.status_code == 303 and resp.headers["Location"] == "/organisations/relief-network"
    html = client.get("/organisations/relief-network").get_data(as_text=True)
    assert "0 of 6 used" in html


def test_a_visitor_buys_seats_with_a_new_account(app, client, stripe_api, level):
    stripe_api.on("POST", "/v1/checkout/sessions", Reply(200, checkout_session(
        id="cs_org_2", member_id=1, email="new@ngo.example", customer=None, status="open",
        url="https://checkout.stripe.com/c/pay/cs_org_2")))
    resp = post_form(client, "/organisations/join", {"organisation": "New NGO", "seats": "3", "name": "Nia New",
                                                     "email": "new@ngo.example", "password": "a long password here",
                                                     "newsletter": "y"})
    assert resp.status_code == 303
    with app.app_context():
        acc = get_session().scalars(select(Account).where(Account.email == "new@ngo.example")).one()
        assert get_session().scalars(select(Organisation)).one().admin_account_id == acc.id


@pytest.mark.parametrize("seats_typed", ["2", "0", "x", "10001"])
def test_bad_seat_counts_get_a_field_error_and_create_nothing(app, client, stripe_api, level, seats_typed):
    make_account(app, email="buyer@relief.example")
    login(client, "buyer@relief.example", PASSWORD)
    resp = post_form(client, "/organisations/join", {"organisation": "Relief Network", "seats": seats_typed})
    assert resp.status_code == 422
    assert 'class="error"' in resp.get_data(as_text=True)
    assert stripe_api.calls("POST", "/v1/checkout/sessions") == []
    with app.app_context():
        assert get_session().scalar(select(func.count(Organisation.id))) == 0


# --- invitations and seat limits ---------------------------------------------------------------

def _invite(client, slug: str, email: str):
    return post_form(client, f"/organisations/{slug}/invite", {"email": email}, form_path=f"/organisations/{slug}")


def test_ten_seats_take_ten_invitations_and_refuse_the_eleventh(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    org_id, _ = active_org(app, client, admin_id=admin, seats=10)
    login(client, "admin@relief.example", PASSWORD)
    for i in range(11):
        assert _invite(client, "relief-network", f"reader{i}@relief.example").status_code == 303
    links = [link_in(mails_to(app, f"reader{i}@relief.example")[-1], "/organisations/invitations/")
             for i in range(11)]
    logout(client)
    for i, path in enumerate(links):
        guest = app.test_client()
        page = guest.get(path)
        assert page.status_code == 200 and "Accept the seat" in page.get_data(as_text=True)
        resp = guest.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True)), "name": f"Reader {i}",
                                      "password": "a long password here", "newsletter": "y"})
        if i < 10:
            assert resp.status_code == 303, resp.get_data(as_text=True)
            assert guest.get("/account").status_code == 200  # accepting signed them in
        else:
            assert resp.status_code == 409
            assert "All 10 seats" in resp.get_data(as_text=True)
    held = seats(app, org_id)
    assert len(held) == 10 and set(held.values()) == {"active"}
    with app.app_context():
        s = get_session()
        ids = {e: i for e, i in s.execute(select(Account.email, Account.id))}
    for i in range(10):
        m = member(app, ids[f"reader{i}@relief.example"])
        assert m.status == MembershipStatus.ORGANISATION and m.organisation_id == org_id
        assert entitled(app, ids[f"reader{i}@relief.example"])
    # The refused acceptance changed nothing: no account, and the link stays usable if a seat frees up.
    assert "reader10@relief.example" not in ids
    assert app.test_client().get(links[10]).status_code == 200


def _invitation_path(app, client, email: str) -> str:
    login(client, "admin@relief.example", PASSWORD)
    assert _invite(client, "relief-network", email).status_code == 303
    logout(client)
    return link_in(mails_to(app, email.lower())[-1], "/organisations/invitations/")


def test_an_invitation_link_is_single_use_and_a_get_never_burns_it(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    active_org(app, client, admin_id=admin, seats=3)
    path = _invitation_path(app, client, "New@Relief.example")
    guest = app.test_client()
    for _ in range(3):  # a mail scanner opening the link
        assert guest.get(path).status_code == 200
    page = guest.get(path).get_data(as_text=True)
    assert "Create your account" in page
    resp = guest.post(path, data={"csrf_token": csrf_from(page), "name": "New Reader",
                                  "password": "a long password here", "newsletter": "y"})
    assert resp.status_code == 303
    with app.app_context():
        acc = get_session().scalars(select(Account).where(Account.email == "new@relief.example")).one()
        assert acc.email_verified_at is not None and acc.membership.status == MembershipStatus.ORGANISATION
    assert app.test_client().get(path).status_code == 404


def test_a_proved_account_accepts_only_signed_in_with_its_own_password(app, client, level):
    """The link proves the address, not the account: it never opens an account whose owner has
    a password of their own (a forwarded invitation would otherwise be a 7-day login)."""
    admin = make_account(app, email="admin@relief.example")
    active_org(app, client, admin_id=admin, seats=3)
    colleague = make_account(app, email="colleague@relief.example", verified=True)
    path = _invitation_path(app, client, "colleague@relief.example")
    stranger = app.test_client()
    page = stranger.get(path).get_data(as_text=True)
    assert "Sign in as colleague@relief.example" in page and "Accept the seat" not in page
    resp = stranger.post(path, data={"csrf_token": csrf(stranger, "/login"), "newsletter": "y"})
    assert resp.status_code == 409 and stranger.get("/account").status_code in (302, 401)
    assert member(app, colleague).status == MembershipStatus.PENDING
    owner = app.test_client()
    login(owner, "colleague@relief.example", PASSWORD)
    page = owner.get(path).get_data(as_text=True)
    assert "Accept the seat" in page
    assert owner.post(path, data={"csrf_token": csrf_from(page), "newsletter": "y"}).status_code == 303
    assert member(app, colleague).status == MembershipStatus.ORGANISATION


def test_an_unproved_account_on_the_invited_address_is_taken_back_by_its_owner(app, client, level):
    """Pre-hijacking: a squatter signs up with the colleague's address before the invitation.
    Accepting makes the address's owner choose a new password and ends the squatter's sessions."""
    admin = make_account(app, email="admin@relief.example")
    active_org(app, client, admin_id=admin, seats=3)
    squatter = make_account(app, email="colleague@relief.example", name="Squatter")
    squatter_browser = app.test_client()
    login(squatter_browser, "colleague@relief.example", PASSWORD)
    path = _invitation_path(app, client, "colleague@relief.example")
    owner = app.test_client()
    page = owner.get(path).get_data(as_text=True)
    assert "Choose a password" in page
    resp = owner.post(path, data={"csrf_token": csrf_from(page), "newsletter": "y"})
    assert resp.status_code == 422  # a password is required
    page = owner.get(path).get_data(as_text=True)
    resp = owner.post(path, data={"csrf_token": csrf_from(page), "password": "the owners password",
                                  "newsletter": "y"})
    assert resp.status_code == 303 and owner.get("/account").status_code == 200
    assert squatter_browser.get("/account").status_code in (302, 401)
    assert login(app.test_client(), "colleague@relief.example", PASSWORD).status_code == 422
    assert member(app, squatter).status == MembershipStatus.ORGANISATION


def test_invitations_are_withdrawn_when_accepted_revoked_or_the_seat_removed(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    org_id, _ = active_org(app, client, admin_id=admin, seats=3)
    first = _invitation_path(app, client, "twice@relief.example")
    second = _invitation_path(app, client, "twice@relief.example")
    guest = app.test_client()
    page = guest.get(first).get_data(as_text=True)
    guest.post(first, data={"csrf_token": csrf_from(page), "name": "Twice", "password": "a long password here"})
    assert app.test_client().get(second).status_code == 404  # the spare link died with the acceptance
    revoked = _invitation_path(app, client, "revoked@relief.example")
    login(client, "admin@relief.example", PASSWORD)
    resp = post_form(client, "/organisations/relief-network/invitations/revoke", {"email": "revoked@relief.example"},
                     form_path="/organisations/relief-network")
    assert resp.status_code == 303
    assert app.test_client().get(revoked).status_code == 404
    with app.app_context():
        assert get_session().scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "seat_invitation_revoked", AuditLog.target_organisation_id == org_id)) == 1


def test_a_staff_address_is_answered_like_any_other_and_sent_nothing(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    make_account(app, email="editor@dawns.example", role=Role.STAFF, status=None)
    active_org(app, client, admin_id=admin, seats=3)
    login(client, "admin@relief.example", PASSWORD)
    staff = _invite(client, "relief-network", "editor@dawns.example")
    reader = _invite(client, "relief-network", "someone@relief.example")
    assert staff.status_code == reader.status_code == 303
    assert mails_to(app, "editor@dawns.example") == []


@pytest.mark.parametrize("name", ["Evil\r\nBcc: x@y.example", "Tab\there"])
def test_an_organisation_name_on_more_than_one_line_is_refused(app, client, stripe_api, level, name):
    make_account(app, email="buyer@relief.example")
    login(client, "buyer@relief.example", PASSWORD)
    resp = post_form(client, "/organisations/join", {"organisation": name, "seats": "5"})
    assert resp.status_code == 422 and "on one line" in resp.get_data(as_text=True)
    assert stripe_api.calls("POST", "/v1/checkout/sessions") == []


def test_an_organisation_named_like_a_page_gets_another_slug(app, client, level):
    make_org(app, admin_id=None, name="Join")
    with app.app_context():
        assert get_session().scalars(select(Organisation.slug)).one() == "join-2"


# --- domain claims -----------------------------------------------------------------------------

def test_a_domain_claim_needs_a_verified_address(app, client, level):
    org_id, _ = active_org(app, client, admin_id=None, seats=5, domains=["unicef.example"])
    reader = make_account(app, email="ana@unicef.example", name="Ana")
    login(client, "ana@unicef.example", PASSWORD)
    resp = post_form(client, "/organisations/relief-network/claim", {"newsletter": "y"})
    assert resp.status_code == 303  # to a page of its own: reloading it sends nothing more
    assert "Check your email" in client.get(resp.headers["Location"]).get_data(as_text=True)
    assert len(mails_to(app, "ana@unicef.example")) == 1
    assert seats(app, org_id) == {} and not entitled(app, reader)
    path = link_in(mails_to(app, "ana@unicef.example")[-1], "/organisations/claim/")
    page = client.get(path)
    assert page.status_code == 200 and seats(app, org_id) == {}  # looking takes nothing
    resp = client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert resp.status_code == 303
    assert seats(app, org_id) == {"ana@unicef.example": "active"}
    assert entitled(app, reader) and member(app, reader).status == MembershipStatus.ORGANISATION
    assert client.post(path, data={"csrf_token": csrf(client, "/account")}).status_code == 404  # used


def test_a_claim_link_takes_a_seat_only_for_the_signed_in_account_that_asked(app, client, level):
    """A squatter's unproved account on the domain asks for the link: its owner opening it must
    not be signed in to the squatter's account, nor give it the seat."""
    org_id, _ = active_org(app, client, admin_id=None, seats=5, domains=["unicef.example"])
    make_account(app, email="victim@unicef.example", name="Squatter")
    login(client, "victim@unicef.example", PASSWORD)
    post_form(client, "/organisations/relief-network/claim", {"newsletter": "y"})
    path = link_in(mails_to(app, "victim@unicef.example")[-1], "/organisations/claim/")
    owner = app.test_client()  # the address's owner, who cannot sign in to the squatter's account
    assert owner.get(path).status_code in (302, 401)
    other = make_account(app, email="other@unicef.example", verified=True)
    login(owner, "other@unicef.example", PASSWORD)
    page = owner.get(path)
    resp = owner.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert resp.status_code == 409
    assert seats(app, org_id) == {} and not entitled(app, other)


def test_a_verified_reader_on_the_domain_claims_at_once_and_another_domain_is_refused(app, client, level):
    org_id, _ = active_org(app, client, admin_id=None, seats=5, domains=["unicef.example"])
    make_account(app, email="bo@unicef.example", verified=True)
    outsider = make_account(app, email="eve@evil.example", verified=True)
    login(client, "bo@unicef.example", PASSWORD)
    assert post_form(client, "/organisations/relief-network/claim", {"newsletter": "y"}).status_code == 303
    assert seats(app, org_id) == {"bo@unicef.example": "active"}
    logout(client)
    login(client, "eve@evil.example", PASSWORD)
    page = client.get("/organisations/relief-network/claim").get_data(as_text=True)
    assert "for addresses on @unicef.example" in page
    resp = client.post("/organisations/relief-network/claim", data={"csrf_token": csrf(client, "/account"),
                                                                     "newsletter": "y"})
    assert resp.status_code == 403
    assert "eve@evil.example" not in seats(app, org_id) and not entitled(app, outsider)


# --- removing seats ----------------------------------------------------------------------------

def test_removing_a_seat_ends_entitlement_and_dawns_follows_the_policy(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    org_id, _ = active_org(app, client, admin_id=admin, seats=3)
    reader = make_account(app, email="r@relief.example")
    give_seat(app, org_id, reader)
    assert entitled(app, reader)
    with app.app_context():
        outbox = [r.action for r in get_session().scalars(select(NewsletterOutbox).where(
            NewsletterOutbox.account_id == reader))]
        assert outbox == ["subscribed"]  # a seat enrols in DAWNS like a membership
    login(client, "admin@relief.example", PASSWORD)
    with app.app_context():
        seat_id = get_session().scalar(select(Seat.id).where(Seat.account_id == reader))
    unconfirmed = post_form(client, f"/organisations/relief-network/seats/{seat_id}/remove", {},
                            form_path="/organisations/relief-network")
    assert unconfirmed.status_code == 303 and entitled(app, reader)  # not without the box ticked
    resp = post_form(client, f"/organisations/relief-network/seats/{seat_id}/remove", {"confirm": "y"},
                     form_path="/organisations/relief-network")
    assert resp.status_code == 303
    assert not entitled(app, reader) and member(app, reader).status == MembershipStatus.PENDING
    with app.app_context():
        s = get_session()
        actions = [r.action for r in s.scalars(select(NewsletterOutbox).where(NewsletterOutbox.account_id == reader)
                                               .order_by(NewsletterOutbox.id))]
        assert actions == ["subscribed", "unsubscribed"]  # NEWSLETTER_ON_LAPSE=unsubscribe
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "seat_removed")).one()
        assert (audit.actor_id, audit.target_account_id, audit.target_organisation_id) == (admin, reader, org_id)


def test_a_reader_with_their_own_membership_keeps_it_when_the_seat_goes(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    org_id, _ = active_org(app, client, admin_id=admin, seats=3)
    reader = make_account(app, email="payer@relief.example", customer="cus_PAYER")
    post_event(client, event("customer.subscription.created",
                             subscription(id="sub_PAYER", customer="cus_PAYER", member_id=reader), created=now() - 20))
    give_seat(app, org_id, reader)
    m = member(app, reader)
    assert m.status == MembershipStatus.ACTIVE and m.organisation_id is None  # their own comes first
    with app.app_context():
        s = get_session()
        from service.membership.organisations import remove_seat
        remove_seat(s, s.scalars(select(Seat).where(Seat.account_id == reader)).one())
        s.commit()
    assert member(app, reader).status == MembershipStatus.ACTIVE and entitled(app, reader)


# --- Stripe changes the quantity or ends the subscription ----------------------------------------

def test_quantity_lowered_in_stripe_suspends_only_the_newest_seats(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    org_id, sub = active_org(app, client, admin_id=admin, seats=5)
    readers = [make_account(app, email=f"s{i}@relief.example") for i in range(5)]
    for r in readers:
        give_seat(app, org_id, r)
    lowered = {**sub, "items": {**sub["items"], "data": [{**sub["items"]["data"][0], "quantity": 3}]}}
    apply_org_subscription(client, lowered, "updated", created=now())
    assert seats(app, org_id) == {"s0@relief.example": "active", "s1@relief.example": "active",
                                  "s2@relief.example": "active", "s3@relief.example": "suspended",
                                  "s4@relief.example": "suspended"}
    assert [entitled(app, r) for r in readers] == [True, True, True, False, False]
    assert org(app, org_id).seats == 3
    (mail,) = mails_to(app, "admin@relief.example")
    assert "s3@relief.example" in mail.get_content() and "s4@relief.example" in mail.get_content()
    login(client, "admin@relief.example", PASSWORD)
    assert "2 of the most recently taken seats are suspended" in client.get(
        "/organisations/relief-network").get_data(as_text=True)
    # Raised again: they come back.
    apply_org_subscription(client, sub, "updated", created=now() + 1)
    assert set(seats(app, org_id).values()) == {"active"}
    assert all(entitled(app, r) for r in readers)


def test_the_organisations_subscription_ends_and_every_seat_only_reader_loses_access_once(
        mc_app, mailchimp):
    app, client = mc_app, mc_app.test_client()
    org_level(app)
    admin = make_account(app, email="admin@relief.example")
    org_id, sub = active_org(app, client, admin_id=admin, seats=3)
    readers = [make_account(app, email=f"m{i}@relief.example") for i in range(3)]
    for r in readers:
        give_seat(app, org_id, r)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["newsletter", "sync"]).exit_code == 0
    assert all(mailchimp.members[k].status == "subscribed" for k in mailchimp.members) and len(mailchimp.members) == 3
    mailchimp.fail_next(6, 503)  # Mailchimp is down when the organisation's subscription ends
    apply_org_subscription(client, {**sub, "status": "canceled", "ended_at": now()}, "deleted", created=now() + 5)
    assert org(app, org_id).status == MembershipStatus.CANCELED
    assert not any(entitled(app, r) for r in readers)
    for _ in range(3):
        runner.invoke(args=["newsletter", "sync"])
    mailchimp.failures.clear()
    assert runner.invoke(args=["newsletter", "sync"]).exit_code == 0
    with app.app_context():
        rows = get_session().execute(select(NewsletterOutbox.account_id, NewsletterOutbox.action,
                                            NewsletterOutbox.status)
                                     .where(NewsletterOutbox.action == "unsubscribed")).all()
    assert sorted(a for a, _, _ in rows) == sorted(readers)
    assert {s for _, _, s in rows} == {"delivered"}
    assert {m.status for m in mailchimp.members.values()} == {"unsubscribed"}


def test_past_due_beyond_grace_stops_the_seats_at_the_moment_of_the_read(app, client, level):
    org_id, sub = active_org(app, client, admin_id=None, seats=3)
    reader = make_account(app, email="g@relief.example")
    give_seat(app, org_id, reader)
    start = now() - 40 * 86400  # the unpaid period began 40 days ago: beyond the grace
    late = org_subscription(id=sub["id"], customer=sub["customer"], quantity=3, status="past_due",
                            period_start=start)
    apply_org_subscription(client, late, "updated", created=now())
    assert org(app, org_id).status == MembershipStatus.PAST_DUE
    assert not entitled(app, reader)
    recent = org_subscription(id=sub["id"], customer=sub["customer"], quantity=3, status="past_due",
                              period_start=now() - 86400)
    apply_org_subscription(client, recent, "updated", created=now() + 1)
    m = member(app, reader)
    assert m.status == MembershipStatus.ORGANISATION and entitled(app, reader)
    assert m.paid_through is not None  # until the paid time plus the grace


# --- authorisation -----------------------------------------------------------------------------

def test_only_its_admin_manages_an_organisation(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    other_admin = make_account(app, email="other@ngo.example")
    active_org(app, client, admin_id=admin, seats=3)
    make_org(app, admin_id=other_admin, name="Other NGO")
    make_account(app, email="nosy@relief.example")
    login(client, "nosy@relief.example", PASSWORD)
    assert client.get("/organisations/relief-network").status_code == 404
    token = csrf(client, "/account")
    assert client.post("/organisations/relief-network/invite", data={"csrf_token": token,
                                                                     "email": "x@relief.example"}).status_code == 404
    assert client.post("/organisations/relief-network/seats/1/remove",
                       data={"csrf_token": token}).status_code == 404
    logout(client)
    login(client, "other@ngo.example", PASSWORD)
    assert client.get("/organisations/other-ngo").status_code == 200
    assert client.get("/organisations/relief-network").status_code == 404
    assert client.get("/staff").status_code == 403
    assert client.get("/staff/organisations").status_code in (403, 404)
    with app.app_context():
        assert get_session().scalar(select(func.count(AccountToken.id))) == 0
    anonymous = app.test_client()
    assert anonymous.get("/organisations/relief-network").status_code in (302, 401)


# --- reconcile after missed webhooks -------------------------------------------------------------

def test_reconcile_settles_a_missed_organisation_checkout_and_never_links_its_customer_by_email(
        app, client, runner, stripe_api, level):
    """The buyer paid, but checkout.session.completed was lost and the success page never
    reached: reconcile fulfils our open Checkout (the customer goes to the organisation), and the
    seats' subscription never makes the buyer an active member through the email fallback."""
    buyer = make_account(app, email="buyer@relief.example", verified=True)
    login(client, "buyer@relief.example", PASSWORD)
    stripe_api.on("POST", "/v1/checkout/sessions", Reply(200, checkout_session(
        id="cs_org_lost", member_id=buyer, email="buyer@relief.example", customer=None, status="open",
        url="https://checkout.stripe.com/c/pay/cs_org_lost")))
    post_form(client, "/organisations/join", {"organisation": "Relief Network", "seats": "4"})
    sub = org_subscription(id="sub_org_lost", customer="cus_org_lost", quantity=4)
    stripe_api.on("GET", "/v1/subscriptions", Reply(200, {"object": "list", "data": [sub], "has_more": False}))
    SubscriptionTruth(stripe_api).set(sub)
    stripe_api.on("GET", "/v1/customers/cus_org_lost", Reply(200, {"id": "cus_org_lost", "object": "customer",
                                                                    "email": "buyer@relief.example"}))
    stripe_api.on("GET", "/v1/checkout/sessions/cs_org_lost", Reply(200, checkout_session(
        id="cs_org_lost", member_id=buyer, email="buyer@relief.example", customer="cus_org_lost",
        subscription="sub_org_lost")))
    result = runner.invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 0, result.output
    assert "checkout cs_org_lost: completed, fulfilled (organisation)" in result.output
    with app.app_context():
        o = get_session().scalars(select(Organisation)).one()
        assert (o.status, o.seats, o.stripe_customer_id) == (MembershipStatus.ACTIVE, 4, "cus_org_lost")
    assert member(app, buyer).status == MembershipStatus.PENDING


def test_reconcile_never_links_a_seats_subscription_to_a_reader_by_email(app, runner, stripe_api, level):
    """A subscription to seats made outside any Checkout of ours (the Dashboard): its customer's
    address is a reader's, yet it pays for an organisation, never for that reader."""
    reader = make_account(app, email="reader@relief.example", verified=True)
    sub = org_subscription(id="sub_org_dash", customer="cus_org_dash", quantity=3)
    stripe_api.on("GET", "/v1/subscriptions", Reply(200, {"object": "list", "data": [sub], "has_more": False}))
    SubscriptionTruth(stripe_api).set(sub)
    stripe_api.on("GET", "/v1/customers/cus_org_dash", Reply(200, {"id": "cus_org_dash", "object": "customer",
                                                                    "email": "reader@relief.example"}))
    assert runner.invoke(args=["stripe", "reconcile"]).exit_code == 0
    assert member(app, reader).status == MembershipStatus.PENDING
    with app.app_context():
        assert get_session().scalars(select(StripeCustomer.account_id).where(
            StripeCustomer.stripe_id == "cus_org_dash")).first() is None


def test_a_second_organisation_checkout_expires_the_first(app, client, stripe_api, level):
    buyer = make_account(app, email="buyer@relief.example")
    login(client, "buyer@relief.example", PASSWORD)
    made = iter(["cs_org_a", "cs_org_b"])

    def create(rec):
        sid = next(made)
        return Reply(200, checkout_session(id=sid, member_id=buyer, email="buyer@relief.example", customer=None,
                                           status="open", url=f"https://checkout.stripe.com/c/pay/{sid}"))
    stripe_api.on("POST", "/v1/checkout/sessions", create)
    stripe_api.on("GET", "/v1/checkout/sessions/cs_org_a", Reply(200, checkout_session(
        id="cs_org_a", member_id=buyer, email="buyer@relief.example", customer=None, status="open")))
    stripe_api.on("POST", "/v1/checkout/sessions/cs_org_a/expire", Reply(200, checkout_session(
        id="cs_org_a", member_id=buyer, email="buyer@relief.example", customer=None, status="expired")))
    for _ in range(2):
        assert post_form(client, "/organisations/join", {"organisation": "Relief Network", "seats": "4"}
                         ).status_code == 303
    assert len(stripe_api.calls("POST", "/v1/checkout/sessions/cs_org_a/expire")) == 1
    with app.app_context():
        assert get_session().scalar(select(func.count(Organisation.id))) == 1  # the unpaid one is reused


# --- what the admin does on their page ---------------------------------------------------------

def test_the_admin_changes_the_number_of_seats_in_stripe_and_takes_one_for_themselves(app, client, stripe_api,
                                                                                      level):
    admin = make_account(app, email="admin@relief.example")
    org_id, sub = active_org(app, client, admin_id=admin, seats=3)
    raised = org_subscription(id=sub["id"], customer=sub["customer"], quantity=8)
    raised["items"]["data"][0]["id"] = sub["items"]["data"][0]["id"]
    stripe_api.on("POST", f"/v1/subscriptions/{sub['id']}", Reply(200, raised))
    SubscriptionTruth(stripe_api).set(raised)
    login(client, "admin@relief.example", PASSWORD)
    resp = post_form(client, "/organisations/relief-network/seats/number", {"seats": "8"},
                     form_path="/organisations/relief-network")
    assert resp.status_code == 303
    (req,) = stripe_api.calls("POST", f"/v1/subscriptions/{sub['id']}")
    assert req.form["items[0][id]"] == sub["items"]["data"][0]["id"] and req.form["items[0][quantity]"] == "8"
    assert req.form["proration_behavior"] == "create_prorations"
    assert org(app, org_id).seats == 8
    assert not entitled(app, admin)
    assert post_form(client, "/organisations/relief-network/seats/mine", {},
                     form_path="/organisations/relief-network").status_code == 303
    assert entitled(app, admin) and member(app, admin).status == MembershipStatus.ORGANISATION
    with app.app_context():
        assert get_session().scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "organisation_seats", AuditLog.actor_id == admin)) == 1


def test_a_seat_the_admin_removed_is_not_claimed_back_by_domain(app, client, level):
    admin = make_account(app, email="admin@relief.example")
    org_id, _ = active_org(app, client, admin_id=admin, seats=3, domains=["relief.example"])
    carol = make_account(app, email="carol@relief.example", verified=True)
    give_seat(app, org_id, carol)
    with app.app_context():
        seat_id = get_session().scalar(select(Seat.id).where(Seat.account_id == carol))
    login(client, "admin@relief.example", PASSWORD)
    post_form(client, f"/organisations/relief-network/seats/{seat_id}/remove", {"confirm": "y"},
              form_path="/organisations/relief-network")
    logout(client)
    login(client, "carol@relief.example", PASSWORD)
    resp = post_form(client, "/organisations/relief-network/claim", {"newsletter": "y"})
    assert resp.status_code == 409 and "removed by its admin" in resp.get_data(as_text=True)
    assert not entitled(app, carol)


def test_staff_set_the_domains_of_an_organisation_bought_by_card(app, client, level):
    from ..support.staff import client_as

    org_id, _ = active_org(app, client, admin_id=None, seats=3)
    staff = client_as(app, "staff")
    resp = post_form(staff, f"/staff/organisations/{org_id}/domains",
                     {"domains-domains": "Unicef.example, @who.example", "domains-confirm": "y"},
                     form_path=f"/staff/organisations/{org_id}")
    assert resp.status_code in (302, 303)
    assert org(app, org_id).domains == ["unicef.example", "who.example"]
    bad = post_form(staff, f"/staff/organisations/{org_id}/domains",
                    {"domains-domains": "not a domain", "domains-confirm": "y"}, form_path=f"/staff/organisations/{org_id}")
    assert bad.status_code in (302, 303) and org(app, org_id).domains == ["unicef.example", "who.example"]
    with app.app_context():
        assert get_session().scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "organisation_domains", AuditLog.target_organisation_id == org_id)) == 1
