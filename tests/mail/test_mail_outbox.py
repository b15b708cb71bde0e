"""The durable mail outbox: written with the change that causes it, delivered by the worker
(leases, retries with backoff, once), with a plain-text and an HTML part."""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from service.db import get_session, utcnow
from service.mail import MailStatus, claim, deliver_due, send_mail, text_to_html
from service.models import MailOutbox

from ..support.events import run_worker
from ..support.factories import make_account
from ..support.web import post_form

QUEUED = {"MAIL_DELIVER_INLINE": False}  # only the worker delivers (as in production)


# --- an SMTP server that can be down, refuse for a while, or accept --------------------------

class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse_with: str | None = None  # e.g. "451 try again later"
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with
        await asyncio.sleep(0)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            return [m["Message-ID"] for m in self.messages]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPServer:
    """aiosmtpd on a fixed port that can be stopped and started again (down, then back)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SMTPServer()
    yield server
    server.down()


def _smtp_app(make_app, server: SMTPServer, **config):
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_STARTTLS=False,
                    SMTP_TIMEOUT=5.0, MAIL_FROM="DAWNS <members@example.org>", **QUEUED, **config)


# --- helpers ----------------------------------------------------------------------------------

def rows(app) -> list[MailOutbox]:
    with app.app_context():
        found = get_session().scalars(select(MailOutbox).order_by(MailOutbox.id)).all()
        get_session().expunge_all()
        return list(found)


def deliver(app, **kw):
    with app.app_context():
        try:
            return deliver_due(get_session(), **kw)
        finally:
            get_session().close()


def queue_mail(app, n: int = 1, **kw) -> list[int]:
    with app.app_context():
        made = [send_mail(f"reader{i}@example.org", f"Message {i}", f"Hello {i}\n", kind="test", **kw)
                for i in range(n)]
        get_session().commit()
        return [m.id for m in made]


def outbox(app) -> list:
    return list(app.extensions.get("mail_outbox", []))


# --- written with the change ------------------------------------------------------------------

def test_a_change_that_rolls_back_sends_nothing(make_app):
    app = make_app()  # TESTING: inline delivery is on, so nothing may slip through it either
    with app.app_context():
        session = get_session()
        send_mail("reader@example.org", "Never", "This change rolls back.\n", kind="test")
        session.flush()  # even once written to the database
        session.rollback()
        send_mail("other@example.org", "Kept", "This one commits.\n", kind="test")
        session.commit()
    assert [r.to_address for r in rows(app)] == ["other@example.org"]
    assert [m["To"] for m in outbox(app)] == ["other@example.org"]
    assert run_worker(app)[0].mail.touched == 0
    assert [m["To"] for m in outbox(app)] == ["other@example.org"]


def test_a_call_site_that_fails_after_writing_its_mail_sends_nothing(make_app):
    """The email change commits its "your address changed" mail with the change: when the new
    address was taken a moment ago, the change rolls back and so does the mail."""
    from service.accounts import email_change
    from service.models import Account

    app = make_app(**QUEUED)
    first = make_account(app, email="one@example.org")
    make_account(app, email="two@example.org")
    with app.app_context():
        session = get_session()
        account = session.get(Account, first)
        email_change.request(session, account, "two@example.org", source="test")
        session.commit()
        token_mail = rows(app)[-1]
    assert token_mail.kind == "email_change_confirm"
    link = token_mail.text_body.split("http://localhost")[1].split()[0]
    token = link.rsplit("/", 1)[1]
    with app.test_request_context():
        account = get_session().get(Account, first)
        with pytest.raises(email_change.EmailInUse):
            email_change.confirm(token, account)
    assert [r.kind for r in rows(app)] == ["email_change_confirm"]  # no "your address changed"


def test_a_committed_change_is_delivered_once_by_the_worker(make_app):
    app = make_app(**QUEUED)
    make_account(app)
    client = app.test_client()
    resp = post_form(client, "/reset", {"email": "reader@example.org"})  # the response is closed
    assert resp.status_code == 200
    # The process could die now: the message is committed, and nothing was sent.
    (row,) = rows(app)
    assert (row.status, row.kind, row.attempts, row.to_address) == ("pending", "password_reset", 0,
                                                                    "reader@example.org")
    assert outbox(app) == []
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "mail: delivered 1, retrying 0, failed 0" in result.output
    (row,) = rows(app)
    assert row.status == "delivered" and row.attempts == 1 and row.sent_at is not None and row.claimed_until is None
    assert [m["Subject"] for m in outbox(app)] == ["Reset your password"]
    assert run_worker(app)[0].mail.touched == 0  # never twice
    assert len(outbox(app)) == 1


def test_inline_delivery_after_the_response_still_goes_through_the_outbox(app, client):
    """TESTING (or MAIL_DELIVER_INLINE): the web process tries the message once the response
    has gone; the row is claimed like any worker's, so the worker does not send it again."""
    make_account(app)
    post_form(client, "/reset", {"email": "reader@example.org"})
    (row,) = rows(app)
    assert row.status == "delivered"
    assert len(outbox(app)) == 1
    assert run_worker(app)[0].mail.touched == 0
    assert len(outbox(app)) == 1


