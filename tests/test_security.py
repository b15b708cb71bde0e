"""Security quality bars: headers, cookies, body caps, errors without stack traces."""
from __future__ import annotations

from .support.factories import PASSWORD, make_account
from .support.web import login


def test_security_headers_on_pages(client):
    resp = client.get("/join")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_session_cookie_is_httponly_lax_and_not_secure_in_development(app, client):
    make_account(app)
    resp = login(client, "reader@example.org", PASSWORD)
    cookie = resp.headers.get("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_outside_development(make_app):
    app = make_app(PUBLIC_BASE_URL="https://members.example.org", SESSION_COOKIE_SECURE=True, MAIL_BACKEND="smtp")
    make_account(app)
    client = app.test_client()
    resp = login(client, "reader@example.org", PASSWORD)
    assert "Secure" in resp.headers.get("Set-Cookie")
    assert "max-age" in resp.headers["Strict-Transport-Security"]


def test_https_public_url_turns_on_secure_cookies():
    import os

    from service.config import from_environment

    old = os.environ.get("PUBLIC_BASE_URL")
    os.environ["PUBLIC_BASE_URL"] = "https://members.example.org"
    try:
        cfg = from_environment(env_file=False)
    finally:
        if old is None:
            del os.environ["PUBLIC_BASE_URL"]
        else:
            os.environ["PUBLIC_BASE_URL"] = old
    assert cfg["SESSION_COOKIE_SECURE"] is True and cfg["REMEMBER_COOKIE_SECURE"] is True


def test_request_bodies_are_capped(client):
    resp = client.post("/join", data={"name": "x" * (2 * 1024 * 1024)})
    assert resp.status_code == 413


def test_unknown_page_is_a_friendly_404(client):
    resp = client.get("/no/such/page")
    assert resp.status_code == 404 and "Page not found" in resp.get_data(as_text=True)


def test_nul_bytes_in_input_are_a_clear_400_not_a_server_error(app, client):
    from .support.web import csrf

    token = csrf(client, "/login")
    resp = client.post("/login", data={"email": "a\x00@example.org", "password": "x", "csrf_token": token})
    assert resp.status_code == 400
    assert client.get("/staff?q=%00").status_code == 400
    api = client.get("/api/v1/members?q=%00")
    assert api.status_code == 400 and api.json["error"]["code"] == "bad_request"
