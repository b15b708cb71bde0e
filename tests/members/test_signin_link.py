"""Sign in with an emailed link, beside the password (issue 12).

A GET of the link burns nothing (mail scanners open links); only the POST uses it. Single use,
15 minutes, the newest link wins, the same answer for unknown addresses, rate limited."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db import get_session, utcnow
from service.domain.membership import Role
from service.models import Account, AccountToken, AuditLog, LoginSession, MailOutbox

from ..support.factories import PASSWORD, make_account
from ..support.web import csrf, csrf_from, login, logout, post_form

LINK_RE = re.compile(r"http://localhost(/login/link/[A-Za-z0-9_\-]+)")
NEUTRAL = "If an account exists for that address, a link is on its way"


def ask(client, email: str, next_url: str | None = None):
    path = "/login/link" + (f"?next={next_url}" if next_url else "")
    return post_form(client, path, {"email": email}, form_path="/login")


def links_to(app, to: str = "reader@example.org") -> list[str]:
    return [LINK_RE.search(m.get_content()).group(1) for m in app.extensions["mail_outbox"] if m["To"] == to]


def press_sign_in(client, path: str):
    """What the reader does: open the page (GET), press "Sign in" (POST with its CSRF token)."""
    page = client.get(path)
    if page.status_code != 200:
        return page
    resp = client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    resp.close()
    return resp


def test_login_page_offers_a_link(app, client):
    page = client.get("/login").get_data(as_text=True)
    assert "Email me a sign-in link" in page and 'action="/login/link"' in page
    assert page.count('id="email"') == 1 and 'id="link-email"' in page  # two forms, no duplicate ids


def test_a_link_signs_in_and_proves_the_address(app, client):
    acc = make_account(app, verified=True)
    resp = ask(client, "Reader@Example.org ")
    assert resp.status_code == 200 and NEUTRAL in resp.get_data(as_text=True)
    [path] = links_to(app)
    mail = app.extensions["mail_outbox"][-1]
    assert mail["Subject"] == "Your sign-in link" and "15 minutes" in mail.get_content()
    resp = press_sign_in(client, path)
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert "Reader One" in client.get("/account").get_data(as_text=True)
    with app.app_context():
        account = get_session().get(Account, acc)
        assert account.email_verified_at is not None and account.last_login_at is not None
    assert login(client, "reader@example.org", PASSWORD).status_code == 303  # a proved account keeps its password


def test_known_and_unknown_addresses_get_the_same_answer_and_unknown_gets_nothing(app, client):
    make_account(app)
    make_account(app, email="editor@example.org", name="Editor", role=Role.STAFF)
    known = ask(client, "reader@example.org")
    sent = len(app.extensions["mail_outbox"])
    assert sent == 1
    unknown = ask(client, "stranger@example.org")
    staff = ask(client, "editor@example.org")
    assert known.status_code == unknown.status_code == staff.status_code == 200
    assert known.get_data() == unknown.get_data() == staff.get_data()
    assert NEUTRAL in known.get_data(as_text=True)
    assert len(app.extensions["mail_outbox"]) == sent  # nothing for unknown addresses, nor for staff
    with app.app_context():
        s = get_session()
        assert s.scalar(select(MailOutbox.id).where(MailOutbox.to_address != "reader@example.org")) is None
        assert len(s.scalars(select(AccountToken).where(AccountToken.purpose == "signin")).all()) == 1


def test_an_invalid_address_is_a_form_error(app, client):
    resp = ask(client, "not an address")
    assert resp.status_code == 422 and "Please enter a valid email address." in resp.get_data(as_text=True)
    assert len(app.extensions["mail_outbox"]) == 0


def test_opening_the_link_burns_nothing(app, client):
    make_account(app)
    ask(client, "reader@example.org")
    [path] = links_to(app)
    scanner = app.test_client()  # a mail scanner opens the link, again and again
    for _ in range(3):
        page = scanner.get(path)
        assert page.status_code == 200 and ">Sign in</button>" in page.get_data(as_text=True)
    assert scanner.get("/account").status_code == 302  # opening it signed nobody in
    assert press_sign_in(client, path).status_code == 303
    assert client.get("/account").status_code == 200


def test_the_link_works_once(app, client):
    make_account(app)
    ask(client, "reader@example.org")
    [path] = links_to(app)
    page = client.get(path)
    token = csrf_from(page.get_data(as_text=True))
    assert client.post(path, data={"csrf_token": token}).status_code == 303
    logout(client)
    again = client.post(path, data={"csrf_token": csrf(client, "/login")})
    assert again.status_code == 400 and "Email me a sign-in link" in again.get_data(as_text=True)
    assert client.get(path).status_code == 400
    assert client.get("/account").status_code == 302
    with app.app_context():
        assert get_session().scalar(select(LoginSession.id).where(LoginSession.ended_at.is_(None))) is None


def test_the_link_expires_after_15_minutes(app, client):
    make_account(app)
    ask(client, "reader@example.org")
    [path] = links_to(app)
    with app.app_context():
        s = get_session()
        row = s.scalars(select(AccountToken).where(AccountToken.purpose == "signin")).one()
        assert timedelta(minutes=14) < row.expires_at - row.created_at <= timedelta(minutes=15)
        page = client.get(path)  # still live: the page and its token, taken before it expires
        token = csrf_from(page.get_data(as_text=True))
        row.expires_at = utcnow() - timedelta(seconds=1)  # 15 minutes later
        s.commit()
    assert client.post(path, data={"csrf_token": token}).status_code == 400
    assert client.get(path).status_code == 400
    assert client.get("/account").status_code == 302


def test_a_newer_link_withdraws_the_older(app, client):
    make_account(app)
    ask(client, "reader@example.org")
    ask(client, "reader@example.org")
    older, newer = links_to(app)
    assert older != newer
    assert client.get(older).status_code == 400
    assert press_sign_in(client, newer).status_code == 303


def test_both_posts_need_csrf(app, client):
    make_account(app)
    assert client.post("/login/link", data={"email": "reader@example.org"}).status_code == 400
    assert len(app.extensions["mail_outbox"]) == 0
    ask(client, "reader@example.org")
    [path] = links_to(app)
    assert client.post(path).status_code == 400
    assert client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/account").status_code == 302
    assert press_sign_in(client, path).status_code == 303  # the refused POSTs left the link unused


def test_requests_are_rate_limited_per_ip(make_app):
    app = make_app(RATELIMIT_SIGNIN_LINK="3 per minute")
    client = app.test_client()
    token = csrf(client, "/login")
    codes = [client.post("/login/link", data={"email": f"r{i}@example.org", "csrf_token": token}).status_code
             for i in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get("/login").status_code == 200  # reading the form is not limited


def test_requests_are_rate_limited_per_address(make_app):
    app = make_app(RATELIMIT_SIGNIN_LINK="3 per minute")
    make_account(app)
    codes = []
    for i in range(4):  # four different IPs, one mailbox
        client = app.test_client()
        env = {"REMOTE_ADDR": f"10.0.0.{i + 1}"}
        token = csrf_from(client.get("/login", environ_base=env).get_data(as_text=True))
        resp = client.post("/login/link", data={"email": " READER@example.org", "csrf_token": token},
                           environ_base=env)
        resp.close()
        codes.append(resp.status_code)
    assert codes == [200, 200, 200, 429]
    assert len(links_to(app)) == 3


def test_the_session_is_a_server_side_session(app, client):
    acc = make_account(app)
    ask(client, "reader@example.org")
    press_sign_in(client, links_to(app)[0])
    with app.app_context():
        live = get_session().scalars(select(LoginSession).where(LoginSession.account_id == acc,
                                                                LoginSession.ended_at.is_(None))).all()
        assert len(live) == 1
    cookie = client.get_cookie("session")
    logout(client)
    with app.app_context():
        assert get_session().scalar(select(LoginSession.id).where(LoginSession.ended_at.is_(None))) is None
    stolen = app.test_client()  # the old cookie, replayed, is signed out
    stolen.set_cookie("session", cookie.value)
    assert stolen.get("/account").status_code == 302


@pytest.mark.parametrize("target, landing", [
    ("/account?tab=1", "/account?tab=1"),
    ("https://evil.example/", "/account"),
    ("//evil.example/x", "/account"),
    ("/\\evil.example", "/account"),
])
def test_next_stays_on_this_site(app, client, target, landing):
    make_account(app)
    ask(client, "reader@example.org", next_url=target)
    resp = press_sign_in(client, links_to(app)[0])
    assert resp.status_code == 303 and resp.headers["Location"] == landing


def test_first_proof_of_an_address_locks_out_whoever_joined_with_it(app, client):
    """Anyone can join with anyone's address: when its owner proves it with a link, the
    password the squatter chose and the squatter's sessions stop working."""
    acc = make_account(app)  # never proved its address
    squatter = app.test_client()
    login(squatter, "reader@example.org", PASSWORD)
    assert squatter.get("/account").status_code == 200
    ask(client, "reader@example.org")
    resp = press_sign_in(client, links_to(app)[0])
    assert resp.status_code == 303
    assert "no longer works" in client.get("/account").get_data(as_text=True)
    assert squatter.get("/account").status_code == 302
    assert login(squatter, "reader@example.org", PASSWORD).status_code == 422
    with app.app_context():
        s = get_session()
        assert s.get(Account, acc).email_verified_at is not None
        assert s.scalar(select(AuditLog.action).where(AuditLog.target_account_id == acc)) == "signin_link_proved_address"


