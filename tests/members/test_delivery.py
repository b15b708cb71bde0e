"""Reset mail over real SMTP, and rate limits shared through Redis."""
from __future__ import annotations

import socket
import uuid

import pytest
from aiosmtpd.controller import Controller

from ..support.factories import make_account
from ..support.web import csrf, post_form


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_smtp_backend_sends_the_reset_link(make_app, smtp_server):
    inbox, port = smtp_server
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_STARTTLS=False,
                   MAIL_FROM="members@example.org")
    make_account(app)
    client = app.test_client()
    resp = post_form(client, "/reset", {"email": "reader@example.org"})
    assert resp.status_code == 200
    ((sender, recipients, content),) = inbox.messages
    assert sender == "members@example.org" and recipients == ["reader@example.org"]
    assert "Subject: Reset your password" in content and "http://localhost/reset/" in content


def test_smtp_outage_still_answers_the_same_page(make_app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port, SMTP_STARTTLS=False)
    make_account(app)
    resp = post_form(app.test_client(), "/reset", {"email": "reader@example.org"})
    assert resp.status_code == 200 and "If that address has an account" in resp.get_data(as_text=True)


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_rate_limits_are_shared_through_redis(make_app):
    import redis

    db = uuid.uuid4().int % 15 + 1  # a scratch Redis database, emptied first
    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    common = dict(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:6379/{db}", RATELIMIT_LOGIN="2 per minute")
    first, second = make_app(**common), make_app(**common)
    data = {"email": "reader@example.org", "password": "wrong password"}
    c1, c2 = first.test_client(), second.test_client()
    t1, t2 = csrf(c1, "/login"), csrf(c2, "/login")
    assert c1.post("/login", data={**data, "csrf_token": t1}).status_code == 422
    assert c2.post("/login", data={**data, "csrf_token": t2}).status_code == 422
    # Two "instances", one budget.
    assert c1.post("/login", data={**data, "csrf_token": t1}).status_code == 429
