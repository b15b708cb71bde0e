"""The staff console: search, filters, pagination, the member page, actions and the CSV export."""
from __future__ import annotations

import csv
import re
import io
import time

import pytest
from sqlalchemy import select

from service.db import get_session
from service.domain.membership import MembershipStatus as S
from service.models import Account, AuditLog

from ..support.events import event, post_event, run_worker
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
    first = staff.get("/staff?sort=oldest")
    html = first.get_data(as_text=True)
    assert len(names(first)) == 50 and "55 members" in html
    # "Next page" follows a keyset cursor; a page number still works too.
    next_link = re.search(r'href="(/staff\?cursor=[^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    second = staff.get(next_link)
    assert names(second) == [f"Person {i}" for i in range(50, 55)]
    assert 'rel="next"' not in second.get_data(as_text=True)
    assert names(staff.get("/staff?sort=oldest&page=2")) == [f"Person {i}" for i in range(50, 55)]
    assert staff.get("/staff?cursor=not-a-cursor").status_code == 303


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


def export(app, staff, query: str) -> tuple[list[list[str]], str]:
    """Ask for an export of the list as filtered by `query`, let the worker write it, download it."""
    listed = staff.get(f"/staff?{query}").get_data(as_text=True)
    form = re.search(r'<form method="post" action="/staff/exports".*?</form>', listed, re.S).group(0)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form))
    resp = staff.post("/staff/exports", data=fields)
    assert resp.status_code == 303
    status_page = resp.headers["Location"]
    waiting = staff.get(status_page).get_data(as_text=True)
    assert "Waiting for the worker" in waiting and "Refresh progress" in waiting and "http-equiv" not in waiting
    run_worker(app)
    ready = staff.get(status_page).get_data(as_text=True)
    link = re.search(r'href="(/staff/exports/\d+/download)"', ready).group(1)
    download = staff.get(link)
    assert download.status_code == 200 and download.mimetype == "text/csv"
    body = download.get_data(as_text=True)
    download.close()
    return list(csv.reader(io.StringIO(body))), link


def test_an_export_job_writes_exactly_the_filtered_list_and_the_download_is_audited(app, seeded):
    staff = client_as(app, "staff")
    rows, link = export(app, staff, "entitled=yes&sort=oldest")
    assert rows[0] == ["id", "email", "name", "status", "entitled", "paid_through", "cancel_at_period_end",
                       "level", "level_amount", "level_currency", "level_interval", "stripe_customer_id",
                       "newsletter_status", "created_at", "via", "organisation",
                       "newsletter_opt_in", "comped_at", "comped_until", "comp_reason", "language"]
    assert [r[1] for r in rows[1:]] == ["amina.yusuf@example.org", "amir.khan@example.org", "dana.lee@example.org"]
    assert {r[4] for r in rows[1:]} == {"yes"} and rows[1][13].startswith("2026-01-01T00:00:00")
    with app.app_context():
        actions = get_session().scalars(select(AuditLog.action).where(AuditLog.action.like("export_%"))).all()
        assert sorted(actions) == ["export_download", "export_request"]
    assert client_as(app, "member").get(link).status_code == 403


@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB"])
def test_csv_values_that_start_a_formula_are_neutralised(app, evil):
    make_account(app, email="evil@example.org", name=evil)
    rows, _ = export(app, client_as(app, "staff"), "q=evil")
    assert rows[1][2] == "'" + evil


def test_a_job_whose_worker_died_is_failed_and_never_offered(app, seeded):
    from datetime import timedelta

    from service.db import utcnow
    from service.models import ExportJob

    staff = client_as(app, "staff")
    staff.get("/staff")
    with app.app_context():  # a worker took it and was killed mid-file: its lease ran out
        mine = get_session().scalars(select(Account.id).where(Account.email == "staff-user@example.org")).one()
        get_session().add(ExportJob(requested_by=mine, filters={}, status="running", file_name="members-x.csv",
                                    claimed_until=utcnow() - timedelta(seconds=1)))
        get_session().commit()
        job_id = get_session().scalars(select(ExportJob.id)).one()
    run_worker(app)
    page = staff.get(f"/staff/exports/{job_id}").get_data(as_text=True)
    assert "This export failed" in page and "Download" not in page
    assert staff.get(f"/staff/exports/{job_id}/download").status_code == 404
    with app.app_context():
        assert get_session().get(ExportJob, job_id).status == "failed"


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