def test_an_account_made_staff_after_the_link_was_sent_is_not_signed_in(app, client):
    acc = make_account(app)
    ask(client, "reader@example.org")
    [path] = links_to(app)
    page = client.get(path)
    token = csrf_from(page.get_data(as_text=True))
    with app.app_context():
        get_session().get(Account, acc).role = Role.STAFF
        get_session().commit()
    assert client.post(path, data={"csrf_token": token}).status_code == 400
    assert client.get("/staff").status_code == 302


def test_a_link_stops_working_when_the_address_changes_or_sessions_end(app, client):
    """A link is bound to the address it was mailed to, and whatever ends the account's
    sessions (sign out everywhere, a password reset) ends its live links too."""
    from service.accounts.services import sign_out_everywhere

    acc = make_account(app, verified=True)
    ask(client, "reader@example.org")
    moved = links_to(app)[-1]
    with app.app_context():
        s = get_session()
        s.get(Account, acc).email = "new@example.org"  # as a confirmed email change leaves it
        s.commit()
    assert press_sign_in(app.test_client(), moved).status_code in (400, 404)
    with app.app_context():
        s = get_session()
        s.get(Account, acc).email = "reader@example.org"
        s.commit()
    ask(client, "reader@example.org")
    live = links_to(app)[-1]
    with app.test_request_context():
        sign_out_everywhere(get_session().get(Account, acc))
    assert press_sign_in(app.test_client(), live).status_code in (400, 404)


def test_a_reset_link_stops_working_when_the_address_changes(app, client):
    from service.accounts.services import account_for_reset_token, make_reset_token

    acc = make_account(app, verified=True)
    with app.app_context():
        s = get_session()
        token = make_reset_token(s.get(Account, acc))
        assert account_for_reset_token(token) is not None
        s.get(Account, acc).email = "new@example.org"
        s.commit()
        assert account_for_reset_token(token) is None


def test_a_name_on_more_than_one_line_is_refused_at_join(app, client):
    resp = post_form(client, "/join", {"name": "Eve\nClick https://phish.example", "email": "eve@example.org",
                                       "password": "a long password here", "newsletter": "y"})
    assert resp.status_code == 422 and "on one line" in resp.get_data(as_text=True)
