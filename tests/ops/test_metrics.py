"""/metrics (issue 13): Prometheus text format, every gunicorn worker counted, strangers refused."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ..support.events import event, sign
from ..support.factories import make_account
from ..support.server import free_port
from ..support.staff import api_token
from ..support.stripe_objects import subscription
from ..support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client, **kw) -> str:
    resp = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_data(as_text=True)


@pytest.fixture
def metrics_app(make_app):
    return make_app(METRICS_ALLOWED_IPS=["10.1.0.0/16", "192.0.2.7"])


def test_metrics_refuses_strangers_and_tokens_without_the_scope(metrics_app):
    client = metrics_app.test_client()
    stranger = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert stranger.status_code == 403 and stranger.json["error"]["code"] == "forbidden"
    assert set(stranger.json["error"]) >= {"code", "message"}
    # A client's own X-Forwarded-For means nothing without a trusted proxy.
    spoof = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"X-Forwarded-For": "10.1.2.3"})
    assert spoof.status_code == 403
    wrong_scope = api_token(metrics_app, name="paywall", scopes=("entitlements:read", "members:read"))
    refused = client.get("/metrics", headers={"Authorization": f"Bearer {wrong_scope}"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "insufficient_scope"
    unknown = client.get("/metrics", headers={"Authorization": "Bearer dawns_not-a-real-token"})
    assert unknown.status_code == 403
    revoked = api_token(metrics_app, name="old-scraper", scopes=("metrics:read",), revoked=True)
    assert client.get("/metrics", headers={"Authorization": f"Bearer {revoked}"}).status_code == 403


def test_metrics_accepts_an_allowed_address_and_a_metrics_read_token(metrics_app, make_app):
    client = metrics_app.test_client()
    for addr in ("10.1.2.3", "192.0.2.7"):
        resp = client.get("/metrics", environ_base={"REMOTE_ADDR": addr})
        assert resp.status_code == 200 and resp.mimetype == "text/plain"
        assert "dawns_outbox_backlog" in resp.get_data(as_text=True)
    token = api_token(metrics_app, name="prometheus", scopes=("metrics:read",))
    resp = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"},
                      headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and "dawns_members" in resp.get_data(as_text=True)
    # Behind one trusted proxy, the address is the proxy-fixed one.
    proxied = make_app(TRUST_PROXY_HOPS=1, METRICS_ALLOWED_IPS=["10.1.0.0/16"]).test_client()
    assert proxied.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                       headers={"X-Forwarded-For": "10.1.9.9"}).status_code == 200
    assert proxied.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.9.9"},
                       headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    # A local proxy the service was not told about: every request comes from 127.0.0.1, so a
    # forwarded one is never let in by that address.
    local = make_app(METRICS_ALLOWED_IPS=["127.0.0.1"]).test_client()
    assert local.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert local.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                     headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_webhooks_entitlement_checks_queues_and_members_are_reported(metrics_app, stripe_api):
    client = metrics_app.test_client()
    member = make_account(metrics_app, customer="cus_M")
    make_account(metrics_app, email="other@example.org")
    token = api_token(metrics_app, scopes=("entitlements:read",))
    before = scrape(client)
    evt = event("customer.subscription.created", subscription(id="sub_M", customer="cus_M", member_id=member))
    payload = json.dumps(evt)
    for _ in range(2):  # stored, then a duplicate
        assert client.post("/stripe/webhook", data=payload, content_type="application/json",
                           headers={"Stripe-Signature": sign(payload)}).status_code == 200
    assert client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": "t=1,v1=00"}).status_code == 400
    for _ in range(3):
        assert client.get(f"/api/v1/entitlements?member_id={member}",
                          headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/v1/entitlements").status_code == 401
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    kind = "customer.subscription.created"
    assert moved("dawns_stripe_webhook_deliveries_total", type=kind, outcome="stored") == 1
    assert moved("dawns_stripe_webhook_deliveries_total", type=kind, outcome="duplicate") == 1
    assert moved("dawns_stripe_webhook_deliveries_total", type="unknown", outcome="bad_signature") == 1
    assert moved("dawns_entitlement_check_seconds_count", status="200") == 3
    assert moved("dawns_entitlement_check_seconds_count", status="401") == 1
    assert moved("dawns_entitlement_check_seconds_bucket", status="200", le="+Inf") == 3
    # The stored event waits in the Stripe queue (the worker has not run): backlog 1.
    assert value(after, "dawns_outbox_backlog", outbox="stripe_events") == 1
    assert value(after, "dawns_outbox_oldest_due_age_seconds", outbox="stripe_events") >= 0
    for outbox in ("newsletter", "mail", "exports"):
        assert ("dawns_outbox_backlog", frozenset({("outbox", outbox)})) in samples(after)
    assert value(after, "dawns_members", state="pending") == 2
    assert value(after, "dawns_database_up") == 1

    from ..support.events import apply_events

    apply_events(metrics_app)
    applied = scrape(client)
    assert value(applied, "dawns_stripe_events_applied_total", type=kind, outcome="applied") - value(
        after, "dawns_stripe_events_applied_total", type=kind, outcome="applied") == 1
    assert value(applied, "dawns_outbox_backlog", outbox="stripe_events") == 0
    # Members by state are cached (30 s): the move to active shows after the cache ends.
    assert value(applied, "dawns_members", state="pending") == 2
    metrics_app.extensions["metrics_member_counts"].at = float("-inf")  # as when 30 s have passed
    fresh = scrape(client)
    assert value(fresh, "dawns_members", state="active") == 1 and value(fresh, "dawns_members", state="pending") == 1


def test_stripe_and_mailchimp_errors_are_counted_by_kind(metrics_app):
    import stripe

    from service.billing.gateway import translate
    from service.newsletter.provider import Change, MailchimpProvider, ProviderError
    from service.domain.newsletter import Desired

    client = metrics_app.test_client()
    before = scrape(client)
    translate(stripe.RateLimitError("slow down"))
    translate(stripe.InvalidRequestError("No such subscription", param="id", code="resource_missing"))
    translate(stripe.APIConnectionError("no route"))
    provider = MailchimpProvider(api_key="k-us1", server_prefix="us1", list_id="L",
                                 api_base=f"http://127.0.0.1:{free_port()}/3.0", timeout=2)
    with pytest.raises(ProviderError):
        provider.apply(Change(desired=Desired.SUBSCRIBED, email="a@example.org", known_email=None, name="A",
                              confirm_if_needed=False, language=None))
    after = scrape(client)
    for kind in ("rate_limited", "not_found", "unavailable"):
        assert value(after, "dawns_stripe_errors_total", kind=kind) - value(before, "dawns_stripe_errors_total", kind=kind) == 1
    assert value(after, "dawns_mailchimp_errors_total", kind="unreachable") - value(
        before, "dawns_mailchimp_errors_total", kind="unreachable") == 1


def _promtool(text: str) -> subprocess.CompletedProcess:
    if PROMTOOL is None:
        message = "promtool not found: /metrics was not checked (apt-get install prometheus)"
        if os.environ.get("REQUIRE_PROMTOOL"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_metrics_pass_promtool_check_metrics(metrics_app):
    client = metrics_app.test_client()
    member = make_account(metrics_app)
    token = api_token(metrics_app, scopes=("entitlements:read",))
    client.get(f"/api/v1/entitlements?member_id={member}", headers={"Authorization": f"Bearer {token}"})
    client.post("/stripe/webhook", data="{}", content_type="application/json", headers={"Stripe-Signature": "t=1,v1=0"})
    text = scrape(client)
    checked = _promtool(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr


def test_two_gunicorn_workers_both_count(make_app, database_url, stripe_api, tmp_path):
    """gunicorn -w 2 with PROMETHEUS_MULTIPROC_DIR: webhooks and entitlement checks served by
    either worker add up in one scrape, whichever worker answers it."""
    app = make_app()
    member = make_account(app)
    token = api_token(app, scopes=("entitlements:read",))
    scraper = api_token(app, name="prometheus", scopes=("metrics:read",))
    multiproc = tempfile.mkdtemp(prefix="metrics-test-", dir=tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "LOG_", "PROMETHEUS_"))}
    env.update(DATABASE_URL=database_url, SECRET_KEY="s" * 32, PUBLIC_BASE_URL="http://localhost",
               STRIPE_SECRET_KEY="sk_test_123", STRIPE_WEBHOOK_SECRET="whsec_test_secret",
               STRIPE_API_BASE=stripe_api.url, STRIPE_PRICE_ID="price_test_monthly",
               STRIPE_PRODUCT_ID="prod_test_membership", PROMETHEUS_MULTIPROC_DIR=multiproc,
               METRICS_ALLOWED_IPS="", MAIL_LOG_PATH=str(tmp_path / "mail.jsonl"),
               NEWSLETTER_LOG_PATH=str(tmp_path / "newsletter.jsonl"), LOG_FORMAT="json")
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
                                 "--graceful-timeout", "5", "wsgi:app"], cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        assert poll(up, timeout=60), log_path.read_text()
        sent = {"webhooks": 0, "checks": 0}
        lock = threading.Lock()

        def hit(n: int) -> None:
            evt = event("customer.subscription.created", subscription(customer=f"cus_G{n}"))
            payload = json.dumps(evt)
            with requests.Session() as s:  # a new connection each time: either worker may take it
                r = s.post(f"{base}/stripe/webhook", data=payload,
                           headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"}, timeout=30)
                assert r.status_code == 200, r.text
            with requests.Session() as s:
                r = s.get(f"{base}/api/v1/entitlements?member_id={member}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
                assert r.status_code == 200, r.text
            with lock:
                sent["webhooks"] += 1
                sent["checks"] += 1

        def pids_counted() -> set[str]:
            return {f.rsplit("_", 1)[1].removesuffix(".db") for f in os.listdir(multiproc) if f.endswith(".db")}

        n = 0

        def both_workers_served() -> bool:
            nonlocal n
            threads = [threading.Thread(target=hit, args=(n + i,)) for i in range(6)]
            n += 6
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return len(pids_counted()) >= 2

        assert poll(both_workers_served, timeout=60, interval=0), "one worker took every request"
        texts = [requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {scraper}"}, timeout=30)
                 for _ in range(4)]
        assert all(r.status_code == 200 for r in texts), [r.text for r in texts]
        stranger = requests.get(f"{base}/metrics", timeout=30)
        assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "forbidden"
        for resp in texts:  # every scrape, whichever worker answers it, has both workers' counts
            text = resp.text
            assert value(text, "dawns_stripe_webhook_deliveries_total", type="customer.subscription.created",
                         outcome="stored") == sent["webhooks"]
            assert value(text, "dawns_entitlement_check_seconds_count", status="200") == sent["checks"]
            assert value(text, "dawns_outbox_backlog", outbox="stripe_events") == sent["webhooks"]
        assert sent["webhooks"] >= 6 and len(pids_counted()) >= 2
        if PROMTOOL:
            checked = _promtool(texts[0].text)
            assert checked.returncode == 0, checked.stdout + checked.stderr
        # The workers' own log lines are JSON with a request id.
        proc.terminate()
        proc.wait(timeout=30)
        records = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
        stored = [r for r in records if r["logger"] == "service.billing.webhooks"]
        assert len(stored) == sent["webhooks"] and all(len(r["request_id"]) == 32 for r in stored)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
