"""Drills with real processes, on PostgreSQL: gunicorn web workers killed mid-burst, the
database restarted mid-burst, two instances and two workers sharing one database. Each is
bounded in time and prints what it checked. The load generator behaves as Stripe does: every
delivery that does not get a 2xx is sent again."""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from service.demo.localstripe import free_port, wait_for_port

from ..support.events import event, sign
from ..support.stripe_objects import subscription

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Entitled, entitled (grace), ..., unpaid (lapsed: leaves DAWNS), active again (back in).
NEWSLETTER_CHANGES = "subscribed,unsubscribed,subscribed"
STATUSES = ["active", "past_due", "active", "trialing", "active", "past_due", "unpaid", "active", "past_due", "active"]


@pytest.fixture
def pg(app, database_url, stripe_api):
    if not database_url.startswith("postgresql"):
        pytest.skip("drills run against the deployment's database: PostgreSQL")
    global STRIPE_API_BASE
    STRIPE_API_BASE = stripe_api.url  # the local Stripe stand-in: the drills never leave the machine
    return database_url


STRIPE_API_BASE = ""


def _seed_members(url: str, n: int) -> None:
    """n readers, each linked to customer cus_D<i> (as after a checkout of ours)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO accounts (id, email, name, password_hash, role, created_at, updated_at) "
            "SELECT g, 'drill' || g || '@example.org', 'Drill ' || g, 'x', 'member', now(), now() "
            "FROM generate_series(1, :n) g"), {"n": n})
        conn.execute(text(
            "INSERT INTO memberships (account_id, status, cancel_at_period_end, newsletter_opt_in, newsletter_desired, "
            "newsletter_status, status_changed_at, created_at, updated_at, monthly_value, paying_twice, "
            "stripe_customer_id) SELECT g, 'pending', false, true, 'none', 'not_subscribed', now(), now(), now(), 0, "
            "false, 'cus_D' || g FROM generate_series(1, :n) g"), {"n": n})
        conn.execute(text(
            "INSERT INTO stripe_customers (stripe_id, account_id, deleted, created_at, updated_at) "
            "SELECT 'cus_D' || g, g, false, now(), now() FROM generate_series(1, :n) g"), {"n": n})
        conn.execute(text("SELECT setval('accounts_id_seq', :n)"), {"n": n})
    engine.dispose()


def _events(members: int, per_member: int) -> list[dict]:
    base = int(time.time()) - 3600
    out = []
    for step in range(per_member):
        for m in range(1, members + 1):
            out.append(event("customer.subscription.updated", subscription(
                id=f"sub_D{m}", customer=f"cus_D{m}", status=STATUSES[step % len(STATUSES)],
                period_start=base, period_end=base + 30 * 86400), created=base + step))
    return out


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "drill", "STRIPE_SECRET_KEY": "sk_test_drill",
            "STRIPE_WEBHOOK_SECRET": "whsec_test_secret", "STRIPE_PRICE_ID": "price_test_monthly",
            "STRIPE_PRODUCT_ID": "prod_test_membership", "STRIPE_API_BASE": STRIPE_API_BASE, "MAIL_BACKEND": "log", "WORKER_POLL_SECONDS": "0.5",
            "STRIPE_EVENT_BACKOFF_BASE": "0.5", "STRIPE_EVENT_BACKOFF_MAX": "2", "PUBLIC_BASE_URL": "http://127.0.0.1"}


class Gunicorn:
    def __init__(self, url: str, workers: int = 4) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "2",
             "wsgi:app"], cwd=ROOT, env=_env(url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


class Stripe:
    """A load generator that delivers like Stripe: each event until it gets a 2xx."""

    def __init__(self, urls: list[str], events: list[dict], threads: int = 12) -> None:
        self.todo: queue.Queue = queue.Queue()
        for i, evt in enumerate(events):
            self.todo.put((urls[i % len(urls)], json.dumps(evt)))
        self.sent = 0
        self.resent = 0
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        while True:
            try:
                url, payload = self.todo.get_nowait()
            except queue.Empty:
                return
            try:
                resp = session.post(f"{url}/stripe/webhook", data=payload, timeout=10,
                                    headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)})
                status = resp.status_code
            except requests.RequestException:
                status = 0
            with self.lock:
                self.sent += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                with self.lock:
                    self.resent += 1
                time.sleep(0.05)
                self.todo.put((url, payload))  # Stripe retries it later

    def start(self) -> "Stripe":
        for t in self.threads:
            t.start()
        return self

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert self.todo.empty() and not any(t.is_alive() for t in self.threads), "deliveries did not finish in time"


def _apply_all(url: str, copies: int = 1, timeout: float = 240) -> None:
    """`worker --once` until the queue is empty (a copy may leave rows whose lease ran in a crash)."""
    deadline = time.monotonic() + timeout
    logs = Path(tempfile.mkdtemp(prefix="drill-worker-"))
    while time.monotonic() < deadline:
        outs = [open(logs / f"{n}.log", "a") for n in range(copies)]
        procs = [subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker", "--once"], cwd=ROOT, env=_env(url),
                                  stdout=out, stderr=subprocess.STDOUT) for out in outs]
        for p, out in zip(procs, outs):
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                out.close()
                tail = "\n".join((logs / "0.log").read_text().splitlines()[-20:])
                raise AssertionError(f"worker --once did not finish: {_counts(url)}\n{tail}") from None
            out.close()
        if _counts(url)["waiting"] == 0:
            shutil.rmtree(logs, ignore_errors=True)
            return
        time.sleep(0.5)
    raise AssertionError(f"the queue did not drain: {_counts(url)}")


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT count(*), count(DISTINCT stripe_id), count(*) FILTER (WHERE status IN ('pending', 'in_flight')), "
            "count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed') FROM stripe_events")).one()
    engine.dispose()
    return dict(zip(("rows", "distinct", "waiting", "done", "failed"), row))


def _final_states(url: str, members: int) -> dict[str, int]:
    """Members by state, and how many members' DAWNS changes were exactly the true transitions."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM memberships GROUP BY status")).all()
        changes = conn.execute(text(
            "SELECT string_agg(action, ',' ORDER BY id) FROM newsletter_outbox GROUP BY account_id")).scalars().all()
    engine.dispose()
    return {**dict(rows), "newsletter changes right": changes.count(NEWSLETTER_CHANGES), "members": members}


