"""The sync worker: killed mid-batch loses nothing; two workers never send the same row at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.db import get_session, utcnow
from service.models import NewsletterOutbox
from service.newsletter.outbox import sync_once
from service.newsletter.runtime import get_provider

from ..support.events import event, post_event
from ..support.factories import make_account
from ..support.mailchimp_standin import md5
from ..support.stripe_objects import subscription
from ..support.wait import poll

ROOT = Path(__file__).resolve().parents[2]


def enroll(app, n: int) -> list[int]:
    client = app.test_client()
    ids = []
    for i in range(n):
        m = make_account(app, email=f"w{i}@example.org", name=f"Worker {i}", customer=f"cus_w{i}")
        post_event(client, event("customer.subscription.created",
                                 subscription(id=f"sub_w{i}", customer=f"cus_w{i}", status="active", member_id=m)))
        ids.append(m)
    return ids


def counts(app) -> dict[str, int]:
    with app.app_context():
        rows = get_session().execute(select(NewsletterOutbox.status, func.count()).group_by(NewsletterOutbox.status))
        out = dict(rows.all())
        get_session().close()
        return out


def worker_env(app, mailchimp, lease: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "MAILCHIMP_", "NEWSLETTER_"))}
    env.update(
        DATABASE_URL=app.config["DATABASE_URL"], SECRET_KEY="test", NEWSLETTER_PROVIDER="mailchimp",
        MAILCHIMP_API_KEY=mailchimp.api_key, MAILCHIMP_SERVER_PREFIX="us1", MAILCHIMP_LIST_ID=mailchimp.list_id,
        MAILCHIMP_API_BASE=mailchimp.base, NEWSLETTER_LEASE_SECONDS=str(lease), NEWSLETTER_BACKOFF_BASE="0",
        NEWSLETTER_LOG_PATH=app.config["NEWSLETTER_LOG_PATH"],
    )
    return env


def test_worker_killed_mid_batch_and_restarted_delivers_every_change(make_app, mailchimp, tmp_path):
    app = make_app(NEWSLETTER_PROVIDER="mailchimp", MAILCHIMP_API_KEY=mailchimp.api_key,
                   MAILCHIMP_SERVER_PREFIX="us1", MAILCHIMP_LIST_ID=mailchimp.list_id,
                   MAILCHIMP_API_BASE=mailchimp.base)
    members = enroll(app, 6)
    assert counts(app) == {"pending": 6}
    mailchimp.delay = 0.2
    cmd = [sys.executable, "-m", "flask", "--app", "wsgi", "newsletter", "sync"]
    env = worker_env(app, mailchimp, lease=1.0)
    with open(tmp_path / "worker.log", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert poll(lambda: len(mailchimp.calls) >= 3, timeout=30), "worker never started delivering"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    killed = counts(app)
    assert killed.get("in_flight", 0) >= 1  # it died holding claims

    # Claims expire (lease); a restarted worker takes them over.
    def leases_expired() -> bool:
        with app.app_context():
            live = get_session().scalar(select(func.count()).select_from(NewsletterOutbox).where(
                NewsletterOutbox.status == "in_flight", NewsletterOutbox.claimed_until >= utcnow()))
            get_session().close()
        return live == 0

    assert poll(leases_expired, timeout=10)
    mailchimp.delay = 0.0
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(app) == {"delivered": 6}
    for i in range(len(members)):
        assert mailchimp.members[md5(f"w{i}@example.org")].status == "subscribed"


def test_two_workers_at_once_never_send_the_same_row_at_the_same_time(make_app, mailchimp, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row claiming with SKIP LOCKED is a PostgreSQL test")
    app = make_app(NEWSLETTER_PROVIDER="mailchimp", MAILCHIMP_API_KEY=mailchimp.api_key,
                   MAILCHIMP_SERVER_PREFIX="us1", MAILCHIMP_LIST_ID=mailchimp.list_id,
                   MAILCHIMP_API_BASE=mailchimp.base)
    enroll(app, 20)
    mailchimp.delay = 0.02
    barrier = threading.Barrier(2)
    reports = []

    def worker() -> None:
        with app.app_context():
            barrier.wait()
            reports.append(sync_once(get_session(), get_provider(), batch=5))
            get_session().close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.delivered for r in reports) == 20
    assert all(r.delivered > 0 for r in reports)  # both workers took part
    assert counts(app) == {"delivered": 20}
    puts = [c.path for c in mailchimp.calls if c.method == "PUT"]
    assert len(puts) == len(set(puts)) == 20  # every row sent exactly once
    assert max(mailchimp.max_in_flight.values()) == 1


def test_concurrent_claims_never_hand_out_the_same_row_twice(make_app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row claiming with SKIP LOCKED is a PostgreSQL test")
    from service.newsletter.outbox import claim

    app = make_app()
    enroll(app, 40)
    barrier = threading.Barrier(8)
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        with app.app_context():
            barrier.wait()
            ids = claim(get_session(), 10, 60.0)
            get_session().close()
        with lock:
            claimed.extend(ids)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == len(set(claimed)) == 40


def test_watch_keeps_delivering_and_stops_cleanly_on_sigterm(make_app, mailchimp, tmp_path):
    app = make_app(NEWSLETTER_PROVIDER="mailchimp", MAILCHIMP_API_KEY=mailchimp.api_key,
                   MAILCHIMP_SERVER_PREFIX="us1", MAILCHIMP_LIST_ID=mailchimp.list_id,
                   MAILCHIMP_API_BASE=mailchimp.base)
    env = {**worker_env(app, mailchimp, lease=5.0), "NEWSLETTER_POLL_SECONDS": "0.2"}
    cmd = [sys.executable, "-m", "flask", "--app", "wsgi", "newsletter", "sync", "--watch"]
    with open(tmp_path / "watch.log", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        enroll(app, 3)  # changes made while the worker is already running
        assert poll(lambda: counts(app) == {"delivered": 3}, timeout=30)
        assert proc.poll() is None  # still watching
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
