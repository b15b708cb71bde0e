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


@pytest.mark.parametrize("failed_days_ago, grace, entitled", [(3, 14, True), (20, 14, False), (20, 30, True)])
def test_past_due_entitles_only_until_paid_through_plus_grace(make_app, failed_days_ago, grace, entitled):
    """The renewal failed `failed_days_ago`: Stripe already moved the period on (its end is a
    month away), so the paid time ended when the unpaid period began."""
    app = make_app(PAST_DUE_GRACE_DAYS=grace)
    member = make_account(app, customer="cus_G")
    start = NOW - failed_days_ago * DAY
    post_event(app.test_client(), event("customer.subscription.updated", subscription(
        id="sub_G", customer="cus_G", status="past_due", period_start=start, period_end=start + 30 * DAY)))
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


def test_a_live_comp_keeps_a_member_entitled_when_the_grace_runs_out_between_events(app):
    """Stored past_due (the grace was running when it was stored), a comp with no end: once the
    grace is over, the comp still entitles, on every reader of the membership."""
    member = make_account(app, customer="cus_F")
    start = NOW - 5 * DAY
    post_event(app.test_client(), event("customer.subscription.updated", subscription(
        id="sub_F", customer="cus_F", status="past_due", period_start=start, period_end=start + 30 * DAY)))
    staff = client_as(app, "staff")
    post_form(staff, f"/staff/members/{member}/comp", {"comp-reason": "Partner", "comp-confirm": "y"},
              form_path=f"/staff/members/{member}")
    with app.app_context():  # three weeks on, no event since: the grace has run out
        get_session().execute(update(Membership).where(Membership.account_id == member)
                              .values(status=S.PAST_DUE, paid_through=utcnow() - timedelta(days=20)))
        get_session().commit()
    assert _answers(app, member, staff) == (True, True, True)


def test_the_worker_removes_dawns_when_a_comp_ends_without_any_event(app):
    """The entitlement ends on its own at the read; the worker then follows NEWSLETTER_ON_LAPSE."""
    from sqlalchemy import select

    from service.models import NewsletterOutbox

    from ..support.events import run_worker

    member = make_account(app)
    staff = client_as(app, "staff")
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    post_form(staff, f"/staff/members/{member}/comp", {"comp-reason": "Partner", "comp-until": tomorrow,
                                                       "comp-confirm": "y"}, form_path=f"/staff/members/{member}")
    run_worker(app)
    with app.app_context():
        get_session().execute(update(Membership).where(Membership.account_id == member)
                              .values(paid_through=utcnow() - timedelta(seconds=1),
                                      comped_until=utcnow() - timedelta(seconds=1)))
        get_session().commit()
    app.extensions.pop("worker_last_expiry_check", None)
    run_worker(app)
    with app.app_context():
        actions = get_session().scalars(select(NewsletterOutbox.action).where(NewsletterOutbox.account_id == member)
                                        .order_by(NewsletterOutbox.id)).all()
        assert actions == ["subscribed", "unsubscribed"]
        assert get_session().get(Account, member).membership.status == S.PENDING