# --- both parts ---------------------------------------------------------------------------------

def test_every_message_has_a_text_and_an_html_part_with_everything_escaped(make_app, smtp):
    smtp.up()
    app = _smtp_app(make_app, smtp)
    make_account(app, name='<script>alert("x")</script> & Co')
    post_form(app.test_client(), "/reset", {"email": "reader@example.org"})
    assert deliver(app).delivered == 1
    (msg,) = smtp.inbox.messages
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["From"] == "DAWNS <members@example.org>" and msg["To"] == "reader@example.org"
    assert msg["Message-ID"].endswith("@example.org>")
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert '<script>alert("x")</script> & Co' in text and "http://localhost/reset/" in text
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html
    link = next(w for w in text.split() if w.startswith("http://localhost/reset/"))
    assert f'<a href="{link}">{link}</a>' in html


def test_html_part_links_only_http_and_keeps_attributes_closed():
    html = text_to_html('See https://example.org/a?b=1&c=2. Not javascript:alert(1) nor "https://x.org/"onmouseover=1\n'
                        "\nSecond paragraph", lang="ar")
    assert '<a href="https://example.org/a?b=1&amp;c=2">https://example.org/a?b=1&amp;c=2</a>.' in html
    assert "javascript:alert(1)" in html and 'href="javascript' not in html
    assert '<a href="https://x.org/">https://x.org/</a>&quot;onmouseover=1' in html
    assert html.count("<p>") == 2 and '<html lang="ar" dir="rtl">' in html


# --- retries, backoff, leases -------------------------------------------------------------------

def test_smtp_down_is_retried_with_backoff_then_delivered_once_when_it_is_back(make_app, smtp):
    app = _smtp_app(make_app, smtp, MAIL_BACKOFF_BASE=60.0)
    (mail_id,) = queue_mail(app)
    report = deliver(app)  # nobody listens on the port
    assert (report.delivered, report.retried, report.failed) == (0, 1, 0)
    (row,) = rows(app)
    assert row.status == "pending" and row.attempts == 1 and "cannot reach" in row.last_error
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert 25 <= wait <= 60  # backoff with jitter: between half the base and the base
    smtp.up()
    assert deliver(app).touched == 0  # not due yet: the backoff is honoured
    assert smtp.inbox.messages == []
    with app.app_context():  # time passes
        get_session().execute(update(MailOutbox).values(next_attempt_at=utcnow()))
        get_session().commit()
    assert deliver(app).delivered == 1
    assert deliver(app).touched == 0
    assert run_worker(app)[0].mail.touched == 0
    assert len(smtp.inbox.messages) == 1  # delivered once
    (row,) = rows(app)
    assert (row.id, row.status, row.attempts, row.last_error) == (mail_id, "delivered", 2, None)


def test_a_temporary_refusal_is_retried_a_permanent_one_fails(make_app, smtp):
    smtp.up()
    app = _smtp_app(make_app, smtp, MAIL_BACKOFF_BASE=0.0)
    queue_mail(app)
    smtp.inbox.refuse_with = "451 4.3.0 try again later"
    assert deliver(app).retried == 1
    smtp.inbox.refuse_with = None
    assert deliver(app).delivered == 1
    queue_mail(app)
    smtp.inbox.refuse_with = "554 5.7.1 rejected"
    assert deliver(app).failed == 1
    assert [r.status for r in rows(app)] == ["delivered", "failed"]
    assert len(smtp.inbox.messages) == 1


