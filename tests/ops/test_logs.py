"""Logs (issue 13): one set-up, JSON lines with a request id that follows the work from the web
request into the worker, and never a secret."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from service import logs
from service.db import close_session, get_session
from service.models import MailOutbox, NewsletterOutbox, StripeEvent

from ..support.events import apply_events, event, sign
from ..support.factories import PASSWORD, make_account
from ..support.staff import api_token
from ..support.stripe_objects import checkout_session, subscription
from ..support.stripe_standin import Reply
from ..support.web import csrf_from, post_form

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def captured():
    """Everything the one handler writes, at DEBUG, as text."""
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.configure("json", logging.DEBUG, stream=buf)
    yield buf
    logs.configure("json", level, stream=sys.__stdout__)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_time_level_logger_message_and_the_context(captured):
    with logs.log_context(request_id="abc123", stripe_event_id="evt_1", member_id=7, outbox_id=9):
        logging.getLogger("service.test").info("hello %s", "world")
    logging.getLogger("service.test").warning("outside")
    first, second = lines(captured)
    assert first["message"] == "hello world" and first["level"] == "INFO" and first["logger"] == "service.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert (first["request_id"], first["stripe_event_id"], first["member_id"], first["outbox_id"]) == (
        "abc123", "evt_1", 7, 9)
    assert second["request_id"] is None and "stripe_event_id" not in second  # context ended with the block


def test_text_format_is_readable_lines(captured):
    logs.configure("text")
    with logs.log_context(request_id="r1", member_id=3):
        logging.getLogger("service.test").info("readable")
    out = captured.getvalue().strip()
    assert out.endswith("INFO    service.test [request=r1 member=3] readable")
    with pytest.raises(ValueError):
        logs.configure("xml")


def test_log_format_comes_from_the_environment_and_make_run_defaults_to_text(make_app, monkeypatch):
    from service.config import from_environment

    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert from_environment(env_file=False)["LOG_FORMAT"] == "json"
    monkeypatch.setenv("LOG_FORMAT", "TEXT")
    assert from_environment(env_file=False)["LOG_FORMAT"] == "text"
    devserver = (ROOT / "service" / "devserver.py").read_text()
    assert 'os.environ["LOG_FORMAT"] = "text"' in devserver  # `make run` = `flask demo`


def test_a_request_id_is_generated_and_a_clients_header_is_ignored_without_a_trusted_proxy(app):
    client = app.test_client()
    resp = client.get("/healthz", headers={"X-Request-ID": "from-the-client"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])
    other = client.get("/healthz")
    assert other.headers["X-Request-ID"] != resp.headers["X-Request-ID"]
    # The entitlement fast path (in front of Flask) answers one too.
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/api/v1/entitlements").headers["X-Request-ID"])


def test_a_trusted_proxys_request_id_is_kept_when_plain_and_short(make_app):
    client = make_app(TRUST_PROXY_HOPS=1).test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.2_x"}).headers["X-Request-ID"] == "lb-7f3a.2_x"
    for bad in ("has spaces", "x" * 65, "semi;colon", "quote\"d", ""):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", got), bad


def _worker_line(captured, **want) -> dict:
    found = [line for line in lines(captured) if all(line.get(k) == v for k, v in want.items())]
    assert found, f"no log line with {want} in:\n{captured.getvalue()}"
    return found[-1]


def test_a_request_id_runs_from_the_request_into_the_outbox_rows_and_the_workers_log_lines(make_app, captured):
    from service import mail
    from service.newsletter.outbox import sync_once
    from service.newsletter.runtime import get_provider

    app = make_app(TRUST_PROXY_HOPS=1, MAIL_DELIVER_INLINE=False)
    client = app.test_client()
    member = make_account(app, customer="cus_A")

    # A web request queues a mail: the row carries the request id, and so does the worker's line.
    page = client.get("/reset")
    resp = client.post("/reset", data={"email": "reader@example.org", "csrf_token": csrf_from(page.get_data(as_text=True))},
                       headers={"X-Request-ID": "req-reset-1"})
    resp.close()
    assert resp.headers["X-Request-ID"] == "req-reset-1"
    with app.app_context():
        row = get_session().scalars(select(MailOutbox).where(MailOutbox.kind == "password_reset")).one()
        assert row.request_id == "req-reset-1" and row.status == "pending"
        mail_id = row.id
        close_session()
        assert mail.deliver_due(get_session()).delivered == 1
        close_session()
    line = _worker_line(captured, logger="service.mail", outbox_id=mail_id)
    assert line["request_id"] == "req-reset-1" and "delivered" in line["message"]

    # A webhook: the stored event carries the delivery's request id; applying it logs it with the
    # event id, and the DAWNS change the worker writes while applying it inherits it.
    evt = event("customer.subscription.created", subscription(id="sub_A", customer="cus_A", member_id=member))
    payload = json.dumps(evt)
    resp = client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": sign(payload), "X-Request-ID": "req-hook-1"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "req-hook-1"
    with app.app_context():
        assert get_session().scalars(select(StripeEvent.request_id)).one() == "req-hook-1"
        close_session()
    stored = _worker_line(captured, logger="service.billing.webhooks", stripe_event_id=evt["id"])
    assert stored["request_id"] == "req-hook-1"
    apply_events(app)
    applied = _worker_line(captured, logger="service.billing.queue", stripe_event_id=evt["id"])
    assert applied["request_id"] == "req-hook-1" and "applied" in applied["message"]
    assert applied["member_id"] == member
    with app.app_context():
        change = get_session().scalars(select(NewsletterOutbox)).one()
        assert change.request_id == "req-hook-1"
        change_id = change.id
        close_session()
        assert sync_once(get_session(), get_provider()).delivered == 1
        close_session()
    delivered = _worker_line(captured, logger="service.newsletter", outbox_id=change_id)
    assert delivered["request_id"] == "req-hook-1" and delivered["member_id"] == member


def test_the_worker_command_writes_json_lines_on_stdout(make_app, database_url, tmp_path):
    """`flask --app wsgi worker --once`, a separate process: its log lines are JSON on stdout."""
    if not database_url.startswith("sqlite"):
        pytest.skip("one database is enough for the process set-up")
    app = make_app(MAIL_DELIVER_INLINE=False)
    make_account(app)
    client = app.test_client()
    post_form(client, "/reset", {"email": "reader@example.org"})
    with app.app_context():
        mail_id, request_id = get_session().execute(select(MailOutbox.id, MailOutbox.request_id)).one()
        close_session()
    assert request_id
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "LOG_"))}
    env.update(DATABASE_URL=database_url, SECRET_KEY="x" * 32, STRIPE_SECRET_KEY="sk_test_unused",
               STRIPE_PRICE_ID="", MAIL_LOG_PATH=str(tmp_path / "mail.jsonl"), NEWSLETTER_LOG_PATH=str(tmp_path / "n.jsonl"),
               PUBLIC_BASE_URL="http://localhost")
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    mine = [r for r in records if r.get("outbox_id") == mail_id and r["logger"] == "service.mail"]
    assert mine and mine[-1]["request_id"] == request_id and "delivered" in mine[-1]["message"]
    assert all(set(r) >= {"time", "level", "logger", "message", "request_id"} for r in records)


def test_redaction_masks_secrets_in_any_shape():
    samples = {
        '127.0.0.1 - - "GET /reset/IjEyMyI.Zx9-abc_DEF HTTP/1.1" 200': "IjEyMyI.Zx9-abc_DEF",
        "POST /login/link/AbCdEf0123456789_- 303": "AbCdEf0123456789_-",
        "https://x.example/organisations/invitations/tok_ABCDEFGH1234/ ok": "tok_ABCDEFGH1234",
        "headers: {'Authorization': 'Bearer dawns_Zz9YyXx8'}": "dawns_Zz9YyXx8",
        "Authorization: Bearer abc.def.ghi": "abc.def.ghi",
        "Stripe-Signature: t=1700000000,v1=deadbeefcafe": "deadbeefcafe",
        "password=hunter2hunter2 next": "hunter2hunter2",
        '{"password": "correct horse", "name": "Amina"}': "correct horse",
        "api_key=sk_live_51Habcdef": "sk_live_51Habcdef",
        "secret whsec_abcdef123 loaded": "whsec_abcdef123",
        "client_secret: pi_123_secret_456": "pi_123_secret_456",
        '{"id": "evt_123", "object": "event", "data": {"object": {"email": "a@b.c"}}}': "a@b.c",
        "mailchimp hook /newsletter/mailchimp/webhook/s3cr3tpart": "s3cr3tpart",
        "jwt eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl": "eyJzdWIiOiIxIn0",
    }
    for text, secret in samples.items():
        masked = logs.redact(text)
        assert secret not in masked and "[redacted]" in masked, (text, masked)
    assert logs.redact("Stripe event evt_1 (customer.subscription.created) applied") == (
        "Stripe event evt_1 (customer.subscription.created) applied")


def test_a_full_journey_logs_no_password_token_secret_signature_or_webhook_body(make_app, stripe_api, captured):
    """Join, a signed webhook, a sign-in link, a password reset, API calls with a bearer token,
    a wrong password: everything logged at DEBUG is scanned for what must never be there."""
    from service.accounts.api_tokens import hash_token

    stripe_api.on("POST", "/v1/checkout/sessions", lambda rec: Reply(200, checkout_session(
        id="cs_test_journey", member_id=int(rec.form["client_reference_id"]), email=rec.form.get("customer_email", ""),
        customer=None, status="open", payment_status="unpaid", url="https://checkout.stripe.com/c/pay/cs_test_journey")))
    app = make_app()
    client = app.test_client()
    join_password = "journey join password 4711"
    resp = post_form(client, "/join", {"name": "Amina Yusuf", "email": "amina@example.org", "password": join_password,
                                       "newsletter": "y"})
    assert resp.status_code == 303
    from service.models import Account

    with app.app_context():
        amina = get_session().scalars(select(Account.id).where(Account.email == "amina@example.org")).one()
        close_session()
    from service.billing.lifecycle import link_customer

    with app.app_context():
        link_customer(get_session(), "cus_J", get_session().get(Account, amina))
        get_session().commit()
        close_session()

    # A signed webhook with a body we can recognise.
    marker = "webhook-body-marker-5c1e"
    obj = subscription(id="sub_J", customer="cus_J", member_id=amina)
    obj["metadata"]["journey"] = marker
    evt = event("customer.subscription.created", obj)
    payload = json.dumps(evt)
    signature = sign(payload)
    resp = client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": signature})
    assert resp.status_code == 200
    bad = client.post("/stripe/webhook", data=payload, content_type="application/json",
                      headers={"Stripe-Signature": signature.replace("v1=", "v1=0")})
    assert bad.status_code == 400
    apply_events(app)

    # A sign-in link, asked for and used.
    member = make_account(app, verified=True)
    post_form(client, "/login/link", {"email": "reader@example.org"}, form_path="/login")
    body = app.extensions["mail_outbox"][-1].get_content()
    link = re.search(r"http://localhost(/login/link/[A-Za-z0-9_\-]+)", body).group(1)
    page = client.get(link)
    client.post(link, data={"csrf_token": csrf_from(page.get_data(as_text=True))}).close()
    post_form(client, "/logout", {}, form_path="/account")

    # A wrong password, then a password reset, then signing in with the new one.
    post_form(client, "/login", {"email": "reader@example.org", "password": "wrong password 0000"})
    post_form(client, "/reset", {"email": "reader@example.org"})
    body = app.extensions["mail_outbox"][-1].get_content()
    reset = re.search(r"http://localhost(/reset/\S+)", body).group(1)
    new_password = "a brand new password 9876"
    assert post_form(client, reset, {"password": new_password, "confirm": new_password}).status_code == 303
    assert post_form(client, "/login", {"email": "reader@example.org", "password": new_password},
                     form_path="/login").status_code == 303
    session_cookie = client.get_cookie("session")

    # API calls with a bearer token (good, wrong scope, unknown).
    token = api_token(app, scopes=("entitlements:read",))
    api = app.test_client()
    assert api.get(f"/api/v1/entitlements?member_id={member}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.get("/api/v1/members", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert api.get("/api/v1/members", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    assert api.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 403

    out = captured.getvalue()
    # The journey did log (so the scan means something), and what it masked says so.
    assert len(out.splitlines()) > 10 and "MAIL (log backend)" in out and "[redacted]" in out
    assert "webhook rejected" in out and evt["id"] in out
    secret_values = {
        "join password": join_password, "factory password": PASSWORD, "new password": new_password,
        "wrong password": "wrong password 0000",
        "sign-in token": link.rsplit("/", 1)[1], "reset token": reset.rsplit("/", 1)[1],
        "api token": token, "api token secret part": token.removeprefix("dawns_"), "token digest": hash_token(token),
        "webhook secret": app.config["STRIPE_WEBHOOK_SECRET"], "stripe key": app.config["STRIPE_SECRET_KEY"],
        "secret key": app.config["SECRET_KEY"], "signature": signature, "signature digest": signature.split("v1=")[1],
        "webhook body": payload, "webhook body marker": marker,
        "session cookie": session_cookie.value if session_cookie else "no-session-cookie-was-set",
    }
    for what, value in secret_values.items():
        assert value not in out, f"the logs hold the {what}"
    assert hashlib.sha256(payload.encode()).hexdigest() not in out


def test_each_request_logs_one_line_with_its_id_and_its_endpoint_never_its_path(app, captured):
    client = app.test_client()
    resp = client.get("/join")
    client.get("/reset/secret-looking-token-123")
    client.get("/healthz")
    requests = [line for line in lines(captured) if line["logger"] == "service.request"]
    assert [r["message"] for r in requests] == ["GET members.join 200", "GET members.reset_password 400"]
    assert requests[0]["request_id"] == resp.headers["X-Request-ID"]
    assert "secret-looking-token-123" not in captured.getvalue()
