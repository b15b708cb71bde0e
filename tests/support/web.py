"""Helpers for driving pages through the test client, with real CSRF tokens."""
from __future__ import annotations

import re

from flask.testing import FlaskClient

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token on the page"
    return m.group(1) or m.group(2)


def csrf(client: FlaskClient, path: str) -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


def post_form(client: FlaskClient, path: str, data: dict, *, form_path: str | None = None, **kwargs):
    token = csrf(client, form_path or path)
    resp = client.post(path, data={**data, "csrf_token": token}, **kwargs)
    resp.close()  # as a WSGI server does: runs what the app does after the response (mail, DAWNS)
    return resp


def login(client: FlaskClient, email: str, password: str, next_url: str | None = None):
    path = "/login" + (f"?next={next_url}" if next_url else "")
    return post_form(client, path, {"email": email, "password": password}, form_path="/login")


def logout(client: FlaskClient):
    return post_form(client, "/logout", {}, form_path="/account")