def test_failed_after_the_last_attempt(make_app, smtp):
    app = _smtp_app(make_app, smtp, MAIL_BACKOFF_BASE=0.0, MAIL_MAX_ATTEMPTS=3)
    queue_mail(app)
    reports = [deliver(app) for _ in range(4)]
    assert [(r.retried, r.failed) for r in reports] == [(1, 0), (1, 0), (0, 1), (0, 0)]
    (row,) = rows(app)
    assert row.status == "failed" and row.attempts == 3
    with app.app_context():
        from service.mail import retry_failed

        assert retry_failed(get_session(), row.id)
        get_session().commit()
    smtp.up()
    assert deliver(app).delivered == 1


def test_an_unreachable_server_puts_off_the_rest_of_the_batch_without_counting_attempts(make_app, smtp):
    app = _smtp_app(make_app, smtp, MAIL_BACKOFF_BASE=60.0)
    queue_mail(app, 5)
    report = deliver(app)
    assert (report.delivered, report.retried) == (0, 1)
    assert [(r.status, r.attempts, r.claimed_until) for r in rows(app)][1:] == [("pending", 0, None)] * 4
    smtp.up()
    assert deliver(app).delivered == 4
    assert len(smtp.inbox.messages) == 4


def test_a_worker_killed_mid_claim_leaves_it_to_another_once_the_lease_runs_out(make_app, smtp):
    smtp.up()
    app = _smtp_app(make_app, smtp, MAIL_LEASE_SECONDS=60.0)
    queue_mail(app, 3)
    with app.app_context():  # the first worker claims, then is killed before sending anything
        claimed = claim(get_session(), 10, lease=60.0)
        get_session().close()
    assert len(claimed) == 3 and {r.status for r in rows(app)} == {"in_flight"}
    assert deliver(app).touched == 0  # its leases still hold
    with app.app_context():  # a minute later
        get_session().execute(update(MailOutbox).values(claimed_until=utcnow() - timedelta(seconds=1)))
        get_session().commit()
    assert deliver(app).delivered == 3
    assert deliver(app).touched == 0
    assert len(smtp.inbox.messages) == 3 and len(set(smtp.inbox.ids())) == 3
    # The dead worker's claims are no longer its own: it cannot record anything over them.
    with app.app_context():
        from service.mail import _deliver_one, MailReport

        _deliver_one(get_session(), claimed[0], MailReport())
        get_session().close()
    assert len(smtp.inbox.messages) == 3


def test_a_worker_killed_while_sending_counts_the_attempt_and_the_message_goes_again(make_app, smtp):
    smtp.up()
    app = _smtp_app(make_app, smtp)
    queue_mail(app)
    with app.app_context():  # claimed and started (attempt counted), then killed
        (item,) = claim(get_session(), 10, lease=60.0)
        get_session().execute(update(MailOutbox).values(attempts=MailOutbox.attempts + 1,
                                                        claimed_until=utcnow() - timedelta(seconds=1)))
        get_session().commit()
    assert deliver(app).delivered == 1
    (row,) = rows(app)
    assert row.status == "delivered" and row.attempts == 2
    assert len(smtp.inbox.messages) == 1


