"""The staff console: search, filters, pagination, the member page, actions and the CSV export."""
from __future__ import annotations

import csv
import io
import time

import pytest
from sqlalchemy import select

from service.db import get_session
from service.domain.membership import MembershipStatus as S
from service.models import Account, AuditLog

from ..support.events import event, post_event
from ..support.factories import make_account, link_customer
from ..support.staff import client_as
from ..support.stripe_objects import subscription
from ..support.web import csrf_from

NOW = int(time.time())


@pytest.fixture
def seeded(app):
    people = [
        ("amina.yusuf@example.org", "Amina Yusuf", S.ACTIVE),
        ("amir.khan@example.org", "Amir Khan", S.PAST_DUE),
        ("bea.ortiz@example.org", "Bea Ortiz", S.CANCELED),
        ("carl.smith@example.org", "Carl Amiri", S.PENDING),
        ("dana.lee@example.org", "Dana Lee", S.COMPED),
    ]
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return {email: make_account(app, email=email, name=name, status=status, created_at=start + timedelta(days=i))
            for i, (email, name, status) in enumerate(people)}


def names(resp) -> list[str]:
    import re

    return re.findall(r'<td><a href="/staff/members/\d+">([^<]+)</a></td>', resp.get_data(as_text=True))


def test_search_by_email_prefix_exact_email_or_name(app, seeded):
    staff = client_as(app, "staff")
    assert names(staff.get("/staff?q=ami")) == ["Carl Amiri", "Amir Khan", "Amina Yusuf"]
    assert names(staff.get("/staff?q=AMIR.KHAN@example.org")) == ["Amir Khan"]
    assert names(staff.get("/staff?q=ortiz")) == ["Bea Ortiz"]
    assert names(staff.get("/staff?q=%25")) == []  # a literal %, not a wildcard


def test_filters_by_state_and_entitlement_and_sorts_by_join_date(app, seeded):
    staff = client_as(app, "staff")
    assert names(staff.get("/staff?status=past_due")) == ["Amir Khan"]
    assert names(staff.get("/staff?entitled=yes&sort=oldest")) == ["Amina Yusuf", "Amir Khan", "Dana Lee"]
    assert names(staff.get("/staff?entitled=no")) == ["Carl Amiri", "Bea Ortiz"]
    assert staff.get("/staff?status=bogus").status_code == 400


def test_pagination(app):
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(55):
        make_account(app, email=f"p{i:02d}@example.org", name=f"Person {i:02d}", created_at=start + timedelta(hours=i))
    staff = client_as(app, "staff")
    first, second = staff.get("/staff?sort=oldest"), staff.get("/staff?sort=oldest&page=2")
    assert len(names(first)) == 50 and names(second) == [f"Person {i}" for i in range(50, 55)]
    assert "Page 2 of 2" in second.get_data(as_text=True)
    assert 'href="/staff?page=2&amp;sort=oldest"' in first.get_data(as_text=True)


def test_member_page_answers_who_since_when_and_what_happened(app, seeded):
    staff = client_as(app, "staff")
    member = seeded["amina.yusuf@example.org"]
    link_customer(app, member, "cus_M")
    post_event(app.test_client(), event("customer.subscription.created",
               subscription(id="sub_M", customer="cus_M", status="active", member_id=member)))
    html = staff.get(f"/staff/members/{member}").get_data(as_text=True)
    assert "Amina Yusuf" in html and "active" in html and "Member since" in html
    assert 'href="https://dashboard.stripe.com/test/customers/cus_M"' in html
    assert 'href="https://dashboard.stripe.com/test/subscriptions/sub_M"' in html
    assert "customer.subscription.created" in html and "DAWNS: subscribed" in html


def _post(client, path, data):
    token = csrf_from(client.get("/staff").get_data(as_text=True))
    resp = client.post(path, data={**data, "csrf_token": token})
    resp.close()  # runs what the app does after the response (mail)
    return resp


def _status(app, member):
    with app.app_context():
        m = get_session().get(Account, member).membership
        get_session().close()
        return m.status


def test_comp_needs_confirmation_and_a_reason(app, seeded):
    staff = client_as(app, "staff")
    member = seeded["carl.smith@example.org"]
    resp = _post(staff, f"/staff/members/{member}/comp", {"comp-reason": "press"})
    assert resp.status_code == 303
    assert _status(app, member) == S.PENDING
    assert "Tick to confirm." in staff.get(f"/staff/members/{member}").get_data(as_text=True)