def _expected_status(per_member: int) -> str:
    return {"active": "active", "trialing": "active", "past_due": "past_due", "unpaid": "lapsed"}[
        STATUSES[(per_member - 1) % len(STATUSES)]]


def test_drill_a_web_worker_killed_mid_burst_loses_and_doubles_nothing(pg):
    members, per_member = 500, 10
    _seed_members(pg, members)
    events = _events(members, per_member)
    web = Gunicorn(pg, workers=4)
    try:
        stripe = Stripe([web.url], events).start()
        while stripe.sent < len(events) // 4:
            time.sleep(0.02)
        victim = web.workers()[0]
        os.kill(victim, signal.SIGKILL)
        stripe.wait(timeout=240)
    finally:
        web.stop()
    counts = _counts(pg)
    assert counts["rows"] == counts["distinct"] == len(events)
    _apply_all(pg)
    counts = _counts(pg)
    states = _final_states(pg, members)
    print(f"\ndrill (web worker {victim} killed): {len(events)} events, {stripe.sent} deliveries "
          f"({stripe.resent} resent, statuses {stripe.statuses}); stored {counts['rows']} once each; "
          f"applied {counts['done']}; members {states}")
    assert counts["done"] == len(events) and counts["failed"] == 0
    assert states.get(_expected_status(per_member)) == members
    assert states["newsletter changes right"] == members  # each transition once, in order


def test_drill_postgresql_restarted_mid_burst_loses_and_doubles_nothing(pg):
    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0:
        pytest.skip("restarting the server needs pg_ctlcluster as root")
    members, per_member = 200, 10
    _seed_members(pg, members)
    events = _events(members, per_member)
    web = Gunicorn(pg, workers=2)
    version = sorted(os.listdir("/etc/postgresql"))[0]
    try:
        stripe = Stripe([web.url], events, threads=8).start()
        while stripe.sent < len(events) // 3:
            time.sleep(0.02)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
                       check=True, capture_output=True, timeout=60)
        stripe.wait(timeout=240)
    finally:
        web.stop()
    _apply_all(pg)
    counts = _counts(pg)
    states = _final_states(pg, members)
    print(f"\ndrill (PostgreSQL restarted): {len(events)} events, {stripe.sent} deliveries ({stripe.resent} resent, "
          f"statuses {stripe.statuses}); stored {counts['rows']} once each; applied {counts['done']}; {states}")
    assert stripe.statuses.get(503, 0) + stripe.statuses.get(0, 0) > 0, "the restart was not felt"
    assert counts["rows"] == counts["distinct"] == counts["done"] == len(events)
    assert states.get(_expected_status(per_member)) == members
    assert states["newsletter changes right"] == members


def test_drill_two_instances_and_two_workers_share_one_database(pg):
    members, per_member = 300, 8
    _seed_members(pg, members)
    events = _events(members, per_member)
    webs = [Gunicorn(pg, workers=2), Gunicorn(pg, workers=2)]
    workers = [subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker"], cwd=ROOT, env=_env(pg),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        stripe = Stripe([w.url for w in webs], events).start()
        stripe.wait(timeout=240)
        deadline = time.monotonic() + 240
        while _counts(pg)["waiting"] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        for web in webs:
            web.stop()
    counts = _counts(pg)
    states = _final_states(pg, members)
    print(f"\ndrill (2 instances, 2 workers): {len(events)} events, {stripe.sent} deliveries; stored {counts['rows']}; "
          f"applied {counts['done']}; {states}")
    assert counts["rows"] == counts["distinct"] == counts["done"] == len(events)
    assert states.get(_expected_status(per_member)) == members
    assert states["newsletter changes right"] == members
