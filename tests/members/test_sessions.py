"""Sessions end for real: on the server, not just in the browser's cookie."""
from __future__ import annotations

from sqlalchemy import select

from service.db import get_session
from service.domain.membership import Role
from service.models import AuditLog, LoginSession

from ..support.factories import PASSWORD, make_account
from ..support.staff import client_as
from ..support.web import login, logout, post_form


def _cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_cookie_copied_before_logout_is_refused_after_it(app):
    make_account(app)
    browser = app.test_client()
    login(browser, "reader@example.org", PASSWORD)
    stolen = _cookie(browser)
    assert browser.get("/account").status_code == 200
    logout(browser)
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/account").status_code == 302  # sent to log in
    with app.app_context():
        assert get_session().scalars(select(LoginSession)).one().ended_at is not None


def test_sign_out_everywhere_ends_every_session_of_the_account(app):
    make_account(app)
    make_account(app, email="other@example.org")
    laptop, phone, someone_else = app.test_client(), app.test_client(), app.test_client()
    login(laptop, "reader@example.org", PASSWORD)
    login(phone, "reader@example.org", PASSWORD)
    login(someone_else, "other@example.org", PASSWORD)
    assert "Sign out everywhere" in laptop.get("/account").get_data(as_text=True)
    resp = post_form(laptop, "/account/sign-out-everywhere", {}, form_path="/account")
    assert resp.status_code == 303 and resp.headers["Location"] == "/login"
    assert phone.get("/account").status_code == 302
    assert laptop.get("/account").status_code == 302
    assert someone_else.get("/account").status_code == 200
    with app.app_context():
        audit = get_session().scalars(select(AuditLog).where(AuditLog.action == "sign_out_everywhere")).one()
        assert audit.details == {"sessions": 2}


def test_staff_end_a_members_sessions_and_it_is_audited(app):
    member = make_account(app)
    reader = app.test_client()
    login(reader, "reader@example.org", PASSWORD)
    staff = client_as(app, "staff")
    page = staff.get(f"/staff/members/{member}").get_data(as_text=True)
    assert "End sessions" in page
    resp = post_form(staff, f"/staff/members/{member}/sessions/end", {"confirm": "y"},
                     form_path=f"/staff/members/{member}")
    assert resp.status_code == 303
    assert reader.get("/account").status_code == 302
    assert staff.get("/staff").status_code == 200  # the staff member's own session is untouched
    with app.app_context():
        audit = get_session().scalars(select(AuditLog).where(AuditLog.action == "sessions_end")).one()
        assert audit.target_account_id == member and audit.actor_email == "staff-user@example.org"
        assert audit.details == {"sessions": 1}


def test_members_cannot_end_other_peoples_sessions(app):
    member = make_account(app, email="victim@example.org")
    attacker = client_as(app, "member")
    resp = post_form(attacker, f"/staff/members/{member}/sessions/end", {"confirm": "y"}, form_path="/account")
    assert resp.status_code == 403


def test_a_role_change_ends_the_staff_members_sessions(app):
    editor = make_account(app, email="editor@example.org", role=Role.STAFF)
    browser = app.test_client()
    login(browser, "editor@example.org", PASSWORD)
    assert browser.get("/staff").status_code == 200
    admin = client_as(app, "admin")
    post_form(admin, f"/staff/admin/staff/{editor}/role", {"role": "admin", "confirm": "y"}, form_path="/staff/admin")
    assert browser.get("/staff").status_code == 302
    with app.app_context():
        rows = get_session().scalars(select(LoginSession).where(LoginSession.account_id == editor)).all()
        assert rows and all(r.ended_at is not None for r in rows)


def test_staff_cannot_act_on_staff_accounts_from_the_member_pages(app):
    """An admin promoted from a reader still has a membership row: it is still not a member."""
    from service.models import Account

    admin = make_account(app, email="boss@example.org", role=Role.ADMIN)
    with app.app_context():  # a membership row left from before a promotion
        from service.models import Membership

        get_session().add(Membership(account_id=admin))
        get_session().commit()
    boss = app.test_client()
    login(boss, "boss@example.org", PASSWORD)
    staff = client_as(app, "staff")
    for action, data in (("sessions/end", {"confirm": "y"}), ("send-reset", {"confirm": "y"}),
                         ("comp", {"comp-reason": "x", "comp-confirm": "y"})):
        post_form(staff, f"/staff/members/{admin}/{action}", data, form_path="/staff")
    assert boss.get("/staff").status_code == 200
    with app.app_context():
        assert get_session().get(Account, admin).membership.comped_at is None


def test_signing_in_as_someone_else_ends_the_previous_session_on_this_browser(app):
    make_account(app)
    make_account(app, email="other@example.org")
    browser = app.test_client()
    login(browser, "reader@example.org", PASSWORD)
    first = browser.get_cookie("session").value
    login(browser, "other@example.org", PASSWORD)
    replay = app.test_client()
    replay.set_cookie("session", first)
    assert replay.get("/account").status_code == 302


def test_joining_while_signed_in_never_makes_a_second_account(app):
    make_account(app)
    browser = app.test_client()
    login(browser, "reader@example.org", PASSWORD)
    resp = browser.get("/join")
    assert resp.status_code == 303 and resp.headers["Location"] == "/account/checkout"
    token = browser.get("/logout").get_data(as_text=True)
    from ..support.web import csrf_from

    posted = browser.post("/join", data={"csrf_token": csrf_from(token), "name": "Second", "email": "second@example.org",
                                         "password": "another long password"})
    assert posted.status_code == 303
    with app.app_context():
        from service.accounts.services import find_by_email

        assert find_by_email("second@example.org") is None
    assert "reader@example.org" in browser.get("/account").get_data(as_text=True)