def test_comp_and_revoke_change_entitlement_survive_stripe_and_are_audited(app, seeded):
    staff = client_as(app, "staff")
    member = seeded["carl.smith@example.org"]
    link_customer(app, member, "cus_C")
    _post(staff, f"/staff/members/{member}/comp", {"comp-reason": "Partner newsroom", "comp-confirm": "y"})
    assert _status(app, member) == S.COMPED
    hook = app.test_client()
    # A paid subscription takes over while it entitles...
    post_event(hook, event("customer.subscription.created",
                           subscription(id="sub_C", customer="cus_C", status="active", member_id=member),
                           created=NOW - 30))
    assert _status(app, member) == S.ACTIVE
    # ...and when it ends, the comp still holds.
    post_event(hook, event("customer.subscription.deleted",
                           subscription(id="sub_C", customer="cus_C", status="canceled", member_id=member),
                           created=NOW - 20))
    assert _status(app, member) == S.COMPED
    _post(staff, f"/staff/members/{member}/comp/revoke", {"confirm": "y"})
    assert _status(app, member) == S.CANCELED
    with app.app_context():
        log = get_session().scalars(select(AuditLog).where(AuditLog.target_account_id == member)
                                    .order_by(AuditLog.id)).all()
        actions = [(a.action, a.actor_email) for a in log]
    assert ("comp", "staff-user@example.org") in actions and ("comp_revoke", "staff-user@example.org") in actions
    html = staff.get(f"/staff/members/{member}").get_data(as_text=True)
    assert "comp revoke" in html and "by staff-user@example.org" in html


def test_comp_with_an_end_date_expires(app, seeded):
    from datetime import timedelta

    from service.db import utcnow
    from service.staff.services import expire_comps

    staff = client_as(app, "staff")
    member = seeded["carl.smith@example.org"]
    until = (utcnow() + timedelta(days=3)).date().isoformat()
    _post(staff, f"/staff/members/{member}/comp", {"comp-reason": "trial", "comp-until": until, "comp-confirm": "y"})
    assert _status(app, member) == S.COMPED
    with app.app_context():
        m = get_session().get(Account, member).membership
        m.comped_until = utcnow() - timedelta(seconds=1)
        get_session().commit()
        assert expire_comps() == [member]
    assert _status(app, member) == S.PENDING


def test_send_password_reset_is_audited(app, seeded):
    staff = client_as(app, "staff")
    member = seeded["bea.ortiz@example.org"]
    _post(staff, f"/staff/members/{member}/send-reset", {"confirm": "y"})
    assert app.extensions["mail_outbox"][-1]["To"] == "bea.ortiz@example.org"
    with app.app_context():
        assert get_session().scalars(select(AuditLog).where(AuditLog.action == "send_password_reset")).one()


def test_csv_export_streams_the_filtered_list_with_a_header(app, seeded):
    staff = client_as(app, "staff")
    resp = staff.get("/staff/export.csv?entitled=yes&sort=oldest")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.is_streamed
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    resp.close()  # as a WSGI server does: ends the streamed request and its transaction
    assert rows[0] == ["id", "email", "name", "status", "entitled", "paid_through", "cancel_at_period_end",
                       "level", "level_amount", "level_currency", "level_interval", "stripe_customer_id",
                       "newsletter_status", "created_at"]
    assert [r[1] for r in rows[1:]] == ["amina.yusuf@example.org", "amir.khan@example.org", "dana.lee@example.org"]


@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_values_that_start_a_formula_are_neutralised(app, evil):
    make_account(app, email="evil@example.org", name=evil)
    staff = client_as(app, "staff")
    resp = staff.get("/staff/export.csv?q=evil")
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    resp.close()
    assert rows[1][2] == "'" + evil


def test_a_new_staff_member_is_invited_by_name_with_a_link_to_choose_a_password(app):
    admin = client_as(app, "admin")
    page = admin.get("/staff/admin").get_data(as_text=True)
    resp = admin.post("/staff/admin/staff", data={"csrf_token": csrf_from(page), "add-email": "new.editor@example.org",
                                                 "add-name": "New Editor", "add-role": "staff", "add-confirm": "y"})
    resp.close()
    mail = app.extensions["mail_outbox"][-1]
    assert mail["To"] == "new.editor@example.org" and mail["Subject"] == "Your staff account for DAWNS Membership"
    body = mail.get_content()
    assert "Admin User (admin-user@example.org) has given you a staff account" in body and "/reset/" in body