def test_an_export_of_ten_thousand_rows_is_exactly_the_filtered_list_the_console_pages_through(app):
    """10,000 members straight into the database (both kinds), some with formula-like names; the
    export of "entitled, oldest first" equals the console's own list walked page by page."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import insert

    from service.membership import directory
    from service.models import Membership

    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    states = [S.ACTIVE, S.PENDING, S.PAST_DUE, S.CANCELED, S.COMPED]
    formulas = ["=1+1", "+SUM(A1)", "-3", "@cmd", "\tx"]
    with app.app_context():
        session = get_session()
        session.execute(insert(Account), [
            {"id": 1000 + i, "email": f"reader{i:05d}@example.org",
             "name": formulas[i % 5] if i % 97 == 0 else f"Reader {i}", "password_hash": "x", "role": "member",
             "created_at": start + timedelta(minutes=i // 2), "updated_at": start} for i in range(10_000)])
        session.execute(insert(Membership), [
            {"account_id": 1000 + i, "status": states[i % 5].value, "cancel_at_period_end": False,
             "newsletter_opt_in": True, "newsletter_desired": "none", "newsletter_status": "not_subscribed",
             "status_changed_at": start, "created_at": start + timedelta(minutes=i // 2), "updated_at": start,
             "monthly_value": 0, "paying_twice": False} for i in range(10_000)])
        session.commit()
        # The console's list, walked by its "next page" cursors (two members share each join minute).
        listed: list[str] = []
        f = directory.MemberFilter(entitled=True, sort="oldest")
        cursor = None
        while True:
            page = directory.search(session, f, per_page=200, cursor=cursor)
            listed += [r["email"] for r in page.rows]
            if not (cursor := page.next_cursor):
                break
    rows, _ = export(app, client_as(app, "staff"), "entitled=yes&sort=oldest")
    assert len(listed) == 6_000  # active, past due (in grace) and comped: three in five
    assert [r[1] for r in rows[1:]] == listed
    by_email = {r[1]: r for r in rows[1:]}
    for i in range(0, 10_000, 97):
        if states[i % 5] in (S.ACTIVE, S.PAST_DUE, S.COMPED):
            assert by_email[f"reader{i:05d}@example.org"][2] == "'" + formulas[i % 5]


def test_a_relative_export_dir_is_under_the_instance_folder_for_worker_and_web_alike(make_app):
    import shutil
    import uuid
    from pathlib import Path

    name = f"test-exports-{uuid.uuid4().hex[:8]}"
    app = make_app(EXPORT_DIR=name)
    try:
        make_account(app, email="rel@example.org", name="Relative Reader")
        rows, _ = export(app, client_as(app, "staff"), "q=rel")
        assert [r[1] for r in rows[1:]] == ["rel@example.org"]
        assert list((Path(app.instance_path) / name).glob("members-*.csv"))
    finally:
        shutil.rmtree(Path(app.instance_path) / name, ignore_errors=True)


def test_an_export_taken_over_while_writing_stays_failed_and_the_worker_goes_on(app, seeded):
    """Its lease ran out and another worker marked it failed: the first worker, finishing late,
    neither crashes nor offers the file."""
    from sqlalchemy import update

    from service.membership import exports
    from service.models import ExportJob

    staff = client_as(app, "staff")
    listed = staff.get("/staff").get_data(as_text=True)
    form = re.search(r'<form method="post" action="/staff/exports".*?</form>', listed, re.S).group(0)
    job_page = staff.post("/staff/exports", data=dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form)))
    with app.app_context():
        session = get_session()
        job = exports._claim(session)
        session.execute(update(ExportJob).where(ExportJob.id == job.id).values(status="failed",
                                                                           error="the worker stopped"))
        session.commit()
        exports.run_job(session, job.id)  # finishes late: no exception
        session.expire_all()
        assert session.get(ExportJob, job.id).status == "failed"
        assert not list(exports.export_dir().glob(job.file_name + "*"))
    page = staff.get(job_page.headers["Location"]).get_data(as_text=True)
    assert "This export failed" in page and "Download" not in page
