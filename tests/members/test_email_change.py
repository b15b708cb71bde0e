"""A Portal email change: Stripe's email is the billing email; the login and the DAWNS address
move only when the reader, signed in, follows the link sent to the new address."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from service.db import get_session
from service.domain.membership import MembershipStatus
from service.models import Account, AccountToken, NewsletterOutbox

from ..support.events import event, post_event
from ..support.factories import PASSWORD, make_account
from ..support.stripe_objects import subscription
from ..support.web import csrf_from, login

LINK_RE = re.compile(r"http://localhost(/account/email/confirm/[A-Za-z0-9_-]+)")


def _member(app) -> int:
    m = make_account(app, customer="cus_P")
    post_event(app.test_client(), event("customer.subscription.created",
                                        subscription(id="sub_P", customer="cus_P", status="active")))
    return m


def _portal_change(app, email: str, created: int | None = None):
    resp = post_event(app.test_client(), event("customer.updated", {"id": "cus_P", "object": "customer",
                                                                    "email": email}, created=created))
    resp.close()  # the mail goes after the response
    assert resp.status_code == 200


def _account(app, member) -> tuple[str, str, str | None]:
    with app.app_context():
        acc = get_session().get(Account, member)
        rows = get_session().scalars(select(NewsletterOutbox).where(NewsletterOutbox.account_id == member)
                                     .order_by(NewsletterOutbox.id)).all()
        return acc.email, acc.membership.status.value, rows[-1].email if rows else None


def _link_in_mail(app, to: str) -> str:
    sent = [m for m in app.extensions["mail_outbox"] if m["To"] == to]
    assert sent, f"no mail to {to}"
    return LINK_RE.search(sent[-1].get_content()).group(1)


def _confirm(client, path, password=PASSWORD):
    page = client.get(path)
    if page.status_code != 200:
        return page
    resp = client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True)), "password": password})
    resp.close()
    return resp


def test_portal_email_change_keeps_login_and_dawns_until_the_link_is_followed(app):
    member = _member(app)
    assert _account(app, member) == ("reader@example.org", "active", "reader@example.org")
    _portal_change(app, "Reader.New@Example.org")
    # Nothing moved: not the login, not the DAWNS address.
    assert _account(app, member) == ("reader@example.org", "active", "reader@example.org")
    path = _link_in_mail(app, "reader.new@example.org")
    mail = app.extensions["mail_outbox"][-1]
    assert mail["Subject"] == "Use this address to sign in?"

    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    # Opening the link (a mail scanner, a preview) changes nothing: it shows a button.
    assert "Sign in with reader.new@example.org?" in client.get(path).get_data(as_text=True)
    assert _account(app, member)[0] == "reader@example.org"
    done = _confirm(client, path)
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert _account(app, member) == ("reader.new@example.org", "active", "reader.new@example.org")
    # The old address is told.
    assert app.extensions["mail_outbox"][-1]["To"] == "reader@example.org"
    # The new address signs in; the old one no longer does.
    assert login(app.test_client(), "reader.new@example.org", PASSWORD).status_code == 303
    assert login(app.test_client(), "reader@example.org", PASSWORD).status_code == 422

    # A second use changes nothing.
    again = _confirm(client, path)
    assert again.status_code == 400
    assert _account(app, member)[0] == "reader.new@example.org"


def test_an_expired_link_changes_nothing(app):
    member = _member(app)
    _portal_change(app, "later@example.org")
    path = _link_in_mail(app, "later@example.org")
    with app.app_context():
        s = get_session()
        row = s.scalars(select(AccountToken)).one()
        assert row.expires_at - row.created_at == timedelta(hours=24)
        s.execute(update(AccountToken).values(expires_at=row.created_at))  # 24 hours later
        s.commit()
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    assert _confirm(client, path).status_code == 400
    assert _account(app, member)[0] == "reader@example.org"


def test_the_link_works_only_for_the_account_signed_in(app):
    """Whoever owns an address typed into Stripe cannot take the account with the link alone."""
    member = _member(app)
    make_account(app, email="stranger@example.org")
    _portal_change(app, "typo@example.org")
    path = _link_in_mail(app, "typo@example.org")
    anonymous = app.test_client()
    assert anonymous.get(path).status_code == 302  # log in first
    stranger = app.test_client()
    login(stranger, "stranger@example.org", PASSWORD)
    assert _confirm(stranger, path).status_code == 400
    assert _account(app, member)[0] == "reader@example.org"


def test_only_the_newest_link_works(app):
    member = _member(app)
    _portal_change(app, "first@example.org", created=1_700_000_000)
    first = _link_in_mail(app, "first@example.org")
    _portal_change(app, "second@example.org", created=1_700_000_100)
    second = _link_in_mail(app, "second@example.org")
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    assert _confirm(client, first).status_code == 400
    assert _confirm(client, second).status_code == 303
    assert _account(app, member)[0] == "second@example.org"


def test_an_address_taken_meanwhile_is_refused_clearly(app):
    member = _member(app)
    _portal_change(app, "soon.taken@example.org")
    path = _link_in_mail(app, "soon.taken@example.org")
    make_account(app, email="soon.taken@example.org", name="Someone Else")
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    resp = _confirm(client, path)
    assert resp.status_code == 303
    assert "Another account already signs in with that address" in client.get("/account").get_data(as_text=True)
    assert _account(app, member)[0] == "reader@example.org"
    assert _account(app, member)[1] == MembershipStatus.ACTIVE.value


def test_a_stolen_session_alone_cannot_confirm_the_change(app):
    """The link and the session are not enough: the current password is asked too, so a stolen
    cookie (plus an email typed into the Portal) cannot move the sign-in address."""
    member = _member(app)
    _portal_change(app, "attacker@evil.example")
    path = _link_in_mail(app, "attacker@evil.example")
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    refused = _confirm(client, path, password="not the password")
    assert refused.status_code == 422 and "That is not your current password." in refused.get_data(as_text=True)
    assert _account(app, member)[0] == "reader@example.org"
    assert _confirm(client, path).status_code == 303  # the owner, with their password, can


def test_confirming_signs_out_every_other_device(app):
    member = _member(app)
    other = app.test_client()
    login(other, "reader@example.org", PASSWORD)
    _portal_change(app, "moved@example.org")
    path = _link_in_mail(app, "moved@example.org")
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    assert _confirm(client, path).status_code == 303
    assert other.get("/account").status_code == 302
    assert client.get("/account").status_code == 200
    assert _account(app, member)[0] == "moved@example.org"


def test_a_link_dies_when_the_billing_email_moves_back(app):
    member = _member(app)
    _portal_change(app, "typo@elsewhere.example", created=1_700_000_000)
    path = _link_in_mail(app, "typo@elsewhere.example")
    _portal_change(app, "reader@example.org", created=1_700_000_100)  # fixed in the Portal
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    assert _confirm(client, path).status_code == 400
    assert _account(app, member)[0] == "reader@example.org"


def test_the_confirmation_mail_does_not_reveal_the_sign_in_email(app):
    _member(app)
    _portal_change(app, "someone@elsewhere.example")
    mail = [m for m in app.extensions["mail_outbox"] if m["To"] == "someone@elsewhere.example"][-1]
    assert "reader@example.org" not in mail.get_content()


def test_a_billing_email_that_is_not_one_address_asks_nothing_and_sends_nothing(app):
    """Stripe's email field is free text to us: "a@x,b@y" would be two recipients in a header."""
    from service.models import StripeEvent

    member = _member(app)
    _portal_change(app, "me@example.org,spy@evil.example")
    assert _account(app, member)[0] == "reader@example.org"
    assert not [m for m in app.extensions.get("mail_outbox", []) if "spy@evil.example" in m["To"]]
    with app.app_context():
        evt = get_session().scalars(select(StripeEvent).where(StripeEvent.type == "customer.updated")).one()
        assert evt.status == "done" and "not one email address" in (evt.note or "")