def test_two_workers_racing_deliver_each_message_once(make_app, smtp, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("workers racing on claimed rows: PostgreSQL (SKIP LOCKED)")
    smtp.up()
    app = _smtp_app(make_app, smtp)
    queue_mail(app, 40)
    barrier = threading.Barrier(4)
    reports, errors = [], []

    def worker() -> None:
        with app.app_context():
            try:
                barrier.wait()
                reports.append(deliver_due(get_session(), batch=3))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                get_session().close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(r.delivered for r in reports) == 40
    assert sum(1 for r in reports if r.delivered) >= 2  # they shared the work
    ids = smtp.inbox.ids()
    assert len(ids) == len(set(ids)) == 40
    assert {r.status for r in rows(app)} == {"delivered"}


def test_committing_mail_wakes_the_worker_on_postgresql(make_app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import psycopg

    app = make_app(**QUEUED)
    make_account(app)
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN dawns_worker")
        post_form(app.test_client(), "/reset", {"email": "reader@example.org"})
        deadline = time.monotonic() + 5
        got = []
        while time.monotonic() < deadline and "mail" not in got:
            got += [n.payload for n in conn.notifies(timeout=0.5, stop_after=1)]
    assert "mail" in got


# --- the log backend and /readyz ----------------------------------------------------------------

def test_the_log_backend_writes_the_log_and_mail_log_jsonl(make_app, tmp_path, caplog):
    path = tmp_path / "logs" / "mail.jsonl"
    app = make_app(MAIL_LOG_PATH=str(path), **QUEUED)
    make_account(app)
    post_form(app.test_client(), "/reset", {"email": "reader@example.org"})
    with caplog.at_level("WARNING", logger="service.mail"):
        run_worker(app)
    assert "MAIL (log backend) to=reader@example.org subject=Reset your password" in caplog.text
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert record["to"] == "reader@example.org" and record["subject"] == "Reset your password"
    assert record["kind"] == "password_reset" and "http://localhost/reset/" in record["text"]
    assert '<a href="http://localhost/reset/' in record["html"]
    (msg,) = outbox(app)
    assert "http://localhost/reset/" in msg.get_content()  # the plain-text part


def test_readyz_shows_the_mail_queue(make_app):
    app = make_app(**QUEUED)
    client = app.test_client()
    assert client.get("/readyz").json["queues"]["mail"] == {"depth": 0, "oldest_age_seconds": None}
    queue_mail(app, 2)
    mail = client.get("/readyz").json["queues"]["mail"]
    assert mail["depth"] == 2 and mail["oldest_age_seconds"] >= 0
    run_worker(app)
    assert client.get("/readyz").json["queues"]["mail"] == {"depth": 0, "oldest_age_seconds": None}
    assert {r.status for r in rows(app)} == {MailStatus.DELIVERED.value}


def test_a_message_no_server_could_take_fails_at_once_and_the_others_still_go(make_app, smtp):
    smtp.up()
    app = _smtp_app(make_app, smtp)
    bad, good = queue_mail(app, 2)
    with app.app_context():  # a header with a line break (send_mail itself removes them)
        get_session().execute(update(MailOutbox).where(MailOutbox.id == bad)
                              .values(to_address="a@example.org\nBcc: everyone@example.org"))
        get_session().commit()
    report = deliver(app)
    assert (report.delivered, report.failed) == (1, 1)
    statuses = {r.id: (r.status, r.attempts) for r in rows(app)}
    assert statuses == {bad: ("failed", 1), good: ("delivered", 1)}
    assert [m["To"] for m in smtp.inbox.messages] == ["reader1@example.org"]
    with app.app_context():
        row = send_mail(" new\r\n@example.org ", "Two\r\nlines", "x", kind="test")
        assert (row.to_address, row.subject) == ("new@example.org", "Two lines")
        get_session().rollback()


def test_only_the_services_own_links_become_clickable_and_link_bodies_are_not_kept(app):
    """A URL typed into a name stays text in the HTML part; a delivered message that carried a
    live link keeps no body (the link tables keep only hashes)."""
    from service.db import get_session
    from service.mail import send_mail
    from service.models import MailOutbox

    with app.app_context():
        s = get_session()
        send_mail("reader@example.org", "Hello", "From https://phish.example/login\n\nhttp://localhost/reset/abc",
                  kind="password_reset")
        s.commit()
        row = s.scalars(select(MailOutbox).order_by(MailOutbox.id.desc())).first()
        assert row.status == "delivered" and row.text_body == "" and row.html_body == ""
    msg = app.extensions["mail_outbox"][-1]
    html = msg.get_body(("html",)).get_content()
    assert '<a href="http://localhost/reset/abc">' in html and 'href="https://phish.example' not in html


def test_a_to_address_that_is_not_one_address_is_refused(app):
    from service.db import get_session
    from service.mail import MailError, send_mail

    with app.app_context():
        with pytest.raises(MailError):
            send_mail("me@example.org,spy@evil.example", "Hello", "x")
        get_session().rollback()
