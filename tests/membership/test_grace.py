"""Entitlement that does not outlive the money: decided at the moment of the read, everywhere."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from service.db import get_session, utcnow
from service.domain.membership import MembershipStatus as S
from service.models import Account, Membership

from ..support.events import event, post_event
from ..support.factories import PASSWORD, make_account
from ..support.staff import api_token, client_as
from ..support.stripe_objects import subscription
from ..support.web import login, post_form

DAY = 86400
NOW = int(time.time())


def _answers(app, member, staff=None):
    """What the paywall's fast path, the member JSON and the staff list's filter say."""
    token = api_token(app, name=f"t{time.monotonic_ns()}")
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    fast = api.get(f"/api/v1/entitlements?member_id={member}", headers=headers).json["entitled"]
    member_json = api.get(f"/api/v1/members/{member}", headers=headers).json["entitled"]
    listed = (staff or client_as(app, "staff")).get("/staff?entitled=yes").get_data(as_text=True)
    return fast, member_json, f'href="/staff/members/{member}"' in listed


@pytest.mark.parametrize("ended_days_ago, grace, entitled", [(3, 14, True), (20, 14, False), (20, 30, True)])
def test_past_due_entitles_only_until_paid_through_plus_grace(make_app, ended_days_ago, grace, entitled):
    app = make_app(PAST_DUE_GRACE_DAYS=grace)
    member = make_account(app, customer="cus_G")
    end = NOW - ended_days_ago * DAY
    post_event(app.test_client(), event("customer.subscription.updated", subscription(
        id="sub_G", customer="cus_G", status="past_due", period_start=end - 30 * DAY, period_end=end)))
    with app.app_context():
        assert get_session().get(Account, member).membership.status == S.PAST_DUE
    assert _answers(app, member) == (entitled, entitled, entitled)
    client = app.test_client()
    login(client, "reader@example.org", PASSWORD)
    page = client.get("/account").get_data(as_text=True)
    assert ("The grace period has ended" in page) is (not entitled)


def test_a_comp_past_its_end_date_stops_entitling_without_any_command(app):
    member = make_account(app)
    staff = client_as(app, "staff")
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    post_form(staff, f"/staff/members/{member}/comp", {"comp-reason": "Partner", "comp-until": tomorrow,
                                                       "comp-confirm": "y"}, form_path=f"/staff/members/{member}")
    assert _answers(app, member, staff) == (True, True, True)
    with app.app_context():  # two days later: nobody ran `staff expire-comps`
        get_session().execute(update(Membership).where(Membership.account_id == member)
                              .values(paid_through=utcnow() - timedelta(seconds=1),
                                      comped_until=utcnow() - timedelta(seconds=1)))
        get_session().commit()
        assert get_session().get(Account, member).membership.status == S.COMPED
    assert _answers(app, member, staff) == (False, False, False)


def test_revoking_a_comp_clears_its_paid_through(app):
    member = make_account(app)
    staff = client_as(app, "staff")
    until = (utcnow() + timedelta(days=30)).date().isoformat()
    post_form(staff, f"/staff/members/{member}/comp", {"comp-reason": "Partner", "comp-until": until,
                                                       "comp-confirm": "y"}, form_path=f"/staff/members/{member}")
    post_form(staff, f"/staff/members/{member}/comp/revoke", {"confirm": "y"}, form_path=f"/staff/members/{member}")
    with app.app_context():
        m = get_session().get(Account, member).membership
        assert (m.status, m.paid_through) == (S.PENDING, None)
