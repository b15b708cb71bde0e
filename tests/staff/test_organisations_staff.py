"""Organisations in the staff console: the list, an organisation's page (seats, Stripe ids, a
timeline), its actions (change seats at Stripe, comp, remove a seat), each audited, and who may."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus, Role
from service.membership.organisations import take_seat
from service.models import Account, AuditLog, Organisation, Seat

from ..support.events import event, post_event
from ..support.factories import PASSWORD, make_account
from ..support.staff import client_as
from ..support.stripe_standin import stripe_error
from ..support.web import csrf_from, login
from .organisation_support import (
    CUSTOMER,
    ITEM,
    SUBSCRIPTION,
    InvoicedStripe,
    create_org,
    invoice,
    org_level,
    organisation,
)


@pytest.fixture
def invoiced(app, stripe_api):
    """An organisation paying by invoice, made through the console, with its Stripe stand-in."""
    stripe = InvoicedStripe(stripe_api)
    make_account(app, email="creator@example.org", name="Creator", role=Role.STAFF)
    creator = app.test_client()
    login(creator, "creator@example.org", PASSWORD)
    assert create_org(app, org_level(app), staff=creator, seats=5).status_code == 303
    stripe_api.requests.clear()
    return organisation(app), stripe


@pytest.fixture
def comped(app):
    """An organisation with no subscription, comped by staff (a partner, say)."""
    with app.app_context():
        s = get_session()
        org = Organisation(name="Partner Newsroom", slug="partner-newsroom", seats=2, domains=[], billing="invoice",
                           comped_at=utcnow(), comp_reason="media partner", status=MembershipStatus.COMPED)
        s.add(org)
        s.commit()
        return org.id


def _seat(app, org_id: int, email: str) -> int:
    reader = make_account(app, email=email, name=email.split("@")[0].title(), verified=True)
    with app.app_context():
        s = get_session()
        take_seat(s, s.get(Organisation, org_id), s.get(Account, reader), "invitation")
        s.commit()
    return reader


def _post(client, page: str, path: str, data: dict):
    token = csrf_from(client.get(page).get_data(as_text=True))
    resp = client.post(path, data={**data, "csrf_token": token})
    resp.close()
    return resp


def _audits(app, org_id: int) -> list[tuple[str, int | None, dict]]:
    with app.app_context():
        return [(a.action, a.target_account_id, a.details) for a in get_session().scalars(
            select(AuditLog).where(AuditLog.target_organisation_id == org_id).order_by(AuditLog.id))]


def _seats(app, org_id: int) -> dict[str, str]:
    with app.app_context():
        return dict(get_session().execute(select(Account.email, Seat.status).join(Seat, Seat.account_id == Account.id)
                                          .where(Seat.organisation_id == org_id)).all())


def _entitled(app, account_id: int) -> bool:
    from service.membership.service import is_entitled

    with app.app_context():
        return is_entitled(get_session().get(Account, account_id).membership)


# --- who may ------------------------------------------------------------------------------------

PAGES = ["/staff/organisations", "/staff/organisations/new", "/staff/organisations/{org}"]
ACTIONS = ["/staff/organisations/new", "/staff/organisations/{org}/seats", "/staff/organisations/{org}/comp",
           "/staff/organisations/{org}/comp/end", "/staff/organisations/{org}/seats/{seat}/remove"]


@pytest.mark.parametrize("caller, expected", [("anonymous", 302), ("member", 403), ("staff", 200), ("admin", 200)])
def test_only_staff_open_the_organisation_pages(app, comped, caller, expected):
    client = client_as(app, caller)
    for page in PAGES:
        assert client.get(page.format(org=comped)).status_code == expected, page


@pytest.mark.parametrize("caller, expected", [("anonymous", 302), ("member", 403)])
def test_no_action_for_members_or_strangers(app, comped, caller, expected):
    seat_holder = _seat(app, comped, "reader@partner.example")
    with app.app_context():
        seat = get_session().scalar(select(Seat.id).where(Seat.account_id == seat_holder))
    client = client_as(app, caller)
    token = csrf_from(client.get("/logout").get_data(as_text=True))
    data = {"csrf_token": token, "confirm": "y", "seats-seats": "9", "seats-confirm": "y", "comp-reason": "x",
            "comp-confirm": "y", "org-name": "Sneaky", "org-contact_email": "a@b.org", "org-seats": "1",
            "org-trial_days": "1", "org-level": "1", "org-confirm": "y"}
    for action in ACTIONS:
        assert client.post(action.format(org=comped, seat=seat), data=data).status_code == expected, action
    assert _seats(app, comped) == {"reader@partner.example": "active"}
    assert _audits(app, comped) == []


def test_actions_need_the_csrf_token_and_the_confirmation(app, comped):
    staff = client_as(app, "staff")
    assert staff.post(f"/staff/organisations/{comped}/seats", data={"seats-seats": "9",
                                                                   "seats-confirm": "y"}).status_code == 400
    page = f"/staff/organisations/{comped}"
    assert _post(staff, page, f"/staff/organisations/{comped}/seats", {"seats-seats": "9"}).status_code == 303
    assert "Tick to confirm." in staff.get(page).get_data(as_text=True)
    with app.app_context():
        assert get_session().get(Organisation, comped).seats == 2
    assert _audits(app, comped) == []


# --- the pages ----------------------------------------------------------------------------------

def test_the_list_shows_seats_billing_and_the_next_invoice(app, client, invoiced, comped):
    org, stripe = invoiced
    _seat(app, org.id, "ama@unicef.org")
    staff = client_as(app, "staff")
    html = staff.get("/staff/organisations").get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]
    cells = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "|", r)).strip(" |") for r in rows]
    assert "Partner Newsroom" in cells[0] and "0 of 2" in cells[0] and "comped" in cells[0]
    assert "UNICEF Nairobi" in cells[1] and "1 of 5" in cells[1] and "trial" in cells[1] and "invoice" in cells[1]
    assert f'href="/staff/organisations/{org.id}"' in html
    # Paid: the next invoice is the end of the paid year.
    post_event(client, event("invoice.paid", invoice()))
    html = staff.get("/staff/organisations").get_data(as_text=True)
    end = organisation(app).paid_through.strftime("%Y-%m-%d")
    assert end in html and "status-active" in html
    assert 'href="/staff/organisations"' in staff.get("/staff").get_data(as_text=True)  # the staff nav


def test_the_organisation_page_shows_seats_stripe_ids_and_a_timeline(app, client, invoiced):
    org, stripe = invoiced
    ama = _seat(app, org.id, "ama@unicef.org")
    post_event(client, event("invoice.paid", invoice()))
    html = client_as(app, "staff").get(f"/staff/organisations/{org.id}").get_data(as_text=True)
    assert f'<a href="/staff/members/{ama}">ama@unicef.org</a>' in html
    assert f'href="https://dashboard.stripe.com/test/customers/{CUSTOMER}"' in html
    assert f'href="https://dashboard.stripe.com/test/subscriptions/{SUBSCRIPTION}"' in html
    timeline = html.split("<h2>Timeline</h2>", 1)[1]
    assert "organisation create" in timeline and "invoice.paid" in timeline
    assert f'/staff/organisations/{org.id}/seats/' in html  # a remove button per seat


def test_the_trial_is_shown_until_the_invoice_is_paid(app, client, invoiced):
    org, _ = invoiced
    page = client_as(app, "staff").get(f"/staff/organisations/{org.id}").get_data(as_text=True)
    assert "<strong>trial</strong>" in page and "first invoice not paid yet" in page


def test_the_member_page_shows_the_seat(app, invoiced):
    org, _ = invoiced
    ama = _seat(app, org.id, "ama@unicef.org")
    staff = client_as(app, "staff")
    html = staff.get(f"/staff/members/{ama}").get_data(as_text=True)
    assert re.search(rf'<dt>Organisation seat</dt><dd><a href="/staff/organisations/{org.id}">UNICEF Nairobi</a>: '
                     r"active", html)
    contact = staff.get(f"/staff/members/{org.admin_account_id}").get_data(as_text=True)
    assert f'<dt>Admin of</dt><dd><a href="/staff/organisations/{org.id}">UNICEF Nairobi</a>' in contact


# --- the actions --------------------------------------------------------------------------------

def test_changing_seats_updates_the_stripe_quantity_and_applies_it_now(app, stripe_api, invoiced):
    org, stripe = invoiced
    page = f"/staff/organisations/{org.id}"
    staff = client_as(app, "staff")
    resp = _post(staff, page, f"{page}/seats", {"seats-seats": "12", "seats-confirm": "y"})
    assert resp.status_code == 303 and resp.headers["Location"] == page
    (update,) = stripe_api.calls("POST", f"/v1/subscriptions/{SUBSCRIPTION}")
    assert update.form == {"items[0][id]": ITEM, "items[0][quantity]": "12", "proration_behavior": "create_prorations"}
    assert stripe_api.calls("GET", f"/v1/subscriptions/{SUBSCRIPTION}")  # read back under the lock
    assert organisation(app).seats == 12
    assert "Seats changed." in staff.get(page).get_data(as_text=True)
    assert _audits(app, org.id)[-1] == ("organisation_seats", None, {
        "before": 5, "after": 12, "asked": 12, "suspended": 0, "subscription": SUBSCRIPTION})


def test_fewer_seats_than_in_use_suspends_the_newest(app, stripe_api, invoiced):
    org, _ = invoiced
    readers = [_seat(app, org.id, f"r{i}@unicef.org") for i in range(3)]
    page = f"/staff/organisations/{org.id}"
    staff = client_as(app, "staff")
    _post(staff, page, f"{page}/seats", {"seats-seats": "2", "seats-confirm": "y"})
    assert stripe_api.calls("POST", f"/v1/subscriptions/{SUBSCRIPTION}")[0].form["items[0][quantity]"] == "2"
    assert _seats(app, org.id) == {"r0@unicef.org": "active", "r1@unicef.org": "active",
                                   "r2@unicef.org": "suspended"}
    assert [_entitled(app, r) for r in readers] == [True, True, False]
    assert "1 seat(s) beyond the new number were suspended" in staff.get(page).get_data(as_text=True)
    assert _audits(app, org.id)[-1][2]["suspended"] == 1


def test_a_quantity_refused_by_stripe_changes_nothing(app, stripe_api, invoiced):
    org, _ = invoiced
    stripe_api.on("POST", f"/v1/subscriptions/{SUBSCRIPTION}", stripe_error(400, "invalid_request_error", "nope"))
    page = f"/staff/organisations/{org.id}"
    staff = client_as(app, "staff")
    _post(staff, page, f"{page}/seats", {"seats-seats": "9", "seats-confirm": "y"})
    assert organisation(app).seats == 5
    assert "Stripe did not change the quantity" in staff.get(page).get_data(as_text=True)
    assert [a for a, _, _ in _audits(app, org.id)] == ["organisation_create"]


def test_seats_of_an_organisation_without_a_subscription_change_here_only(app, stripe_api, comped):
    page = f"/staff/organisations/{comped}"
    _post(client_as(app, "admin"), page, f"{page}/seats", {"seats-seats": "40", "seats-confirm": "y"})
    with app.app_context():
        assert get_session().get(Organisation, comped).seats == 40
    assert [r.path for r in stripe_api.requests] == []
    assert _audits(app, comped)[-1][0] == "organisation_seats"


def test_comp_and_end_comp_entitle_and_stop_entitling_the_seats(app, invoiced):
    org, _ = invoiced
    with app.app_context():  # the trial is over and the invoice unpaid: nothing entitles
        s = get_session()
        s.get(Organisation, org.id).trial_ends_at = utcnow() - timedelta(days=1)
        s.commit()
    ama = _seat(app, org.id, "ama@unicef.org")
    assert not _entitled(app, ama)

    page = f"/staff/organisations/{org.id}"
    staff = client_as(app, "staff")
    _post(staff, page, f"{page}/comp", {"comp-reason": "pilot with the newsroom", "comp-confirm": "y"})
    assert organisation(app).status == MembershipStatus.COMPED
    assert _entitled(app, ama)
    html = staff.get(page).get_data(as_text=True)
    assert "pilot with the newsroom" in html and "End comp" in html

    _post(staff, page, f"{page}/comp/end", {"confirm": "y"})
    assert organisation(app).comped_at is None
    assert not _entitled(app, ama)
    assert [(a, d) for a, _, d in _audits(app, org.id)][-2:] == [
        ("organisation_comp", {"reason": "pilot with the newsroom", "until": None}),
        ("organisation_comp_end", {"previous_reason": "pilot with the newsroom"})]


def test_a_comp_end_date_in_the_past_is_refused(app, comped):
    page = f"/staff/organisations/{comped}"
    staff = client_as(app, "staff")
    _post(staff, page, f"{page}/comp", {"comp-reason": "x", "comp-until": "2020-01-01", "comp-confirm": "y"})
    assert "The end date must be in the future." in staff.get(page).get_data(as_text=True)
    assert _audits(app, comped) == []


def test_removing_a_seat_takes_entitlement_away_and_is_audited(app, comped):
    ama = _seat(app, comped, "ama@partner.example")
    bo = _seat(app, comped, "bo@partner.example")
    assert _entitled(app, ama)
    with app.app_context():
        seat = get_session().scalar(select(Seat.id).where(Seat.account_id == ama))
    page = f"/staff/organisations/{comped}"
    staff = client_as(app, "staff")
    resp = _post(staff, page, f"{page}/seats/{seat}/remove", {"confirm": "y"})
    assert resp.status_code == 303
    assert _seats(app, comped) == {"ama@partner.example": "removed", "bo@partner.example": "active"}
    assert not _entitled(app, ama) and _entitled(app, bo)
    (action, target, details) = _audits(app, comped)[-1]
    assert (action, target, details["reader"], details["was"]) == (
        "organisation_seat_remove", ama, "ama@partner.example", "active")
    # The reader's own timeline says so too; the seat is gone from their page.
    member_page = staff.get(f"/staff/members/{ama}").get_data(as_text=True)
    assert "organisation seat remove" in member_page and "<dt>Organisation seat</dt><dd>none</dd>" in member_page
    # Removing it twice, or another organisation's seat, is refused.
    _post(staff, page, f"{page}/seats/{seat}/remove", {"confirm": "y"})
    assert "No such seat in this organisation." in staff.get(page).get_data(as_text=True)
    assert len([a for a in _audits(app, comped) if a[0] == "organisation_seat_remove"]) == 1


def test_every_action_is_audited_against_the_organisation(app, invoiced):
    org, _ = invoiced
    ama = _seat(app, org.id, "ama@unicef.org")
    with app.app_context():
        seat = get_session().scalar(select(Seat.id).where(Seat.account_id == ama))
    page = f"/staff/organisations/{org.id}"
    staff = client_as(app, "admin")
    for path, data in ((f"{page}/seats", {"seats-seats": "6", "seats-confirm": "y"}),
                       (f"{page}/comp", {"comp-reason": "press freedom fund", "comp-until": "2099-01-01",
                                         "comp-confirm": "y"}),
                       (f"{page}/comp/end", {"confirm": "y"}),
                       (f"{page}/seats/{seat}/remove", {"confirm": "y"})):
        assert _post(staff, page, path, data).status_code == 303
    assert [a for a, _, _ in _audits(app, org.id)] == [
        "organisation_create", "organisation_seats", "organisation_comp", "organisation_comp_end",
        "organisation_seat_remove"]
    with app.app_context():
        actors = set(get_session().scalars(select(AuditLog.actor_email).where(
            AuditLog.target_organisation_id == org.id, AuditLog.action != "organisation_create")))
    assert actors == {"admin-user@example.org"}
    timeline = staff.get(page).get_data(as_text=True).split("<h2>Timeline</h2>", 1)[1]
    for title in ("organisation seats", "organisation comp", "organisation comp end", "organisation seat remove"):
        assert f"<td>{title}</td>" in timeline


def test_admins_can_add_an_organisation_level(app, stripe_api):
    from service.models import Level

    from ..support.stripe_standin import price

    stripe_api.on("GET", "/v1/prices/price_seat", price("price_seat", 15_000, "year"))
    admin = client_as(app, "admin")
    resp = _post(admin, "/staff/admin/levels", "/staff/admin/levels", {
        "lvl-name": "Newsroom seat", "lvl-amount": "150.00", "lvl-interval": "year", "lvl-price": "price_seat",
        "lvl-public": "y", "lvl-organisation": "y", "lvl-confirm": "y"})
    assert resp.status_code == 303
    with app.app_context():
        level = get_session().scalars(select(Level).where(Level.stripe_price_id == "price_seat")).one()
        assert (level.organisation, level.public) == (True, False)  # never on /join
    assert "for organisations, per seat" in admin.get("/staff/admin/levels").get_data(as_text=True)
    assert 'value="%d"' % level.id in admin.get("/staff/organisations/new").get_data(as_text=True)


def test_housekeeping_closes_ended_organisation_comps_and_unpaid_trials(app, invoiced, comped):
    from service.staff.services import expire_organisation_comps

    org, _ = invoiced
    with app.app_context():
        s = get_session()
        s.get(Organisation, org.id).trial_ends_at = utcnow() - timedelta(minutes=1)
        s.get(Organisation, comped).comped_until = utcnow() - timedelta(minutes=1)
        s.commit()
        assert get_session().get(Organisation, org.id).status == MembershipStatus.COMPED  # the trial, stale
    runner = app.test_cli_runner()
    result = runner.invoke(args=["staff", "expire-comps"])
    assert result.exit_code == 0 and "recomputed 2 organisation(s)" in result.output
    assert organisation(app, "unicef-nairobi").status not in (MembershipStatus.COMPED, MembershipStatus.ACTIVE)
    partner = organisation(app, "partner-newsroom")
    assert (partner.comped_at, partner.comp_reason) == (None, None)
    assert [a for a, _, _ in _audits(app, org.id)][-1] == "organisation_trial_ended"
    assert _audits(app, comped) == [("organisation_comp_expired", None, {"reason": "media partner"})]
    with app.app_context():
        assert expire_organisation_comps() == []  # done once
