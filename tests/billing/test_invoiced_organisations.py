"""By invoice (SPEC "Organisations"): a staff-created organisation makes a Stripe customer and a
`send_invoice` subscription with the right parameters; until its first invoice is paid, the
staff-set trial entitles its seats; after it, the subscription decides."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus, Role
from service.membership.organisations import recompute_organisation, take_seat
from service.membership.service import is_entitled
from service.models import Account, AuditLog, Organisation, Seat, StripeCustomer, StripeSubscription

from ..staff.organisation_support import (
    CUSTOMER,
    ORG_PRICE,
    SUBSCRIPTION,
    InvoicedStripe,
    create_org,
    invoice,
    org_level,
    organisation,
)
from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.staff import client_as
from ..support.stripe_standin import stripe_error


@pytest.fixture
def level(app):
    return org_level(app)


@pytest.fixture
def stripe_orgs(stripe_api):
    return InvoicedStripe(stripe_api)


def _seat_for(app, org_id: int, email: str) -> int:
    reader = make_account(app, email=email, name=email.split("@")[0], verified=True)
    with app.app_context():
        s = get_session()
        take_seat(s, s.get(Organisation, org_id), s.get(Account, reader), "invitation")
        s.commit()
    return reader


def _entitled(app, account_id: int, now=None) -> bool:
    with app.app_context():
        return is_entitled(get_session().get(Account, account_id).membership, now)


def _status(app, account_id: int) -> MembershipStatus:
    with app.app_context():
        return get_session().get(Account, account_id).membership.status


def test_creation_sends_a_send_invoice_subscription_at_the_level_price(app, stripe_api, stripe_orgs, level):
    resp = create_org(app, level, seats=7, trial_days=14)
    assert resp.status_code == 303
    org = organisation(app)
    assert resp.headers["Location"] == f"/staff/organisations/{org.id}"

    (customer,) = stripe_api.calls("POST", "/v1/customers")
    assert customer.form == {"email": "billing@unicef.org", "name": "UNICEF Nairobi",
                             "metadata[organisation]": "unicef-nairobi"}
    (sub,) = stripe_api.calls("POST", "/v1/subscriptions")
    assert sub.form == {"customer": CUSTOMER, "items[0][price]": ORG_PRICE, "items[0][quantity]": "7",
                        "collection_method": "send_invoice", "days_until_due": "30",
                        "metadata[organisation]": "unicef-nairobi"}
    # Read back at once (as the webhook would): the organisation is applied before the page answers.
    assert len(stripe_api.calls("GET", f"/v1/subscriptions/{SUBSCRIPTION}")) == 1

    assert (org.billing, org.slug, org.seats, org.domains) == ("invoice", "unicef-nairobi", 7, ["unicef.org"])
    assert (org.stripe_customer_id, org.stripe_subscription_id) == (CUSTOMER, SUBSCRIPTION)
    assert org.first_paid_at is None
    assert timedelta(days=13, hours=23) < org.trial_ends_at - utcnow() <= timedelta(days=14)
    with app.app_context():
        s = get_session()
        contact = s.get(Account, org.admin_account_id)
        assert (contact.email, contact.name, contact.role) == ("billing@unicef.org", "Wanjiru Kamau", Role.MEMBER)
        assert contact.membership.newsletter_opt_in is False  # nobody consented for them
        assert s.scalar(select(StripeCustomer.organisation_id).where(StripeCustomer.stripe_id == CUSTOMER)) == org.id
        row = s.scalars(select(StripeSubscription).where(StripeSubscription.stripe_id == SUBSCRIPTION)).one()
        assert (row.organisation_id, row.account_id) == (org.id, None)
        (audit,) = s.scalars(select(AuditLog).where(AuditLog.action == "organisation_create")).all()
        assert audit.target_organisation_id == org.id and audit.target_account_id == contact.id
        assert audit.details["subscription"] == SUBSCRIPTION and audit.details["contact_created"] is True
    # The new contact chooses a password through a single-use link.
    (mail,) = [m for m in app.extensions["mail_outbox"] if m["To"] == "billing@unicef.org"]
    assert "/reset/" in mail.get_content() and "/organisations/unicef-nairobi" in mail.get_content()


def test_the_trial_entitles_the_seats_until_it_ends(app, stripe_orgs, level):
    create_org(app, level, trial_days=10)
    org = organisation(app)
    reader = _seat_for(app, org.id, "ama@unicef.org")
    assert _status(app, reader) == MembershipStatus.ORGANISATION
    assert _entitled(app, reader)
    # Stripe calls the unpaid subscription "active": only the trial entitles, and only until it ends.
    assert not _entitled(app, reader, now=org.trial_ends_at + timedelta(minutes=1))
    with app.app_context():
        s = get_session()
        o = s.get(Organisation, org.id)
        o.trial_ends_at = utcnow() - timedelta(seconds=1)
        recompute_organisation(s, o)
        s.commit()
    assert not _entitled(app, reader)
    assert _status(app, reader) != MembershipStatus.ORGANISATION


def test_a_trial_of_zero_days_entitles_nothing_before_the_invoice_is_paid(app, client, stripe_orgs, level):
    create_org(app, level, trial_days=0)
    org = organisation(app)
    assert org.trial_ends_at is None
    reader = _seat_for(app, org.id, "ama@unicef.org")
    assert not _entitled(app, reader)
    assert post_event(client, event("invoice.paid", invoice())).status_code == 200
    assert _entitled(app, reader) and _status(app, reader) == MembershipStatus.ORGANISATION


def test_the_paid_invoice_ends_the_trial_and_the_subscription_decides(app, client, stripe_orgs, level):
    create_org(app, level, trial_days=30)
    org = organisation(app)
    reader = _seat_for(app, org.id, "ama@unicef.org")

    assert post_event(client, event("invoice.paid", invoice())).status_code == 200
    paid = organisation(app)
    assert paid.first_paid_at is not None
    assert paid.status == MembershipStatus.ACTIVE
    assert paid.paid_through.timestamp() == stripe_orgs.current()["items"]["data"][0]["current_period_end"]
    # Entitled by the paid subscription now, well beyond where the trial would have ended.
    assert _entitled(app, reader, now=org.trial_ends_at + timedelta(days=30))

    # The trial no longer stands in: when the subscription ends, the seats stop entitling at once.
    post_event(client, event("customer.subscription.deleted", stripe_orgs.set_status("canceled")))
    assert organisation(app).status == MembershipStatus.CANCELED
    assert not _entitled(app, reader)
    assert organisation(app).trial_ends_at > utcnow()  # still in the future, and it no longer counts


def test_an_existing_reader_is_the_contact_and_no_account_is_made(app, stripe_orgs, level):
    contact = make_account(app, email="billing@unicef.org", name="Existing Contact", verified=True)
    create_org(app, level, contact_name="")
    assert organisation(app).admin_account_id == contact
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(Account)
                                    .where(Account.email == "billing@unicef.org")) == 1
    (mail,) = [m for m in app.extensions["mail_outbox"] if m["To"] == "billing@unicef.org"]
    assert "/reset/" not in mail.get_content()


def test_an_unproved_account_on_the_contacts_address_is_taken_back_for_its_owner(app, stripe_orgs, level):
    """Anyone can sign up with anyone's address: a squatter's account must not become the
    organisation's admin. Its password is replaced, its sessions end, and the address's owner
    chooses a password through the mailed link."""
    from service.models import LoginSession

    from ..support.factories import PASSWORD
    from ..support.web import login

    squatter = make_account(app, email="billing@unicef.org", name="Squatter")
    squatter_browser = app.test_client()
    login(squatter_browser, "billing@unicef.org", PASSWORD)
    assert squatter_browser.get("/account").status_code == 200
    create_org(app, level, contact_name="")
    assert organisation(app).admin_account_id == squatter
    assert squatter_browser.get("/account").status_code in (302, 401)  # signed out
    assert login(app.test_client(), "billing@unicef.org", PASSWORD).status_code == 422  # old password gone
    (mail,) = [m for m in app.extensions["mail_outbox"] if m["To"] == "billing@unicef.org"]
    assert "/reset/" in mail.get_content()
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(LoginSession).where(
            LoginSession.account_id == squatter, LoginSession.ended_at.is_(None))) == 0


@pytest.mark.parametrize("fields, message", [
    ({"contact_email": "staff-user@example.org"}, "is a staff account"),
    ({"contact_name": ""}, "give the contact"),
    ({"domains": "not a domain"}, "is not an email domain"),
])
def test_refusals_make_nothing_anywhere(app, stripe_api, stripe_orgs, level, fields, message):
    staff = client_as(app, "staff")
    resp = create_org(app, level, staff=staff, **fields)
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    assert 'value="UNICEF Nairobi"' in resp.get_data(as_text=True)  # the form stays filled in
    assert organisation(app) is None
    assert stripe_api.calls("POST", "/v1/customers") == []


def test_a_customer_refused_by_stripe_saves_nothing(app, stripe_api, stripe_orgs, level):
    stripe_api.on("POST", "/v1/customers", stripe_error(500, "api_error", "Stripe is down"))
    resp = create_org(app, level)
    assert resp.status_code == 422 and "Nothing was saved" in resp.get_data(as_text=True)
    assert organisation(app) is None
    with app.app_context():
        assert get_session().scalar(select(Account.id).where(Account.email == "billing@unicef.org")) is None
    assert stripe_api.calls("POST", "/v1/subscriptions") == []


def test_a_subscription_refused_after_the_customer_names_the_customer_to_delete(app, stripe_api, stripe_orgs, level):
    stripe_api.on("POST", "/v1/subscriptions", stripe_error(400, "invalid_request_error", "No such price"))
    resp = create_org(app, level)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and CUSTOMER in html and "delete that customer" in html
    assert organisation(app) is None
    with app.app_context():
        s = get_session()
        assert s.scalar(select(Account.id).where(Account.email == "billing@unicef.org")) is None
        assert s.scalar(select(StripeCustomer.id).where(StripeCustomer.stripe_id == CUSTOMER)) is None
        assert s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "organisation_create")) == 0


def test_a_failed_first_read_keeps_the_organisation_its_subscription_belongs_to(app, stripe_api, stripe_orgs, level):
    stripe_api.on("GET", f"/v1/subscriptions/{SUBSCRIPTION}", stripe_error(500, "api_error", "read failed"))
    resp = create_org(app, level, trial_days=5)
    assert resp.status_code == 303
    org = organisation(app)
    assert (org.stripe_customer_id, org.stripe_subscription_id) == (CUSTOMER, SUBSCRIPTION)
    reader = _seat_for(app, org.id, "ama@unicef.org")
    assert _entitled(app, reader)  # the trial entitles meanwhile
    staff_page = client_as(app, "admin").get(f"/staff/organisations/{org.id}")
    assert staff_page.status_code == 200


def test_seats_are_never_more_than_bought(app, stripe_orgs, level):
    create_org(app, level, seats=1)
    org = organisation(app)
    _seat_for(app, org.id, "first@unicef.org")
    from service.membership.organisations import SeatError

    second = make_account(app, email="second@unicef.org", name="Second")
    with app.app_context(), pytest.raises(SeatError):
        s = get_session()
        take_seat(s, s.get(Organisation, org.id), s.get(Account, second), "invitation")
    with app.app_context():
        assert get_session().scalar(select(func.count()).select_from(Seat).where(Seat.status == "active")) == 1
