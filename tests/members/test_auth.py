"""Journey 5: login, logout, password reset, and the protections around them."""
from __future__ import annotations

import re

import pytest
from werkzeug.security import check_password_hash

from service.db import get_session
from service.domain.membership import Role
from service.models import Account, AuditLog

from ..support.factories import PASSWORD, make_account
from ..support.web import login, logout, post_form


def test_login_with_right_password_reaches_account(app, client):
    make_account(app)
    resp = login(client, "READER@example.org", PASSWORD)
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "Reader One" in page and "Not yet active" in page


def test_wrong_password_and_unknown_email_get_the_same_answer(app, client):
    make_account(app)
    wrong = login(client, "reader@example.org", "not the password")
    unknown = login(client, "nobody@example.org", "not the password")
    assert wrong.status_code == unknown.status_code == 422
    msg = "That email and password do not match an account."
    assert msg in wrong.get_data(as_text=True) and msg in unknown.get_data(as_text=True)
    assert client.get("/account").status_code == 302


def test_logout_ends_the_session(app, client):
    make_account(app)
    login(client, "reader@example.org", PASSWORD)
    resp = logout(client)
    assert resp.status_code == 303
    assert client.get("/account").status_code == 302


def test_logout_needs_csrf(app, client):
    make_account(app)
    login(client, "reader@example.org", PASSWORD)
    assert client.post("/logout").status_code == 400
    assert client.get("/account").status_code == 200


@pytest.mark.parametrize("target", ["/account?tab=1", "/staff"])
def test_next_on_this_site_is_followed(app, client, target):
    make_account(app, role=Role.STAFF) if target == "/staff" else make_account(app)
    resp = login(client, "reader@example.org", PASSWORD, next_url=target)
    assert resp.headers["Location"] == target


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http:evil.example", "javascript:alert(1)", "evil"],
)
def test_next_to_another_host_is_refused(app, client, target):
    make_account(app)
    resp = login(client, "reader@example.org", PASSWORD, next_url=target)
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/account"


def test_staff_login_lands_on_staff_console(app, client):
    make_account(app, email="editor@example.org", role=Role.STAFF)
    resp = login(client, "editor@example.org", PASSWORD)
    assert resp.headers["Location"] == "/staff"
    assert client.get("/staff").status_code == 200


def test_member_is_forbidden_from_staff_pages(app, client):
    make_account(app)
    login(client, "reader@example.org", PASSWORD)
    resp = client.get("/staff")
    assert resp.status_code == 403
    assert "Not allowed" in resp.get_data(as_text=True)


def test_stranger_is_sent_to_login_from_staff_pages(client):
    resp = client.get("/staff")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")


def _reset_link(app) -> str:
    body = app.extensions["mail_outbox"][-1].get_content()
    return re.search(r"http://localhost(/reset/\S+)", body).group(1)


def _password_ok(app, account_id, password) -> bool:
    with app.app_context():
        return check_password_hash(get_session().get(Account, account_id).password_hash, password)


def test_reset_token_works_once(app, client):
    acc = make_account(app)
    resp = post_form(client, "/reset", {"email": "Reader@Example.org"})
    assert "If that address has an account" in resp.get_data(as_text=True)
    link = _reset_link(app)
    new = {"password": "a brand new password", "confirm": "a brand new password"}
    resp = post_form(client, link, new)
    assert resp.status_code == 303 and resp.headers["Location"] == "/login"
    assert _password_ok(app, acc, "a brand new password")
    # Second use: refused, and the password stays as set.
    again = client.get(link)
    assert again.status_code == 400 and "This link is not valid" in again.get_data(as_text=True)
    assert login(client, "reader@example.org", "a brand new password").status_code == 303
    with app.app_context():
        assert get_session().query(AuditLog).filter_by(action="password_reset", target_account_id=acc).count() == 1


def test_reset_token_expires(make_app):
    app = make_app(PASSWORD_RESET_MAX_AGE=-1)
    client = app.test_client()
    acc = make_account(app)
    post_form(client, "/reset", {"email": "reader@example.org"})
    link = _reset_link(app)
    resp = client.get(link)
    assert resp.status_code == 400
    assert _password_ok(app, acc, PASSWORD)


def test_wrong_reset_token_changes_nothing(app, client):
    acc = make_account(app)
    post_form(client, "/reset", {"email": "reader@example.org"})
    link = _reset_link(app)
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    csrf_page = client.get("/reset")
    from ..support.web import csrf_from

    token = csrf_from(csrf_page.get_data(as_text=True))
    resp = client.post(tampered, data={"password": "x" * 12, "confirm": "x" * 12, "csrf_token": token})
    assert resp.status_code == 400
    assert _password_ok(app, acc, PASSWORD)


def test_reset_for_unknown_email_looks_the_same_and_sends_nothing(app, client):
    make_account(app)
    known = post_form(client, "/reset", {"email": "reader@example.org"})
    sent = len(app.extensions["mail_outbox"])
    unknown = post_form(client, "/reset", {"email": "stranger@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert known.get_data() == unknown.get_data()
    assert len(app.extensions["mail_outbox"]) == sent


@pytest.mark.parametrize(
    "path, data, limit_key",
    [
        ("/login", {"email": "reader@example.org", "password": "wrong password"}, "RATELIMIT_LOGIN"),
        ("/join", {"name": "", "email": "x", "password": "y"}, "RATELIMIT_JOIN"),
        ("/reset", {"email": "reader@example.org"}, "RATELIMIT_RESET"),
    ],
)
def test_rate_limits_answer_429(make_app, path, data, limit_key):
    app = make_app(**{limit_key: "3 per minute"})
    client = app.test_client()
    from ..support.web import csrf

    token = csrf(client, path)
    codes = [client.post(path, data={**data, "csrf_token": token}).status_code for _ in range(4)]
    assert 429 not in codes[:3]
    assert codes[3] == 429
    assert client.get(path).status_code == 200  # reading the form is not limited


def test_passwords_are_hashed_with_scrypt_by_default(make_app):
    app = make_app(PASSWORD_HASH_METHOD=None)  # unset: the production default
    acc = make_account(app)
    with app.app_context():
        stored = get_session().get(Account, acc).password_hash
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_password_reset_ends_other_sessions(app, client):
    make_account(app)
    other = app.test_client()
    login(other, "reader@example.org", PASSWORD)
    assert other.get("/account").status_code == 200
    post_form(client, "/reset", {"email": "reader@example.org"})
    post_form(client, _reset_link(app), {"password": "a brand new password", "confirm": "a brand new password"})
    assert other.get("/account").status_code == 302  # logged out everywhere


def test_reset_token_does_not_carry_the_password_hash(app, client):
    import base64

    acc = make_account(app)
    post_form(client, "/reset", {"email": "reader@example.org"})
    token = _reset_link(app).rsplit("/", 1)[1]
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    with app.app_context():
        stored = get_session().get(Account, acc).password_hash
    assert stored[-16:] not in decoded


def test_reset_mail_is_sent_after_the_response_so_known_and_unknown_take_the_same_path(app, client):
    from ..support.web import csrf

    make_account(app)
    token = csrf(client, "/reset")
    resp = client.post("/reset", data={"email": "reader@example.org", "csrf_token": token})
    assert resp.status_code == 200
    assert len(app.extensions.get("mail_outbox", [])) == 0  # nothing sent while answering
    resp.close()  # the WSGI server finishes the response
    assert app.extensions["mail_outbox"][-1]["To"] == "reader@example.org"
